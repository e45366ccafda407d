"""Load a TensorRT-LLM chatglm checkpoint and merge its tensor-parallel shards.

The checkpoint layout is the one written by TensorRT-LLM 1.2.x
`tensorrt_llm/models/chatglm/convert.py` (`load_weights_from_hf_model`) and described in
docs/INTERFACES.md section 1. Every merge here undoes one split of that file:

- `split_qkv`: per rank the fused qkv rows are concat(q_r, k_r, v_r), heads chunked across ranks;
  when num_kv_heads < tp_size, `tile_kv_weight_bias` first repeats every kv head
  tp_size // num_kv_heads times so each rank gets one copy.
- `swap_and_split_mlp`: per rank mlp.fc rows are concat(fc_r, gate_r) — the first half is the
  value ("up"), the second half the gate that goes through SiLU.
- attention.dense / mlp.proj are split on dim 1 (row-parallel), lm_head on dim 0 (column-parallel,
  `torch.chunk`, so the last rank may be shorter), layer norms and the vocab embedding are copied
  to every rank (use_parallel_embedding false) or chunked on `embedding_sharding_dim`.

Weights are read one tensor at a time through safetensors' mmap reader.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from glmtrt.checkpoint.trtllm_config import decoder_dims
from glmtrt.errors import GlmtrtError
from glmtrt.fileio import read_json_object
from glmtrt.reference.qlinear import is_quant_tensor
from glmtrt.quant.weight_only import WEIGHT_ONLY_BITS, fake_quantize, is_quantized_weight

log = logging.getLogger(__name__)

_DTYPES = {"float32": "float32", "float16": "float16", "bfloat16": "bfloat16"}


@dataclass(frozen=True)
class Geometry:
    """Shapes the merge needs, read from the checkpoint config."""

    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_size: int
    intermediate_size: int
    vocab_size: int
    tp_size: int

    @classmethod
    def from_config(cls, cfg: dict) -> "Geometry":
        """Read the geometry from a TensorRT-LLM `config.json` dict (head_size defaults to hidden/heads)."""
        dims = decoder_dims(cfg)
        dims.pop("max_position_embeddings")
        return cls(**dims, tp_size=int((cfg.get("mapping") or {}).get("tp_size", 1)))


def read_checkpoint_config(ckpt_dir: str | Path, position_types: tuple[str, ...] = ("rope_gptj",)) -> dict:
    """Read and sanity-check `config.json` of a TensorRT-LLM checkpoint dir (`position_types`: the
    position_embedding_type values the caller executes; the glm4v reference passes "mrope")."""
    path = Path(ckpt_dir) / "config.json"
    if not path.is_file():
        raise GlmtrtError(
            f"no config.json in {ckpt_dir}",
            expected="a TensorRT-LLM checkpoint dir written by `glmtrt convert`",
            fix="pass the output dir of `glmtrt convert`",
        )
    cfg = read_json_object(path, "checkpoint config.json")
    mapping = cfg.get("mapping") or {}
    if int(mapping.get("pp_size", 1)) != 1:
        raise GlmtrtError(
            f"checkpoint has pp_size={mapping.get('pp_size')}",
            expected="pp_size 1 (the reference merges tensor-parallel shards only)",
            fix="convert with --pp-size 1 for verification",
        )
    quant = cfg.get("quantization") or {}
    from glmtrt.reference.qlinear import EMULATED_ALGOS

    if quant.get("quant_algo") and quant["quant_algo"] not in WEIGHT_ONLY_BITS \
            and quant["quant_algo"] not in EMULATED_ALGOS:
        raise GlmtrtError(
            f"checkpoint is quantized with quant_algo={quant['quant_algo']}",
            expected="float32/float16/bfloat16 weights, weight-only W8A16 / W4A16 or one of "
                     + ", ".join(EMULATED_ALGOS),
            fix="the reference emulates these quantization formats only",
        )
    pos = cfg.get("position_embedding_type", "rope_gptj")
    if pos not in position_types:
        raise GlmtrtError(f"position_embedding_type {pos!r} is not supported here",
                          expected=" | ".join(position_types) + " (rope_gptj: ChatGLM2/3, GLM-4; mrope: GLM-4.1V)")
    return cfg


def _torch_dtype(name: str | None):
    import torch

    if name is None:
        return None
    if isinstance(name, torch.dtype):
        return name
    if name not in _DTYPES:
        raise GlmtrtError(f"dtype {name!r} is not supported", expected="float32, float16 or bfloat16")
    return getattr(torch, _DTYPES[name])


# ---------------------------------------------------------------- pure merge functions (tested)

def merge_qkv(shards: list, num_heads: int, num_kv_heads: int, head_size: int):
    """Undo `split_qkv` (+ `tile_kv_weight_bias`): per-rank [q_r; k_r; v_r] rows -> [q; k; v].

    Works for weights [rows, H] and biases [rows]. Replicated kv heads (num_kv_heads < tp) are
    de-duplicated; a replica that differs from its first copy is an error.
    """
    import torch

    tp = len(shards)
    if tp == 1:
        return shards[0]
    q_rows = num_heads * head_size // tp
    kv_heads_rank = max(num_kv_heads // tp, 1)
    kv_rows = kv_heads_rank * head_size
    qs, ks, vs = [], [], []
    for s in shards:
        if s.shape[0] != q_rows + 2 * kv_rows:
            raise GlmtrtError(f"qkv shard has {s.shape[0]} rows",
                              expected=f"{q_rows + 2 * kv_rows} rows (q {q_rows} + 2 x kv {kv_rows})")
        qs.append(s[:q_rows])
        ks.append(s[q_rows:q_rows + kv_rows])
        vs.append(s[q_rows + kv_rows:])
    if num_kv_heads < tp:
        reps = tp // num_kv_heads
        for r in range(tp):
            first = (r // reps) * reps
            if not (torch.equal(ks[r], ks[first]) and torch.equal(vs[r], vs[first])):
                raise GlmtrtError(f"replicated kv head of rank {r} differs from rank {first}",
                                  expected="identical kv copies (tile_kv_weight_bias)",
                                  fix="re-convert the checkpoint")
        ks, vs = ks[::reps], vs[::reps]
    return torch.cat(qs + ks + vs, dim=0)


def merge_fc(shards: list):
    """Undo `swap_and_split_mlp`: per-rank [up_r; gate_r] -> [up; gate] (value half first)."""
    import torch

    if len(shards) == 1:
        return shards[0]
    ups, gates = zip(*(torch.chunk(s, 2, dim=0) for s in shards))
    return torch.cat(list(ups) + list(gates), dim=0)


def merge_dim(shards: list, dim: int):
    """Concatenate column/row-parallel shards along `dim`."""
    import torch

    return shards[0] if len(shards) == 1 else torch.cat(shards, dim=dim)


def take_first(shards: list):
    """Replicated tensors (norms, non-parallel embedding, row-parallel biases): rank 0's copy."""
    return shards[0]


def merge_rule(name: str, cfg: dict, geo: Geometry) -> Callable[[list], object]:
    """How the shards of tensor `name` combine into the full tensor."""
    from glmtrt.reference.qlinear import quant_merge_rule

    rule = quant_merge_rule(name, cfg, geo, merge_qkv, merge_fc, merge_dim)
    if rule is not None:
        return rule
    if name.endswith("attention.qkv.weight") or name.endswith("attention.qkv.bias"):
        return lambda s: merge_qkv(s, geo.num_heads, geo.num_kv_heads, geo.head_size)
    if name.endswith("mlp.fc.weight") or name.endswith("mlp.fc.bias"):
        return merge_fc
    if name.endswith("attention.dense.weight") or name.endswith("mlp.proj.weight"):
        return lambda s: merge_dim(s, 1)
    if name == "lm_head.weight":
        return lambda s: merge_dim(s, 0)
    if name == "transformer.vocab_embedding.weight" and cfg.get("use_parallel_embedding"):
        return lambda s: merge_dim(s, int(cfg.get("embedding_sharding_dim", 0)))
    return take_first


def load_merged_weights(ckpt_dir: str | Path, dtype=None,
                        position_types: tuple[str, ...] = ("rope_gptj",)) -> tuple[dict, dict]:
    """Read `config.json` and all `rank{N}.safetensors`; return (config, full unsplit tensors).

    `dtype` (None = keep the stored dtype) converts each tensor as it is merged. The lm_head is cut
    back to `vocab_size` rows (TensorRT-LLM pads it to a multiple of tp_size).
    Weight-only checkpoints (W8A16 / W4A16) get their linear weights quantized and dequantized
    per rank shard before the merge, exactly where TensorRT-LLM quantizes them at engine build
    (row-parallel shards have per-rank scales), see glmtrt.quant.weight_only.
    """
    from safetensors import safe_open

    ckpt_dir = Path(ckpt_dir)
    cfg = read_checkpoint_config(ckpt_dir, position_types)
    geo = Geometry.from_config(cfg)
    tdtype = _torch_dtype(dtype)
    paths = [ckpt_dir / f"rank{r}.safetensors" for r in range(geo.tp_size)]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise GlmtrtError(f"checkpoint {ckpt_dir} lacks {', '.join(missing)}",
                          expected=f"rank0..rank{geo.tp_size - 1}.safetensors for tp_size={geo.tp_size}",
                          fix="re-run `glmtrt convert` into an empty dir")
    handles = [safe_open(str(p), framework="pt") for p in paths]
    names = sorted(handles[0].keys())
    for r, h in enumerate(handles[1:], start=1):
        if sorted(h.keys()) != names:
            raise GlmtrtError(f"rank{r}.safetensors holds different tensor names than rank0")
    bits = WEIGHT_ONLY_BITS.get((cfg.get("quantization") or {}).get("quant_algo"))
    weights = {}
    for name in names:
        shards = [h.get_tensor(name) for h in handles]
        if bits and is_quantized_weight(name) and shards[0].dim() == 2:
            shards = [fake_quantize(s, bits) for s in shards]
        full = merge_rule(name, cfg, geo)(shards)
        if name == "lm_head.weight":
            full = full[: geo.vocab_size]
        if tdtype is not None and full.is_floating_point() and not is_quant_tensor(name, full):
            full = full.to(tdtype)
        weights[name] = full.contiguous()
        del shards
    log.debug("merged %d tensors from %d rank files in %s", len(weights), len(paths), ckpt_dir)
    return cfg, weights
