"""FP8 (e4m3) per-tensor W8A8 and the FP8 KV cache: the tensors TensorRT-LLM 1.2.x loads for chatglm.

Format (what `quant_algo` FP8 makes the loader expect):
  - tensorrt_llm/quantization/quantize.py `fp8_quantize`: every ColumnLinear becomes FP8Linear and
    every RowLinear FP8RowLinear (qkv, dense, fc, proj), except `exclude_modules` (default
    '*lm_head', '*vocab_embedding', ...). Norms (input_layernorm, post_layernorm, ln_f), the
    embedding and lm_head stay in the model dtype; so do the biases (FP8Linear.postprocess).
  - tensorrt_llm/quantization/layers.py FP8Linear / FP8RowLinear: `weight` fp8 (out/tp, in) or
    (out, in/tp), `weights_scaling_factor` and `activation_scaling_factor` float32 (1,) per rank.
  - tensorrt_llm/models/modeling_utils.py `preprocess_perlayer_weights` (FP8): int8-viewed weights
    are re-viewed as float8_e4m3fn; lm_head may stay unquantized (its scales are dropped).
  - Scales as the ModelOpt export writes them (modelopt/torch/export `get_scaling_factor`,
    `to_quantized_weight` QUANTIZATION_FP8): scale = amax / 448, weight = (w / scale) cast to e4m3.
    The fused qkv gets ONE scale for the fused weight, the max of the q, k, v scales
    (FP8Linear.postprocess is_qkv: `new_amax = max(weight_scaling_factors)`, weights requantized);
    here the float fused weight is quantized once with that scale (no double rounding).
  - FP8 KV cache (`kv_cache_quant_algo` FP8): `attention.kv_cache_scaling_factor` float32 (1,) =
    max(max|K|, max|V|) / 448 over the cached (post-rotary) K and V, at least 1.0: ModelOpt's
    `get_kv_cache_scaling_factor` (k_bmm / v_bmm quantizers, "For FP8, we recommend default kv
    cache scaling factor to be 1": torch.max(factor, 1.0)); modeling_utils `process_kv_scaling_factor`
    takes the max of the k and v factors and derives kv_cache_rcp_scaling_factor.
  - TP: per-tensor scales are replicated on every rank (the TP=1 values); weights split like the
    float weights, so every rank file is the TP=1 file split.
Activation amax: the per-tensor max|input| over the calibration tokens (ModelOpt's input_quantizer
max calibration), from the shared calibration layer's per-channel maxima.
"""
from __future__ import annotations

import torch

from glmtrt.quant.groups import SmoothGroup

E4M3_MAX = 448.0
_TINY = 1e-12
#: the tensors a linear gains (suffix after the linear's prefix), float32 (1,) each
FP8_SCALES = ("weights_scaling_factor", "activation_scaling_factor")


def to_e4m3(x: torch.Tensor) -> torch.Tensor:
    """Saturating cast to float8_e4m3fn (round to nearest even): TensorRT's FP8 quantize clamps to
    +-448; torch's cast alone would turn out-of-range values into NaN."""
    return x.float().clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)


def scale_of(amax) -> torch.Tensor:
    """A per-tensor FP8 scale (1,) float32 = amax / 448 (guarded for an all-zero tensor)."""
    a = torch.as_tensor(amax, dtype=torch.float32).max().clamp(min=_TINY)
    return (a / E4M3_MAX).reshape(1).float()


def quantize_weight(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(fp8 weight, weights_scaling_factor (1,)) of a float weight, one scale per tensor."""
    s = scale_of(w.float().abs().amax())
    return to_e4m3(w.float() / s), s


def kv_cache_scale(kv_amax) -> torch.Tensor:
    """attention.kv_cache_scaling_factor (1,) float32 for an FP8 KV cache: max(amax / 448, 1.0)."""
    return torch.maximum(scale_of(kv_amax), torch.ones(1))


def fp8_layer_plan(groups: tuple[SmoothGroup, ...], float_rows: list, dtype: torch.dtype,
                   kv: bool) -> list[tuple[str, torch.dtype, tuple, str]]:
    """Ordered (name inside the layer, dtype, full shape, shard kind) of one FP8 layer."""
    linears = {g.linear for g in groups}
    plan = []
    for r in float_rows:
        rel = r.target.split(".", 3)[3]
        fp8 = rel.endswith(".weight") and rel.rsplit(".", 1)[0] in linears
        plan.append((rel, torch.float8_e4m3fn if fp8 else dtype, tuple(r.shape), r.shard))
    for g in groups:
        plan += [(f"{g.linear}.{k}", torch.float32, (1,), "replicate") for k in FP8_SCALES]
    if kv:
        plan.append(("attention.kv_cache_scaling_factor", torch.float32, (1,), "replicate"))
    return plan


def fp8_quantize_layer(weights: dict, stats: dict, groups: tuple[SmoothGroup, ...]) -> dict:
    """One layer's float tensors (full layout) -> the FP8 checkpoint tensors (the KV-cache scale is
    added by the caller: `kv_cache_scale(stats[("attention.kv", "amax")])`)."""
    res = dict(weights)
    for g in groups:
        q, s = quantize_weight(weights[f"{g.linear}.weight"])
        res[f"{g.linear}.weight"] = q
        res[f"{g.linear}.weights_scaling_factor"] = s
        res[f"{g.linear}.activation_scaling_factor"] = scale_of(stats[(g.linear, "x")])
    return res
