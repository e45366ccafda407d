"""INT4-AWQ (W4A16_AWQ): groupwise int4 weights, the AWQ per-channel scale search, int4 packing.

Checkpoint format (what TensorRT-LLM 1.2.x loads from a ModelOpt export):
  - tensorrt_llm/models/modeling_utils.py `preprocess_perlayer_weights` (W4A16_AWQ): an int8
    `weight` is transposed and fed to preprocess_weights_for_mixed_gemm as quint4x2, so the
    checkpoint holds packed int4 of shape (out/2, in); `weights_scaling_factor` is transposed to
    (in/group, out) in the model dtype, so the checkpoint holds (out, in/group);
    `prequant_scaling_factor` (in,) becomes (1, in).
  - quantization/layers.py WeightOnlyGroupwiseQuantLinear: scale (in/group, out), pre_quant_scale
    (1, in) multiplies the input before the GEMM (quant_algo flag PRE_SCALE_QUANT), no zero point.
  - ModelOpt export `to_quantized_weight` (INT4_AWQ): q = round(w / scale[:, group]).clamp(-8, 7);
    rows 2j and 2j+1 share a byte, 2j in the low nibble; scale = max|w| of the group / 7.
The scale search follows AWQ (Lin et al. 2023, the llm-awq `auto_scale` grid): for a in
{0, 1/n, ..., (n-1)/n}, s = mean|x|^a normalised by sqrt(max(s) min(s)); keep the s whose
fake-quantized weight W*s (input divided by s) gives the smallest output MSE on the calibration
activations. a = 0 is plain round-to-nearest, so the search never loses to RTN on its own data.
"""
from __future__ import annotations

import torch

from glmtrt.errors import GlmtrtError

INT4_MAX = 7
_TINY = 1e-8


def check_group(in_features: int, group_size: int, what: str) -> None:
    """Every quantized linear's (per-rank) input width must be a multiple of the group size."""
    if group_size < 1 or in_features % group_size:
        raise GlmtrtError(f"{what} has {in_features} input channels, not a multiple of --group-size {group_size}",
                          expected="a group size dividing every linear's input width (per TP rank)",
                          fix="use --group-size 64 or 128 (TensorRT-LLM's AWQ kernels take 64 and 128)")


def quantize_groups(w: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(q int8 [out, in] in [-8, 7], scale float32 [out, in/group]) with scale = group max|w| / 7."""
    out, inp = w.shape
    g = w.float().reshape(out, inp // group_size, group_size)
    scale = (g.abs().amax(dim=-1) / INT4_MAX).clamp(min=_TINY)
    q = torch.round(g / scale[..., None]).clamp(-8, 7).to(torch.int8)
    return q.reshape(out, inp), scale


def dequantize_groups(q: torch.Tensor, scale: torch.Tensor, group_size: int) -> torch.Tensor:
    """float32 q * scale (the scale broadcast over its group of input channels)."""
    return q.float() * scale.float().repeat_interleave(group_size, dim=1)


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """[out, in] int4 values -> int8 [out/2, in]: row 2j in the low nibble, row 2j+1 in the high one."""
    if q.shape[0] % 2:
        raise GlmtrtError(f"cannot pack {q.shape[0]} rows into int4 pairs", expected="an even number of output rows")
    lo, hi = q[0::2].to(torch.int16), q[1::2].to(torch.int16)
    packed = (lo & 0x0F) | ((hi & 0x0F) << 4)
    return packed.to(torch.uint8).view(torch.int8)


def unpack_int4(p: torch.Tensor) -> torch.Tensor:
    """Inverse of pack_int4: int8 [out/2, in] -> int8 [out, in] in [-8, 7]."""
    u = p.view(torch.uint8).to(torch.int16)
    lo, hi = u & 0x0F, (u >> 4) & 0x0F
    lo, hi = torch.where(lo > 7, lo - 16, lo), torch.where(hi > 7, hi - 16, hi)
    return torch.stack((lo, hi), dim=1).reshape(-1, p.shape[1]).to(torch.int8)


def awq_scales(w: torch.Tensor, x: torch.Tensor, x_mean_abs: torch.Tensor, group_size: int,
               grid: int = 20) -> tuple[torch.Tensor, float, float, float]:
    """(s [in], best a, loss at a, loss of RTN) for weight w [out, in] and inputs x [tokens, in]."""
    w, x = w.float(), x.float()
    ref = x @ w.t()
    base = x_mean_abs.float().clamp(min=1e-4)
    best = (None, 0.0, float("inf"))
    rtn = None
    for k in range(grid):
        a = k / grid
        s = base.pow(a).clamp(min=1e-4)
        s = s / (s.max() * s.min()).sqrt()
        q, scale = quantize_groups(w * s[None, :], group_size)
        wq = dequantize_groups(q, scale, group_size) / s[None, :]
        loss = (x @ wq.t() - ref).pow(2).mean().item()
        if k == 0:
            rtn = loss
        if loss < best[2]:
            best = (s, a, loss)
    return best[0], best[1], best[2], float(rtn)
