"""Weight-only quantization (INT8 / INT4, per output channel) as TensorRT-LLM does it.

glmtrt writes weight-only checkpoints with floating-point weights and
`quantization.quant_algo` = W8A16 / W4A16; TensorRT-LLM quantizes them when it loads the
checkpoint (tensorrt_llm/models/modeling_utils.py `preprocess_weights` ->
models/convert_utils.py `weight_only_quantize_dict`, per TP rank, on the linear weights whose
names contain qkv/dense/fc/proj/gate). The numbers come from
cpp/tensorrt_llm/kernels/cutlass_kernels/cutlass_preprocessors.cpp `symmetric_quantize`:
per output column, scale = max|w| * 2^-(bits-1) (stored in the activation dtype),
q = round-half-away(w / scale) clipped to [-2^(bits-1), 2^(bits-1) - 1]; the GEMM kernels use
q * scale. `fake_quantize` returns that dequantized weight so the reference executor computes
what the engine computes.
"""
from __future__ import annotations

import torch

#: TensorRT-LLM QuantAlgo -> bits of the weight-only formats.
WEIGHT_ONLY_BITS = {"W8A16": 8, "W4A16": 4}
#: Substrings of the tensor names quantized by `weight_only_quantize_dict` (its default quant_weights).
QUANTIZED_NAMES = ("qkv.weight", "dense.weight", "fc.weight", "proj.weight", "gate.weight")


def is_quantized_weight(name: str) -> bool:
    """True for the linear weights TensorRT-LLM quantizes in weight-only mode."""
    return any(part in name for part in QUANTIZED_NAMES)


def _round_half_away(x: torch.Tensor) -> torch.Tensor:
    # C's round(): halves go away from zero (torch.round rounds halves to even)
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def quantize(weight: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(q int8 [out, in], scale float32 [out]) of a [out, in] weight, per output channel."""
    if bits not in (4, 8):
        raise ValueError(f"bits must be 4 or 8, not {bits}")
    w = weight.float()
    scale = w.abs().amax(dim=1) * 2.0 ** -(bits - 1)
    safe = torch.where(scale == 0, torch.ones_like(scale), scale)
    q = _round_half_away(w / safe[:, None])
    q = torch.where(scale[:, None] == 0, torch.zeros_like(q), q)
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return q.clamp(lo, hi).to(torch.int8), scale


def fake_quantize(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """The weight the engine effectively multiplies with: q * scale, in the weight's dtype
    (the scale is rounded to that dtype first, as the kernel stores it)."""
    q, scale = quantize(weight, bits)
    scale = scale.to(weight.dtype).float()
    return (q.float() * scale[:, None]).to(weight.dtype)
