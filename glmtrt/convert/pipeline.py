"""`convert_checkpoint`: HF checkpoint -> TensorRT-LLM 1.2.x checkpoint directory.

Streaming: every target tensor is materialised once, cast, sharded for all ranks and appended to
the rank files, so peak memory is about one (fused) tensor. The output appears atomically with a
manifest (sha256 of every file, source fingerprint, glmtrt version, resolved options).
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from glmtrt.checkpoint.atomic import atomic_output_dir, check_output_dir
from glmtrt.checkpoint.hf_reader import HFCheckpoint
from glmtrt.checkpoint.manifest import write_manifest
from glmtrt.checkpoint.safetensors_stream import StreamingSafetensorsWriter
from glmtrt.convert.mapping import ShardContext, check_plan, expand_rows, materialize, rank_shapes, shard_tensor
from glmtrt.errors import GlmtrtError
from glmtrt.models.registry import read_hf_config, resolve

log = logging.getLogger(__name__)

TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class ConvertOptions:
    """Resolved options of one conversion (recorded in the manifest)."""

    dtype: str = "float16"
    tp_size: int = 1
    quant: str | None = None
    kv_cache_dtype: str | None = None
    chatglm_version: str | None = None
    allow_pickle: bool = False


def plan_conversion(src: str | Path, options: ConvertOptions):
    """Open the source, resolve the family and check the full plan; no weight is read."""
    if options.dtype not in TORCH_DTYPES:
        raise GlmtrtError(f"unsupported dtype '{options.dtype}'", expected=" | ".join(TORCH_DTYPES))
    if options.tp_size < 1:
        raise GlmtrtError(f"tp_size {options.tp_size}", expected="an integer >= 1")
    ckpt = HFCheckpoint(src, allow_pickle=options.allow_pickle)
    entry = resolve(ckpt.config)
    spec = entry.spec_from_config(ckpt.config, options.chatglm_version)
    rows = expand_rows(entry.layer_rows(spec), entry.global_rows(spec), spec.num_layers)
    check_plan(rows, ckpt.shapes, entry.ignored)
    ctx = ShardContext(options.tp_size, spec.num_heads, spec.num_kv_heads, spec.head_size)
    shapes = {r.target: rank_shapes(r, ctx) for r in rows}   # validates divisibility up front
    config = entry.trtllm_config(spec, dtype=options.dtype, tp_size=options.tp_size,
                                 quant=options.quant, kv_cache_dtype=options.kv_cache_dtype)
    return ckpt, entry, spec, rows, ctx, shapes, config


def convert_checkpoint(src: str | Path, out: str | Path, *, dtype: str = "float16", tp_size: int = 1,
                       quant: str | None = None, kv_cache_dtype: str | None = None,
                       chatglm_version: str | None = None, allow_pickle: bool = False,
                       force: bool = False, progress: bool = True) -> Path:
    """Convert an HF ChatGLM3/GLM-4 checkpoint at `src` into a TRT-LLM checkpoint at `out`."""
    options = ConvertOptions(dtype, tp_size, quant, kv_cache_dtype, chatglm_version, allow_pickle)
    family_convert = resolve(read_hf_config(src)).convert
    if family_convert is not None:   # e.g. glm4v: llm/ + vision/ under one manifest
        return family_convert(src, out, options, force=force, progress=progress)
    check_output_dir(out, force)
    ckpt, entry, spec, rows, ctx, shapes, config = plan_conversion(src, options)
    tdtype = TORCH_DTYPES[dtype]
    log.info("converting %s (%s, %s, %d layers) -> %s [%s, tp=%d]", src, entry.architecture,
             spec.chatglm_version, spec.num_layers, out, dtype, tp_size)
    from tqdm import tqdm

    with atomic_output_dir(out, force) as tmp:
        writers = [StreamingSafetensorsWriter(tmp / f"rank{r}.safetensors",
                                              [(row.target, tdtype, shapes[row.target][r]) for row in rows])
                   for r in range(tp_size)]
        try:
            for row in tqdm(rows, desc="convert", unit="tensor", disable=not progress):
                full = materialize(row, ckpt.get, tdtype)
                for r, w in enumerate(writers):
                    w.write(row.target, shard_tensor(full, row.shard, r, ctx))
                del full
            hashes = {w.path.name: w.close() for w in writers}
        except BaseException:
            for w in writers:
                w.abort()
            raise
        cfg_path = tmp / "config.json"
        cfg_path.write_text(json.dumps(config, indent=4) + "\n", encoding="utf-8")
        import hashlib
        hashes["config.json"] = hashlib.sha256(cfg_path.read_bytes()).hexdigest()
        write_manifest(tmp, "trtllm-checkpoint", hashes,
                       source=ckpt.fingerprint(),
                       options=asdict(options),
                       model={"family": entry.family, "hf_architecture": entry.architecture,
                              "source_format": entry.source_format,
                              "chatglm_version": spec.chatglm_version,
                              "num_params": spec.num_params(),
                              "eos_token_ids": list(spec.eos_token_ids),
                              "pad_token_id": spec.pad_token_id})
    log.info("wrote %s (%d rank file(s))", out, tp_size)
    return Path(out)
