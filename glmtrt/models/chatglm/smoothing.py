"""SmoothQuant declarations of the chatglm family (data only; the math is glmtrt.quant).

Which norm feeds which linear and how the fused linears split, in TensorRT-LLM 1.2.x chatglm
names (tensorrt_llm/models/chatglm/convert.py `smooth_chatglm_model` + `load_weights_from_hf_model`):
  - attention.qkv is fed by input_layernorm: its smoothing is folded into the norm weight,
    which gains `scale_to_int`; the fused qkv has three per-tensor segments q, k, v
    (`generate_int8(..., is_qkv=True, multi_query_mode=True)`).
  - attention.dense has no norm before it: it keeps a `smoother` (1, in) that divides its input;
    its static input scale is `attention.quantization_scaling_factor`.
  - mlp.fc is fed by post_layernorm (folded, `scale_to_int`); one segment.
  - mlp.proj keeps a `smoother`; its static input scale is `mlp.quantization_scaling_factor`.
"""
from __future__ import annotations

from glmtrt.models.chatglm.config import ChatGLMSpec
from glmtrt.quant.groups import SmoothGroup


def smoothing_groups(spec: ChatGLMSpec) -> tuple[SmoothGroup, ...]:
    """The four SmoothQuant linears of one decoder layer, in execution order."""
    kv = spec.num_kv_heads * spec.head_size
    return (
        SmoothGroup(linear="attention.qkv", norm="input_layernorm", segments=(spec.q_size, kv, kv),
                    shard="qkv", in_features=spec.hidden_size),
        SmoothGroup(linear="attention.dense", input_scale="attention.quantization_scaling_factor",
                    shard="cols", in_features=spec.q_size),
        SmoothGroup(linear="mlp.fc", norm="post_layernorm", shard="halves", in_features=spec.hidden_size),
        SmoothGroup(linear="mlp.proj", input_scale="mlp.quantization_scaling_factor", shard="cols",
                    in_features=spec.intermediate_size),
    )
