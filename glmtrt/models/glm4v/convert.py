"""`convert_glm4v`: a Glm4vForConditionalGeneration checkpoint -> one directory with two parts.

  <out>/llm/      TensorRT-LLM 1.2.x checkpoint of the text decoder for our engine class
                  (config.json + rank{N}.safetensors; weight map glmtrt.models.glm4v.weights)
  <out>/vision/   the vision tower: config.json (VisionSpec + token ids), vision.safetensors (HF names
                  under model.visual., not sharded) and, when exported, encoder.onnx
  <out>/manifest.json   one manifest (kind "trtllm-checkpoint", model.family "glm4v") over all files

The text part runs through the shared mapping engine (completeness both ways, shapes, TP shards);
the q/k rotary permutation is applied while loading (weights.permuting_loader).
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path

from glmtrt.errors import GlmtrtError

log = logging.getLogger(__name__)

LLM_DIR, VISION_DIR = "llm", "vision"
VISION_WEIGHTS = "vision.safetensors"
VISION_ONNX = "encoder.onnx"


def check_vision_tower(spec, shapes) -> None:
    """A Glm4v checkpoint must hold the whole vision tower; say which tensors are missing."""
    from glmtrt.convert.mapping import lacks_error
    from glmtrt.models.glm4v.weights import vision_required

    missing = [n for n in vision_required(spec) if n not in shapes]
    if missing:
        raise lacks_error(missing, what="vision-tower tensor(s)", show=6,
                          expected="a Glm4vForConditionalGeneration checkpoint with model.visual.* weights",
                          fix="download the full GLM-4.1V / AutoGLM-Phone-9B repository (all safetensors shards)")


def vision_config(spec) -> dict:
    """vision/config.json: the VisionSpec plus the image token ids and the decoder's M-RoPE facts."""
    return {"vision": asdict(spec.vision), "image_token_id": spec.image_token_id,
            "image_start_token_id": spec.image_start_token_id, "image_end_token_id": spec.image_end_token_id,
            "mrope_section": list(spec.mrope_section), "rotary_dim": spec.rotary_dim,
            "rope_theta": spec.rope_theta, "max_position_embeddings": spec.max_position_embeddings}


def _write_llm(tmp: Path, ckpt, spec, rows, ctx, shapes, tdtype, progress: bool) -> dict[str, str]:
    from tqdm import tqdm

    from glmtrt.checkpoint.safetensors_stream import StreamingSafetensorsWriter
    from glmtrt.convert.mapping import materialize, shard_tensor
    from glmtrt.models.glm4v.weights import permuting_loader

    load = permuting_loader(ckpt.array, spec)     # numpy, as the mapping engine takes it
    writers = [StreamingSafetensorsWriter(tmp / f"rank{r}.safetensors",
                                          [(row.target, tdtype, shapes[row.target][r]) for row in rows])
               for r in range(ctx.tp_size)]
    try:
        for row in tqdm(rows, desc="convert llm", unit="tensor", disable=not progress):
            full = materialize(row, load, tdtype)
            for r, w in enumerate(writers):
                w.write(row.target, shard_tensor(full, row.shard, r, ctx))
        return {f"{LLM_DIR}/{w.path.name}": w.close() for w in writers}
    except BaseException:
        for w in writers:
            w.abort()
        raise


def _write_vision(tmp: Path, ckpt, names, tdtype) -> str:
    from glmtrt.checkpoint.safetensors_stream import StreamingSafetensorsWriter

    w = StreamingSafetensorsWriter(tmp / VISION_WEIGHTS, [(n, tdtype, tuple(ckpt.shapes[n])) for n in names])
    try:
        for n in names:
            w.write(n, ckpt.get(n).to(tdtype))
        return w.close()
    except BaseException:
        w.abort()
        raise


def _json(path: Path, body: dict) -> str:
    path.write_text(json.dumps(body, indent=4, ensure_ascii=False) + "\n", encoding="utf-8")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def convert_glm4v(src, out, options, *, force: bool = False, progress: bool = True,
                  export_onnx: bool = True) -> Path:
    """Convert the Glm4v checkpoint at `src` into `out` (llm/ + vision/ + manifest.json)."""
    import torch

    from glmtrt.checkpoint.atomic import atomic_output_dir, check_output_dir
    from glmtrt.checkpoint.hf_reader import HFCheckpoint
    from glmtrt.checkpoint.manifest import write_manifest
    from glmtrt.convert.mapping import ShardContext, check_plan, expand_rows, rank_shapes
    from glmtrt.models.glm4v.config import spec_from_glm4v_config, with_text_prefix
    from glmtrt.models.glm4v.trtllm import trtllm_config
    from glmtrt.models.glm4v.weights import IGNORED, global_rows, layer_rows, vision_names

    dtypes = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if options.dtype not in dtypes:
        raise GlmtrtError(f"unsupported dtype '{options.dtype}'", expected=" | ".join(dtypes))
    check_output_dir(out, force)
    ckpt = HFCheckpoint(src, allow_pickle=options.allow_pickle)
    spec = with_text_prefix(spec_from_glm4v_config(ckpt.config, options.chatglm_version), ckpt.shapes)
    check_vision_tower(spec, ckpt.shapes)
    rows = expand_rows(layer_rows(spec), global_rows(spec), spec.num_layers)
    check_plan(rows, ckpt.shapes, IGNORED)
    ctx = ShardContext(options.tp_size, spec.num_heads, spec.num_kv_heads, spec.head_size)
    shapes = {r.target: rank_shapes(r, ctx) for r in rows}
    config = trtllm_config(spec, dtype=options.dtype, tp_size=options.tp_size, quant=options.quant,
                           kv_cache_dtype=options.kv_cache_dtype)
    tdtype = dtypes[options.dtype]
    log.info("converting %s (Glm4v, %d layers + %d vision blocks) -> %s [%s, tp=%d, quant=%s]", src,
             spec.num_layers, spec.vision.depth, out, options.dtype, options.tp_size, options.quant or "none")
    vnames = vision_names(ckpt.shapes)
    with atomic_output_dir(out, force) as tmp:
        (tmp / LLM_DIR).mkdir()
        (tmp / VISION_DIR).mkdir()
        hashes = _write_llm(tmp / LLM_DIR, ckpt, spec, rows, ctx, shapes, tdtype, progress)
        hashes[f"{LLM_DIR}/config.json"] = _json(tmp / LLM_DIR / "config.json", config)
        hashes[f"{VISION_DIR}/{VISION_WEIGHTS}"] = _write_vision(tmp / VISION_DIR, ckpt, vnames, tdtype)
        hashes[f"{VISION_DIR}/config.json"] = _json(tmp / VISION_DIR / "config.json", vision_config(spec))
        if export_onnx:
            from glmtrt.models.glm4v.onnx_export import export_vision_onnx

            from glmtrt.fileio import sha256_file

            for f in export_vision_onnx(tmp / VISION_DIR, tmp / VISION_DIR / VISION_ONNX):
                hashes[f"{VISION_DIR}/{f.name}"] = sha256_file(f)
        write_manifest(tmp, "trtllm-checkpoint", hashes, source=ckpt.fingerprint(), options=asdict(options),
                       model={"family": "glm4v", "hf_architecture": spec.hf_architecture,
                              "source_format": spec.source_format, "chatglm_version": None,
                              "num_params": spec.num_params(), "eos_token_ids": list(spec.eos_token_ids),
                              "pad_token_id": spec.pad_token_id, "llm_dir": LLM_DIR, "vision_dir": VISION_DIR,
                              "image_token_id": spec.image_token_id,
                              "vision_params": spec.vision.num_params()})
    log.info("wrote %s (llm/ with %d rank file(s), vision/)", out, options.tp_size)
    return Path(out)
