"""The TensorRT-LLM 1.2.x `config.json` of a chatglm-family checkpoint.

Field by field this is what `ChatGLMConfig.from_hugging_face(...).to_dict()` writes
(tensorrt_llm/models/chatglm/config.py + models/modeling_utils.py `PretrainedConfig.to_dict`):
  - architecture: any MODEL_MAP key of ChatGLMForCausalLM (we write 'ChatGLMForCausalLM').
  - vocab_size = padded_vocab_size; num_key_value_heads = multi_query_group_num.
  - position_embedding_type 'rope_gptj', rotary_pct 0.5, rotary_base = 10000 * rope_ratio
    (chatglm3 and glm4; only chatglm2 uses linear rotary_scaling instead).
  - rotary_embedding_dim: PretrainedConfig computes it from kwargs.get('rotary_pct', 1.0), and
    ChatGLMConfig consumes rotary_pct itself, so upstream writes head_size here; the attention
    layer uses rotary_pct (chatglm/model.py). We reproduce the upstream value.
  - apply_query_key_layer_scaling is always written False; hidden_act 'swiglu'; logits float32.
Only fields that both 0.13 (T4 toolchain) and 1.2 accept are written inside `mapping`; the
`quantization` block holds only the keys that differ from QuantConfig's defaults, each known to
both releases (glmtrt.checkpoint.trtllm_config.quantization_block).
"""
from __future__ import annotations

from typing import Any

from glmtrt.checkpoint.trtllm_config import quantization_block
from glmtrt.errors import GlmtrtError
from glmtrt.models.chatglm.config import TRTLLM_ARCHITECTURE, ChatGLMSpec

DTYPES = ("float32", "float16", "bfloat16")

# glmtrt precision name -> TensorRT-LLM QuantAlgo (tensorrt_llm/quantization/mode.py).
QUANT_ALGOS = {
    None: None,
    "int8-wo": "W8A16",
    "int4-wo": "W4A16",
    # calibrated (glmtrt.quant.convert_calibrated); --sq-variant picks the other W8A8_SQ_* plugins
    "int8-sq": "W8A8_SQ_PER_CHANNEL_PER_TOKEN_PLUGIN",
    "int4-awq": "W4A16_AWQ",    # + group_size / pre_quant_scale / exclude_modules set by convert_calibrated
    "fp8": "FP8",               # per-tensor FP8 W8A8 (glmtrt.quant.fp8), calibrated by convert_calibrated
}
KV_CACHE_ALGOS = {None: None, "int8": "INT8", "fp8": "FP8"}


def quantization_dict(quant: str | None = None, kv_cache_dtype: str | None = None) -> dict[str, Any]:
    """The `quantization` block: only the non-default QuantConfig keys, valid for 0.13 and 1.2."""
    if quant not in QUANT_ALGOS:
        raise GlmtrtError(f"unsupported --quant '{quant}'",
                          expected="one of: " + ", ".join(q for q in QUANT_ALGOS if q))
    if kv_cache_dtype not in KV_CACHE_ALGOS:
        raise GlmtrtError(f"unsupported --kv-cache-dtype '{kv_cache_dtype}'",
                          expected="one of: " + ", ".join(k for k in KV_CACHE_ALGOS if k))
    return quantization_block({"quant_algo": QUANT_ALGOS[quant], "kv_cache_quant_algo": KV_CACHE_ALGOS[kv_cache_dtype]})


def common_fields(spec: Any, *, architecture: str, position_embedding_type: str, dtype: str,
                  tp_size: int = 1, quant: str | None = None,
                  kv_cache_dtype: str | None = None) -> dict[str, Any]:
    """The `PretrainedConfig.to_dict` fields every GLM decoder checkpoint writes the same way
    (tensorrt_llm/models/modeling_utils.py): sizes from `spec` (a ChatGLMSpec or Glm4vSpec), the
    mapping, the quantization block and an unsharded, unshared embedding."""
    if dtype not in DTYPES:
        raise GlmtrtError(f"unsupported dtype '{dtype}'", expected=" | ".join(DTYPES))
    return {
        "architecture": architecture,
        "dtype": dtype,
        "vocab_size": spec.vocab_size,
        "hidden_size": spec.hidden_size,
        "num_hidden_layers": spec.num_layers,
        "num_attention_heads": spec.num_heads,
        "num_key_value_heads": spec.num_kv_heads,
        "head_size": spec.head_size,
        "intermediate_size": spec.intermediate_size,
        "hidden_act": "swiglu",
        "logits_dtype": "float32",
        "norm_epsilon": spec.norm_eps,
        "position_embedding_type": position_embedding_type,
        "max_position_embeddings": spec.max_position_embeddings,
        "mapping": {"world_size": tp_size, "tp_size": tp_size, "pp_size": 1},
        "quantization": quantization_dict(quant, kv_cache_dtype),
        "use_parallel_embedding": False,
        "embedding_sharding_dim": 0,
        "share_embedding_table": False,
    }


def trtllm_config(spec: ChatGLMSpec, *, dtype: str, tp_size: int = 1,
                  quant: str | None = None, kv_cache_dtype: str | None = None) -> dict[str, Any]:
    """The checkpoint `config.json` dict for `spec` converted to `dtype` over `tp_size` ranks."""
    return {
        **common_fields(spec, architecture=TRTLLM_ARCHITECTURE, position_embedding_type="rope_gptj",
                        dtype=dtype, tp_size=tp_size, quant=quant, kv_cache_dtype=kv_cache_dtype),
        "qk_layernorm": False,
        "rotary_embedding_dim": spec.head_size,
        "chatglm_version": spec.chatglm_version,
        "add_bias_linear": spec.add_bias_linear,
        "add_qkv_bias": spec.add_qkv_bias,
        "apply_query_key_layer_scaling": False,
        "apply_residual_connection_post_layernorm": spec.apply_residual_connection_post_layernorm,
        "rmsnorm": spec.rmsnorm,
        "rotary_pct": 0.5,
        "rotary_base": spec.rotary_base,
        "rotary_scaling": None,
    }
