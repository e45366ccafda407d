"""Model-family registry, keyed on the HF config's `architectures`.

One row per HF architecture name. A row says which family folder handles it and which HF weight
layout ("source format") it has. Unknown architectures get an error listing the supported ones.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from glmtrt.errors import GlmtrtError
from glmtrt.fileio import read_json_object
from glmtrt.models import chatglm, glm4v


@dataclass(frozen=True)
class FamilyEntry:
    """How glmtrt handles one HF architecture."""

    architecture: str
    family: str                       # family folder under glmtrt/models
    source_format: str                # HF weight layout
    description: str
    spec_from_config: Callable[..., Any]
    layer_rows: Callable[[Any], list]
    global_rows: Callable[[Any], list]
    ignored: tuple[str, ...]
    trtllm_config: Callable[..., dict]
    smoothing_groups: Callable[[Any], tuple] | None = None   # calibrated quantization (glmtrt.quant)
    # a family whose output is more than one TensorRT-LLM checkpoint converts itself
    convert: Callable[..., Any] | None = None


def _chatglm(arch: str, fmt: str, description: str) -> FamilyEntry:
    spec_fn = chatglm.spec_from_chatglm_config if fmt == "chatglm" else chatglm.spec_from_glm_config
    return FamilyEntry(arch, "chatglm", fmt, description, spec_fn, chatglm.layer_rows,
                       chatglm.global_rows, chatglm.IGNORED[fmt], chatglm.trtllm_config,
                       chatglm.smoothing_groups)


REGISTRY: dict[str, FamilyEntry] = {e.architecture: e for e in (
    _chatglm("ChatGLMModel", "chatglm", "ChatGLM3-6B (-base, -32k), GLM-4-9B-chat (THUDM layout)"),
    _chatglm("ChatGLMForConditionalGeneration", "chatglm", "ChatGLM3 / GLM-4 (THUDM layout)"),
    _chatglm("GlmForCausalLM", "hf-glm", "GLM-4 / ChatGLM in transformers layout (e.g. glm-4-9b-chat-hf)"),
    FamilyEntry(glm4v.ARCHITECTURE, "glm4v", "glm4v", "GLM-4.1V-9B / AutoGLM-Phone-9B (text decoder + vision tower)",
                glm4v.spec_from_glm4v_config, glm4v.layer_rows, glm4v.global_rows, glm4v.IGNORED,
                glm4v.trtllm_config, convert=glm4v.convert),
)}


def engine_model_class(trtllm_architecture: str | None) -> tuple[str, str] | None:
    """(--model_cls_file, --model_cls_name) for checkpoints whose engine class glmtrt ships, else None
    (TensorRT-LLM's own MODEL_MAP class is used)."""
    if trtllm_architecture == glm4v.ENGINE_ARCHITECTURE:
        from glmtrt.models.glm4v.engine import MODEL_CLASS, MODEL_FILE

        return str(MODEL_FILE), MODEL_CLASS
    return None


def supported_architectures() -> list[str]:
    return sorted(REGISTRY)


def read_hf_config(model_dir: str | Path) -> dict[str, Any]:
    """Parse `<model_dir>/config.json` with clear errors."""
    path = Path(model_dir) / "config.json"
    if not Path(model_dir).is_dir():
        raise GlmtrtError(f"model directory {model_dir} does not exist",
                          expected="a Hugging Face model directory with config.json and weights")
    if not path.is_file():
        raise GlmtrtError(f"{path} is missing", expected="a Hugging Face model directory with config.json",
                          fix="download the whole model repository, not only the weights")
    return read_json_object(path, "config.json")


def resolve(cfg: Mapping[str, Any]) -> FamilyEntry:
    """The registry row of an HF config, by its `architectures` list."""
    archs = cfg.get("architectures") or []
    for arch in archs:
        if arch in REGISTRY:
            return REGISTRY[arch]
    found = ", ".join(archs) if archs else "no 'architectures' entry"
    raise GlmtrtError(f"unsupported architecture: {found}",
                      expected="one of: " + ", ".join(supported_architectures()),
                      fix="glmtrt converts ChatGLM3 / GLM-4 / GLM-4.1V (AutoGLM) checkpoints; check config.json 'architectures'")


def load_model(model_dir: str | Path, chatglm_version: str | None = None):
    """(registry entry, spec) of an HF model directory."""
    cfg = read_hf_config(model_dir)
    entry = resolve(cfg)
    return entry, entry.spec_from_config(cfg, chatglm_version)


def load_model_spec(model_dir: str | Path, chatglm_version: str | None = None):
    """The frozen spec (dims, version, ...) of an HF model directory."""
    return load_model(model_dir, chatglm_version)[1]
