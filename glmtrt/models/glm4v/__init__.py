"""GLM-4.1V / AutoGLM-Phone-9B family (`Glm4vForConditionalGeneration`).

config.py (spec), weights.py (text map + rotary permutation on load), trtllm.py (llm/ config for our
engine class), convert.py (llm/ + vision/), preprocess.py and positions.py (image -> patches, 3-D
positions, M-RoPE table: pure functions, also used by Triton), vision.py (the vision tower in torch,
exported to ONNX by onnx_export.py), engine/ (our TensorRT-LLM model class; GPU container only).
"""
from glmtrt.models.glm4v.config import ARCHITECTURE, Glm4vSpec, VisionSpec, spec_from_glm4v_config
from glmtrt.models.glm4v.trtllm import ENGINE_ARCHITECTURE, trtllm_config
from glmtrt.models.glm4v.weights import IGNORED, global_rows, layer_rows


def convert(src, out, options, *, force: bool = False, progress: bool = True):
    """Family converter (llm/ + vision/); see glmtrt.models.glm4v.convert."""
    from glmtrt.models.glm4v.convert import convert_glm4v

    return convert_glm4v(src, out, options, force=force, progress=progress)


__all__ = ["ARCHITECTURE", "ENGINE_ARCHITECTURE", "Glm4vSpec", "VisionSpec", "spec_from_glm4v_config", "trtllm_config",
           "IGNORED", "global_rows", "layer_rows", "convert"]
