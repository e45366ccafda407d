"""ChatGLM3 / GLM-4 family: spec (config.py), TensorRT-LLM config (trtllm.py), weight maps (weights.py)."""
from glmtrt.models.chatglm.config import ChatGLMSpec, spec_from_chatglm_config, spec_from_glm_config
from glmtrt.models.chatglm.trtllm import trtllm_config
from glmtrt.models.chatglm.smoothing import smoothing_groups
from glmtrt.models.chatglm.weights import IGNORED, global_rows, layer_rows

__all__ = ["ChatGLMSpec", "spec_from_chatglm_config", "spec_from_glm_config", "trtllm_config",
           "IGNORED", "global_rows", "layer_rows", "smoothing_groups"]
