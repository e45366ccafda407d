"""Inputs of the build stage: a converted TRT-LLM checkpoint dir (config.json + manifest.json +
rank{N}.safetensors) or, for `glmtrt plan` only, an HF model dir (dims via the model registry)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from glmtrt.build.planner import ModelDims
from glmtrt.checkpoint.trtllm_config import decoder_dims
from glmtrt.errors import GlmtrtError
from glmtrt.fileio import read_json_object

# TensorRT-LLM QuantAlgo names (tensorrt_llm/quantization/mode.py) -> glmtrt precision.
_QUANT_TO_PRECISION = {"W8A16": "int8-wo", "W4A16": "int4-wo", "FP8": "fp8", "W4A16_AWQ": "int4-awq"}
_SQ_PREFIX = "W8A8_SQ_PER_CHANNEL"        # ..._PER_TENSOR_PLUGIN / _PER_TOKEN_PLUGIN variants, etc.
_DTYPE_TO_PRECISION = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32"}
_KV_ALGO = {None: "auto", "INT8": "int8", "FP8": "fp8"}
PRECISION_TO_DTYPE = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}


def precision_of(config: Mapping[str, Any]) -> tuple[str, str]:
    """(precision, kv_cache_dtype) of a TRT-LLM checkpoint config (quantization lives in the
    config's `quantization` block, not in trtllm-build flags)."""
    q = config.get("quantization") or {}
    algo = q.get("quant_algo")
    kv_algo = q.get("kv_cache_quant_algo")
    if kv_algo not in _KV_ALGO:
        raise GlmtrtError(f"kv_cache_quant_algo {kv_algo!r} in the checkpoint", expected="null, INT8 or FP8")
    if algo is None:
        dtype = config.get("dtype")
        if dtype not in _DTYPE_TO_PRECISION:
            raise GlmtrtError(f"checkpoint dtype {dtype!r}", expected="float16, bfloat16 or float32")
        return _DTYPE_TO_PRECISION[dtype], _KV_ALGO[kv_algo]
    if algo in _QUANT_TO_PRECISION:
        return _QUANT_TO_PRECISION[algo], _KV_ALGO[kv_algo]
    if str(algo).startswith(_SQ_PREFIX) or str(algo).startswith("W8A8_SQ"):
        return "int8-sq", _KV_ALGO[kv_algo]
    raise GlmtrtError(f"quant_algo {algo!r} in the checkpoint is not one glmtrt builds",
                      expected="null, W8A16, W4A16, W4A16_AWQ, W8A8_SQ_* or FP8")


def dims_from_trtllm_config(cfg: Mapping[str, Any], name: str) -> ModelDims:
    """Planner dims from a TRT-LLM PretrainedConfig dict (docs/INTERFACES.md section 1)."""
    return ModelDims(name=name, **decoder_dims(cfg))


def dims_from_spec(spec: Any, name: str) -> ModelDims:
    """Planner dims from a registry ModelSpec (glmtrt.models.registry.load_model_spec); a spec with a
    vision tower (GLM-4.1V) counts it as extra weights on every GPU."""
    vision = getattr(spec, "vision", None)
    return ModelDims(name=name, num_layers=spec.num_layers, hidden_size=spec.hidden_size,
                     num_heads=spec.num_heads, num_kv_heads=spec.num_kv_heads, head_size=spec.head_size,
                     intermediate_size=spec.intermediate_size, vocab_size=spec.vocab_size,
                     max_position_embeddings=spec.max_position_embeddings,
                     extra_params=vision.num_params() if vision else 0, extra_name="vision tower" if vision else "")


def _read_json(path: Path) -> dict[str, Any]:
    return read_json_object(path, path.name)


def is_trtllm_checkpoint(path: str | Path) -> bool:
    """True when `path/config.json` is a TRT-LLM checkpoint config (has architecture + mapping)."""
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        return False
    body = _read_json(cfg)
    return "mapping" in body and "architecture" in body


@dataclass(frozen=True)
class CheckpointInfo:
    """A converted checkpoint, validated for building."""

    path: Path
    config: Mapping[str, Any]
    manifest: Mapping[str, Any]
    manifest_sha256: str
    dims: ModelDims
    dtype: str
    precision: str
    kv_cache_dtype: str
    tp_size: int
    pp_size: int


def read_checkpoint(path: str | Path) -> CheckpointInfo:
    """Validate a `glmtrt convert` output dir: config.json, manifest.json, one rank file per rank."""
    path = Path(path)
    if not path.is_dir():
        raise GlmtrtError(f"checkpoint directory {path} does not exist",
                          expected="a TensorRT-LLM checkpoint dir written by `glmtrt convert`",
                          fix="run `glmtrt convert <hf-dir> -o <dir>` (or `make engine`, which converts first)")
    man_path = path / "manifest.json"
    if (path / "llm").is_dir() and man_path.is_file():    # a Glm4v conversion: llm/ + vision/, one manifest
        path = path / "llm"
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise GlmtrtError(f"{path} has no config.json", expected="a TensorRT-LLM checkpoint dir",
                          fix="point at the output of `glmtrt convert`")
    if not man_path.is_file():
        raise GlmtrtError(f"{path} has no manifest.json",
                          expected="a checkpoint written by `glmtrt convert` (its manifest is hashed into the engine)",
                          fix="convert the model with `glmtrt convert`; hand-made checkpoints are not built")
    manifest = _read_json(man_path)
    if manifest.get("kind") != "trtllm-checkpoint":
        raise GlmtrtError(f"{man_path} describes a '{manifest.get('kind')}'", expected="kind 'trtllm-checkpoint'")
    config = _read_json(cfg_path)
    mapping = config.get("mapping") or {}
    tp, pp = int(mapping.get("tp_size", 1)), int(mapping.get("pp_size", 1))
    world = int(mapping.get("world_size", tp * pp))
    if world != tp * pp:
        raise GlmtrtError(f"mapping world_size {world} != tp_size {tp} x pp_size {pp} in {cfg_path}")
    missing = [f"rank{r}.safetensors" for r in range(world) if not (path / f"rank{r}.safetensors").is_file()]
    if missing:
        raise GlmtrtError(f"{path} lacks {', '.join(missing)}", expected=f"{world} rank file(s) for tp={tp} pp={pp}",
                          fix="convert again; the checkpoint is incomplete")
    precision, kv = precision_of(config)
    model = manifest.get("model") or {}
    name = str(model.get("chatglm_version") or config.get("architecture"))
    dims = dims_from_trtllm_config(config, name)
    if model.get("vision_params"):      # GLM-4.1V: the vision engine shares the GPU
        from dataclasses import replace

        dims = replace(dims, extra_params=int(model["vision_params"]), extra_name="vision tower")
    return CheckpointInfo(path=path, config=config, manifest=manifest,
                          manifest_sha256=hashlib.sha256(man_path.read_bytes()).hexdigest(),
                          dims=dims, dtype=str(config.get("dtype")),
                          precision=precision, kv_cache_dtype=kv, tp_size=tp, pp_size=pp)


def check_tp(ckpt: CheckpointInfo, requested_tp: int | None) -> int:
    """The TP size to build: the checkpoint's; a different request is an error (TP is baked in at convert)."""
    if requested_tp is not None and requested_tp != ckpt.tp_size:
        raise GlmtrtError(
            f"--tp {requested_tp} was requested but {ckpt.path} was converted with tp_size={ckpt.tp_size}",
            expected="the TP size of the checkpoint (trtllm-build builds one engine per checkpoint rank)",
            fix=f"drop --tp, or convert again with `glmtrt convert ... --tp-size {requested_tp}`")
    return ckpt.tp_size


def load_dims(path: str | Path) -> tuple[ModelDims, dict[str, Any]]:
    """Dims for `glmtrt plan` from a TRT-LLM checkpoint dir or an HF model dir; plus what was read
    (dtype / precision for a checkpoint, empty for HF)."""
    path = Path(path)
    if is_trtllm_checkpoint(path):
        cfg = _read_json(path / "config.json")
        precision, kv = precision_of(cfg)
        tp = int((cfg.get("mapping") or {}).get("tp_size", 1))
        return dims_from_trtllm_config(cfg, path.name), {"precision": precision, "kv_cache_dtype": kv, "tp_size": tp}
    from glmtrt.models.registry import load_model_spec   # registry reads HF configs (never guesses from a path)

    return dims_from_spec(load_model_spec(path), path.name), {}
