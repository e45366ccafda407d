"""SmoothQuant W8A8 (int8-sq): smoothing scales and the int8 tensors of one linear.

The numbers are those of TensorRT-LLM 1.2.x tensorrt_llm/models/chatglm/convert.py
(`smooth_gemm`, `generate_int8`, `get_tllm_linear_sq_weight`), the source of
`convert_checkpoint.py --smoothquant A [--per_channel] [--per_token]`:
  - smoothing s = clamp(max|X|^a / max|W|^(1-a), min=1e-5) per input channel, max|W| over the output
    rows of every linear fed by the same input (`smooth_gemm`; its `weight_scales.clamp` result is
    discarded upstream, so max|W| is not clamped there); the norm weight is divided by s
    (`apply_smoothing`) or the linear keeps s as `smoother`, and the weight columns are multiplied by s.
  - weights: round-half-even(w * 127 / amax).clip(-127, 127) with amax per output row
    ("weight.int8.col") or per tensor - per q, k, v segment for the fused qkv ("weight.int8").
  - per-token (dynamic) variants: per_channel_scale = amax / 127 (1, out) or (1, 1) (qkv: (1, out)
    with each segment's value repeated); norms get scale_to_int = [1.0] float16.
  - static (per-tensor activation) variants: per_channel_scale = scale_y_accum_quant =
    (127/max|Y|) / ((127/max|X_smoothed|) * (127/amax_w)), act_scale = [[max|Y|/127]],
    scale_to_int / quantization_scaling_factor = [127/max|X_smoothed|] float32.
  - INT8 KV cache: attention.kv_cache_scaling_factor = [max|qkv output| / 127] over ALL qkv
    output channels (q included: `scale_y_quant_orig` of the qkv act range), float32 (1,).
Arithmetic is float32 like upstream's numpy (`to_np(...).astype(np.float32)`).
"""
from __future__ import annotations

from typing import Sequence

import torch

from glmtrt.errors import GlmtrtError
from glmtrt.quant.groups import SmoothGroup

#: glmtrt SmoothQuant variant -> TensorRT-LLM QuantAlgo (tensorrt_llm/quantization/mode.py
#: W8A8_SQ_PLUGIN_LIST; chatglm/convert.py reads per_channel / per_token from the algo name).
SQ_ALGOS = {
    "per-channel-per-token": "W8A8_SQ_PER_CHANNEL_PER_TOKEN_PLUGIN",
    "per-channel-per-tensor": "W8A8_SQ_PER_CHANNEL_PER_TENSOR_PLUGIN",
    "per-tensor-per-token": "W8A8_SQ_PER_TENSOR_PER_TOKEN_PLUGIN",
    "per-tensor": "W8A8_SQ_PER_TENSOR_PLUGIN",
}
MIN_SMOOTH = 1e-5
_TINY = 1e-8     # guards all-zero rows (upstream would divide by zero there)


def sq_flags(quant_algo: str) -> tuple[bool, bool]:
    """(per_channel, per_token) of a W8A8_SQ_* algo, read from its name like chatglm/convert.py."""
    if quant_algo not in SQ_ALGOS.values():
        raise GlmtrtError(f"quant_algo {quant_algo!r} is not a SmoothQuant plugin algo",
                          expected=" | ".join(SQ_ALGOS.values()))
    return "PER_CHANNEL" in quant_algo, "PER_TOKEN" in quant_algo


def check_alpha(alpha: float) -> float:
    """The SmoothQuant migration strength must lie in [0, 1]."""
    if not 0.0 <= float(alpha) <= 1.0:
        raise GlmtrtError(f"--smoothquant-alpha {alpha}", expected="a value in [0, 1] (0.5 is the paper's default)")
    return float(alpha)


def smoothing_scales(x_amax: torch.Tensor, weights: Sequence[torch.Tensor], alpha: float) -> torch.Tensor:
    """s [in] = clamp(x_amax^alpha / w_amax^(1-alpha), min=1e-5), computed in float64 as `smooth_gemm`."""
    w_amax = torch.stack([w.abs().amax(dim=0) for w in weights]).amax(dim=0).double().clamp(min=_TINY)
    s = x_amax.double().pow(alpha) / w_amax.pow(1.0 - alpha)
    return s.clamp(min=MIN_SMOOTH).float()


def _round_i8(x: torch.Tensor) -> torch.Tensor:
    # numpy round() (half to even) then clip to +-127, as `to_i8` in generate_int8
    return torch.round(x).clamp(-127, 127).to(torch.int8)


def quantize_linear(w: torch.Tensor, x_amax: torch.Tensor, y_amax: torch.Tensor, group: SmoothGroup,
                    per_channel: bool, per_token: bool) -> dict[str, torch.Tensor]:
    """The int8 tensors of one smoothed linear w [out, in] (full, TP=1), keyed by the suffix after
    the linear's prefix, plus the input-scale tensor under the key "scale_to_int".

    x_amax: per-input-channel max|X| AFTER smoothing; y_amax: per-output-channel max|Y|.
    """
    w = w.float()
    out = w.shape[0]
    row_amax = w.abs().amax(dim=1).clamp(min=_TINY)
    if per_channel:
        amax = row_amax
    elif group.segments:
        if sum(group.segments) != out:
            raise GlmtrtError(f"{group.linear} has {out} rows", expected=f"segments {group.segments}")
        amax = torch.cat([seg.amax().expand(seg.numel()) for seg in row_amax.split(list(group.segments))])
    else:
        amax = row_amax.amax().expand(out)
    w_orig_quant = (127.0 / amax).float()
    q = _round_i8(w * w_orig_quant[:, None])
    w_quant_orig = (1.0 / w_orig_quant).float()
    vector = per_channel or bool(group.segments)          # col_shape = shape if (is_qkv or per_channel)
    res: dict[str, torch.Tensor] = {"weight": q}
    if per_token:
        scale = w_quant_orig if vector else w_quant_orig[:1]
        res["per_channel_scale"] = scale.reshape(1, -1).contiguous()
        if group.norm:
            res["scale_to_int"] = torch.ones(1, dtype=torch.float16)
        return res
    sx = torch.tensor(127.0, dtype=torch.float32) / x_amax.float().max().clamp(min=_TINY)
    y_max = y_amax.float().max().clamp(min=_TINY)
    sy = torch.tensor(127.0, dtype=torch.float32) / y_max
    accum = (sy / (sx * w_orig_quant)).float()
    res["per_channel_scale"] = (accum if vector else accum[:1]).reshape(1, -1).contiguous()
    res["scale_to_int"] = sx.reshape(1)
    res["act_scale"] = (y_max / 127.0).reshape(1, 1).float()
    return res


def kv_cache_scale(qkv_y_amax: torch.Tensor) -> torch.Tensor:
    """attention.kv_cache_scaling_factor [1] float32 = max|qkv output| / 127 (chatglm/convert.py)."""
    return (qkv_y_amax.float().max().clamp(min=_TINY) / 127.0).reshape(1)
