"""The TensorRT-LLM 1.2.x checkpoint `config.json` of llm/ for our engine class `Glm4vForCausalLM`.

Field names are `PretrainedConfig.to_dict` ones (tensorrt_llm/models/modeling_utils.py). The class
is ours (glmtrt/models/glm4v/engine/model.py, loaded by trtllm-build --model_cls_file), so the
architecture string is not a MODEL_MAP key; it avoids an upper-case "GLM", which the C++ runtime's
config parser treats as ChatGLM (cpp/tensorrt_llm/runtime/... modelConfig parsing), and
position_embedding_type "mrope" (tensorrt_llm/functional.py PositionEmbeddingType.mrope) makes
trtllm-build add the mrope_rotary_cos_sin / mrope_position_deltas inputs as for Qwen2-VL.
rotary_embedding_dim = head_size * 0.5 (partial rotary); mrope_section is the per-slot split of the
rotary_dim/2 frequencies (GLM-4.1V [8, 12, 12], not Qwen2-VL's [16, 24, 24] over 64 slots).
"""
from __future__ import annotations

from typing import Any

from glmtrt.models.chatglm.trtllm import common_fields
from glmtrt.models.glm4v.config import Glm4vSpec

ENGINE_ARCHITECTURE = "Glm4vForCausalLM"


def trtllm_config(spec: Glm4vSpec, *, dtype: str, tp_size: int = 1,
                  quant: str | None = None, kv_cache_dtype: str | None = None) -> dict[str, Any]:
    """The llm/ `config.json` dict for `spec` converted to `dtype` over `tp_size` ranks."""
    return {
        **common_fields(spec, architecture=ENGINE_ARCHITECTURE, position_embedding_type="mrope",
                        dtype=dtype, tp_size=tp_size, quant=quant, kv_cache_dtype=kv_cache_dtype),
        "rotary_base": spec.rope_theta,
        "rotary_pct": spec.partial_rotary_factor,
        "rotary_embedding_dim": spec.rotary_dim,
        "rotary_scaling": None,
        "mrope_section": list(spec.mrope_section),
        "attn_bias": True,
        "dense_bias": False,
        "mlp_bias": False,
        "rmsnorm": True,
        "image_token_id": spec.image_token_id,
        "vision_hidden_size": spec.vision.hidden_size,
    }
