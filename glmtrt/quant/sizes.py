"""Weight memory per precision (shared by `glmtrt inspect` and the build planner).

Weight-only quantization in TensorRT-LLM quantizes the linear layers (qkv, dense, fc, proj)
to int8/int4 with one fp16 scale per output channel; the embedding, norms and lm_head stay in
the activation dtype (tensorrt_llm/models/convert_utils.py `weight_only_quantize_dict`, whose
default quant_weights are qkv/dense/fc/proj/gate).
"""
from __future__ import annotations

from typing import Any

# bytes per weight of the quantized linear layers
LINEAR_BYTES = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "int8-wo": 1.0, "int4-wo": 0.5, "w8a8": 1.0, "fp8": 1.0}
# bytes per weight of everything else (embedding, norms, lm_head)
OTHER_BYTES = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "int8-wo": 2.0, "int4-wo": 2.0, "w8a8": 2.0, "fp8": 2.0}
PRECISIONS = tuple(LINEAR_BYTES)


def linear_params(spec: Any) -> int:
    """Parameters in the quantizable linear layers of all decoder layers."""
    h, i = spec.hidden_size, spec.intermediate_size
    q = spec.num_heads * spec.head_size
    qkv = q + 2 * spec.num_kv_heads * spec.head_size
    return spec.num_layers * (qkv * h + q * h + 3 * i * h)


def weight_bytes(spec: Any, precision: str, tp_size: int = 1) -> int:
    """Weight bytes per rank. Sharded tensors divide by tp; the embedding is replicated."""
    if precision not in LINEAR_BYTES:
        raise KeyError(precision)
    lin = linear_params(spec)
    other = spec.num_params() - lin
    embed = spec.vocab_size * spec.hidden_size
    scales = 0
    if precision in ("int8-wo", "int4-wo", "w8a8", "fp8"):
        h, i = spec.hidden_size, spec.intermediate_size
        qkv = (spec.num_heads + 2 * spec.num_kv_heads) * spec.head_size
        scales = spec.num_layers * (qkv + h + 2 * i + h) * 2      # one fp16 scale per output channel
    per_rank = (lin * LINEAR_BYTES[precision] + (other - embed) * OTHER_BYTES[precision] + scales) / tp_size
    return int(per_rank + embed * OTHER_BYTES[precision])
