"""The multimodal (GLM-4.1V / AutoGLM-Phone-9B) part of `glmtrt repo`.

A `glmtrt convert` output of a `Glm4vForConditionalGeneration` checkpoint (llm/ + vision/,
docs/INTERFACES.md section 7), or an engine built from one, gets a sixth model `vision_encoder`
and the prompt-table / M-RoPE tensors (glmtrt.triton.fragments.multimodal_fragments). This module
resolves the facts the python models need (written to `preprocessing/multimodal.json`), renders
the `vision_encoder` config and lays out its version dir.
"""
from __future__ import annotations

import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from glmtrt.errors import GlmtrtError
from glmtrt.fileio import read_json_object
from glmtrt.triton.template import Raw, render_template

log = logging.getLogger(__name__)

VISION_MODEL = "vision_encoder"
MM_CONFIG = "preprocessing/multimodal.json"
TABLE_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "bfloat16": "TYPE_BF16"}
#: default images per request of the CPU stand-in (a GPU repository takes the vision engine's max_images)
REFERENCE_MAX_IMAGES = 1
#: the multimodal facts copied into glmtrt_repo.json
MANIFEST_KEYS = ("max_images", "min_pixels", "max_pixels", "image_token_id", "table_dtype")
TEXT_MODELS = ("ensemble", "preprocessing", "tensorrt_llm", "postprocessing", "tensorrt_llm_bls")


def repo_models(s: dict[str, Any]) -> list[str]:
    """The models of a repository with settings `s` (vision_encoder in multimodal repositories)."""
    return [*TEXT_MODELS, VISION_MODEL] if s.get("multimodal") else list(TEXT_MODELS)


def multimodal_settings(opts, facts) -> dict[str, Any] | None:
    """settings["multimodal"] of `glmtrt repo` (None for a text model, whose options must not name images)."""
    ckpt = converted_dir(facts.dir, facts.kind)
    if ckpt is None:
        if any(v is not None for v in (opts.max_images, opts.max_pixels, opts.min_pixels)):
            raise GlmtrtError("--max-images / --max-pixels / --min-pixels apply to GLM-4.1V (multimodal) sources only",
                              fix="drop them for a text model")
        return None
    return resolve(opts, facts, ckpt)


def converted_dir(source: Path, kind: str) -> Path | None:
    """The Glm4v converted dir behind a repository source (checkpoint or engine dir), or None for text models."""
    source = Path(source).resolve()
    if kind == "reference":
        return source if (source / "llm").is_dir() and (source / "vision").is_dir() else None
    m = read_json_object(source / "manifest.json", "engine manifest")
    if (m.get("model") or {}).get("family") != "glm4v":
        return None
    ck = Path((m.get("checkpoint") or {}).get("dir") or "")
    ck = ck.parent if ck.name == "llm" else ck
    if not (ck / "vision" / "config.json").is_file():
        raise GlmtrtError(f"engine {source} was built from a GLM-4.1V conversion at {ck}, which is not readable here",
                          expected="the converted dir (llm/ + vision/) at the path in the engine manifest",
                          fix="run glmtrt repo where the converted dir is (its vision/config.json is needed)")
    return ck


def resolve(opts, facts, ckpt: Path) -> dict[str, Any]:
    """settings["multimodal"]: the MultimodalFacts (as a dict) plus what the templates need."""
    from glmtrt.models.glm4v.preprocess import AUTOGLM_MAX_PIXELS, MIN_PIXELS
    from glmtrt.triton.pymodels.mmproc import MultimodalFacts

    llm = read_json_object(ckpt / "llm" / "config.json", "llm/config.json")
    vcfg = read_json_object(ckpt / "vision" / "config.json", "vision/config.json")
    v = vcfg["vision"]
    engine_vision = {}
    if facts.kind == "gpu":
        vm = Path(facts.dir) / "vision" / "manifest.json"
        if not vm.is_file():
            raise GlmtrtError(f"engine {facts.dir} has no vision/manifest.json", expected="the vision engine of "
                              "glmtrt build (vision/encoder.plan + manifest.json)", fix="rebuild with glmtrt build")
        engine_vision = read_json_object(vm, "vision engine manifest")
    max_images = opts.max_images or int(engine_vision.get("max_images") or REFERENCE_MAX_IMAGES)
    max_pixels = opts.max_pixels or AUTOGLM_MAX_PIXELS
    min_pixels = opts.min_pixels or MIN_PIXELS
    if max_images < 1 or not 0 < min_pixels <= max_pixels:
        raise GlmtrtError(f"--max-images {max_images}, --min-pixels {min_pixels}, --max-pixels {max_pixels}",
                          expected="max_images >= 1 and 0 < min_pixels <= max_pixels")
    built = int(engine_vision.get("max_images") or max_images)
    if max_images > built:
        raise GlmtrtError(f"--max-images {max_images} but the engine's prompt table was sized for {built}",
                          expected=f"1..{built}", fix="lower --max-images or rebuild with a larger --max-images")
    dtype = "float32" if facts.kind == "reference" else str(llm.get("dtype", "float16"))
    if dtype not in TABLE_TYPES:
        raise GlmtrtError(f"llm/config.json dtype {dtype!r}", expected=", ".join(TABLE_TYPES))
    mm = MultimodalFacts(
        image_token_id=int(vcfg["image_token_id"]), image_start_token_id=int(vcfg["image_start_token_id"]),
        image_end_token_id=int(vcfg["image_end_token_id"]), patch_size=int(v["patch_size"]),
        merge_size=int(v["spatial_merge_size"]), temporal_patch_size=int(v["temporal_patch_size"]),
        vision_head_dim=int(v["hidden_size"]) // int(v["num_heads"]), vision_theta=float(v.get("rope_theta", 10000.0)),
        vocab_size=int(llm["vocab_size"]), hidden_size=int(llm["hidden_size"]),
        rotary_dim=int(vcfg.get("rotary_dim") or llm["rotary_embedding_dim"]),
        rope_theta=float(vcfg.get("rope_theta") or llm.get("rotary_base", 10000.0)),
        mrope_section=tuple(int(x) for x in (vcfg.get("mrope_section") or llm["mrope_section"])),
        max_position_embeddings=int(vcfg.get("max_position_embeddings") or llm["max_position_embeddings"]),
        table_dtype=dtype, max_images=max_images, min_pixels=min_pixels, max_pixels=max_pixels)
    patch_dim = int(v.get("in_channels", 3)) * mm.temporal_patch_size * mm.patch_size ** 2
    onnx = ckpt / "vision" / "encoder.onnx"
    if facts.kind == "reference" and not onnx.is_file():
        raise GlmtrtError(f"{onnx} is missing", expected="vision/encoder.onnx of glmtrt convert",
                          fix="re-run glmtrt convert on the Glm4v checkpoint")
    return {"facts": asdict(mm), "table_type": TABLE_TYPES[dtype], "config": MM_CONFIG, "onnx_path": str(onnx),
            "patch_dim": patch_dim, "head_dim": mm.vision_head_dim, "hidden_size": mm.hidden_size,
            "plan_path": f"{(opts.engine_path or str(facts.dir)).rstrip('/')}/vision/encoder.plan"}


def render_vision(mm: dict[str, Any], kind: str) -> str:
    """config.pbtxt of `vision_encoder` (python onnxruntime stand-in, or the TensorRT plan)."""
    io = Raw(render_template("vision_encoder_io.pbtxt", {k: str(mm[k]) for k in ("patch_dim", "head_dim", "hidden_size")}))
    if kind == "gpu":
        return render_template("vision_encoder.pbtxt", {"io": io})
    return render_template("vision_encoder_reference.pbtxt", {"io": io, "onnx_path": mm["onnx_path"]})


def write_files(tmp: Path, mm: dict[str, Any], kind: str, shim: str) -> None:
    """multimodal.json for preprocessing / BLS, and vision_encoder/1 (model.py, or model.plan -> the plan)."""
    from glmtrt.triton.pymodels.mmproc import MultimodalFacts

    facts = dict(mm["facts"])
    facts["mrope_section"] = tuple(facts["mrope_section"])
    MultimodalFacts(**facts).save(tmp / MM_CONFIG)
    version = tmp / VISION_MODEL / "1"
    if kind == "gpu":
        # Triton loads <model>/1/model.plan; the plan lives in the engine dir (mounted in the container)
        os.symlink(mm["plan_path"], version / "model.plan")
    else:
        (version / "model.py").write_text(shim, encoding="utf-8")
    log.info("multimodal repository: %s (%s), max_images %d, max_pixels %d", VISION_MODEL,
             "TensorRT plan " + mm["plan_path"] if kind == "gpu" else "onnxruntime on " + mm["onnx_path"],
             facts["max_images"], facts["max_pixels"])
