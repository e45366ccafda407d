"""Each SmoothQuant quantizer against a plain numpy reimplementation of TensorRT-LLM 1.2.x
tensorrt_llm/models/chatglm/convert.py (`smooth_gemm`, `generate_int8`, `get_tllm_linear_sq_weight`)
and of the smooth_quant_gemm / quantize_per_token plugin arithmetic."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from glmtrt.quant import smoothquant as SQ
from glmtrt.quant.groups import SmoothGroup
from glmtrt.reference.qlinear import KVQuant, SQLinear


def _np_smooth(x_amax, w, alpha):
    w_amax = np.abs(w).max(axis=0).astype(np.float64)
    return np.clip(x_amax.astype(np.float64) ** alpha / w_amax ** (1 - alpha), 1e-5, None)


def _np_int8(w_t, x_amax, y_amax, segments, per_channel, per_token):
    """w_t is [in, out] like upstream's `weights` argument of generate_int8."""
    w_amax = np.abs(w_t).max(axis=0).astype(np.float32)            # act_range["w"] per out channel
    if per_channel:
        amax = w_amax
    elif segments:
        parts = np.split(w_amax, np.cumsum(segments)[:-1])
        amax = np.concatenate([np.full(p.shape, p.max(), np.float32) for p in parts])
    else:
        amax = np.full(w_amax.shape, w_amax.max(), np.float32)
    orig_quant = np.float32(127.0) / amax
    q = np.clip(np.round(w_t * orig_quant), -127, 127).astype(np.int8).T
    vector = per_channel or bool(segments)
    if per_token:
        scale = (1.0 / orig_quant).astype(np.float32)
        return q, (scale if vector else scale[:1]).reshape(1, -1), None, None
    sx = np.float32(127.0) / np.float32(x_amax.max())
    sy = np.float32(127.0) / np.float32(y_amax.max())
    accum = (sy / (sx * orig_quant)).astype(np.float32)
    return q, (accum if vector else accum[:1]).reshape(1, -1), sx, np.float32(y_amax.max()) / 127


@pytest.mark.parametrize("alpha", [0.0, 0.5, 0.8, 1.0])
def test_smoothing_scales_match_numpy(alpha):
    g = torch.Generator().manual_seed(1)
    x_amax = torch.rand(32, generator=g) * 10 + 0.01
    w = torch.randn(48, 32, generator=g)
    got = SQ.smoothing_scales(x_amax, [w], alpha).numpy()
    np.testing.assert_allclose(got, _np_smooth(x_amax.numpy(), w.numpy(), alpha).astype(np.float32), rtol=1e-6)


@pytest.mark.parametrize("variant", list(SQ.SQ_ALGOS))
@pytest.mark.parametrize("segments", [None, (32, 8, 8)])
def test_quantize_linear_matches_numpy(variant, segments):
    per_channel, per_token = SQ.sq_flags(SQ.SQ_ALGOS[variant])
    g = torch.Generator().manual_seed(2)
    w = torch.randn(48, 24, generator=g)
    w[5] *= 20                                                       # an outlier row
    x_amax, y_amax = torch.rand(24, generator=g) * 5, torch.rand(48, generator=g) * 9
    group = SmoothGroup("attention.qkv", 24, "qkv", norm="input_layernorm", segments=segments)
    got = SQ.quantize_linear(w, x_amax, y_amax, group, per_channel, per_token)
    q, pcs, sx, act = _np_int8(w.numpy().T, x_amax.numpy(), y_amax.numpy(), segments, per_channel, per_token)
    assert got["weight"].dtype == torch.int8
    np.testing.assert_array_equal(got["weight"].numpy(), q)
    np.testing.assert_allclose(got["per_channel_scale"].numpy(), pcs, rtol=1e-6)
    if per_token:
        assert got["scale_to_int"].dtype == torch.float16 and got["scale_to_int"].tolist() == [1.0]
    else:
        np.testing.assert_allclose(got["scale_to_int"].numpy(), [sx], rtol=1e-6)
        np.testing.assert_allclose(got["act_scale"].numpy(), [[act]], rtol=1e-6)


def _np_sq_gemm(x, q_w, pcs, smoother=None, static=None, act=None):
    x = x.astype(np.float32)
    if smoother is not None:
        x = x / smoother.reshape(-1)
    if static is None:
        amax = np.abs(x).max(axis=-1, keepdims=True)
        qx = np.clip(np.round(x * (127.0 / amax)), -128, 127)
        token = amax / 127.0
    else:
        qx = np.clip(np.round(x * static), -128, 127)
        token = act.reshape(1)
    acc = qx.astype(np.int64) @ q_w.astype(np.int64).T               # int32 accumulation, exact
    return acc.astype(np.float32) * token * pcs.reshape(-1)


@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("tp", [1, 2])
def test_sq_linear_emulation_matches_numpy(static, tp):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 5, 16, generator=g)
    q_w = torch.randint(-127, 128, (12, 16), generator=g, dtype=torch.int8)
    pcs = torch.rand(1, 12, generator=g) * 0.01
    smoother = torch.rand(1, 16, generator=g) + 0.5
    st, act = (torch.tensor([20.0]), torch.tensor([[0.05]])) if static else (None, None)
    lin = SQLinear(q_w, pcs, smoother, st, act, tp_splits=tp, out_dtype=torch.float32)
    got = lin.linear(x, None).numpy()
    xs = np.split(x.numpy(), tp, axis=-1)
    ws, ss = np.split(q_w.numpy(), tp, axis=1), np.split(smoother.numpy(), tp, axis=1)
    want = sum(_np_sq_gemm(xr, wr, pcs.numpy(), sr, None if st is None else st.numpy(),
                           None if act is None else act.numpy()) for xr, wr, sr in zip(xs, ws, ss))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_kv_int8_quantize_dequantize_matches_numpy():
    g = torch.Generator().manual_seed(4)
    k = torch.randn(1, 2, 7, 16, generator=g) * 3
    scale = 0.05
    got, _ = KVQuant(scale, "INT8").cache(k, k)
    want = np.clip(np.round(k.numpy() * np.float32(1 / scale)), -128, 127) * scale
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-7)


def test_kv_cache_scale_is_max_over_all_qkv_channels():
    y = torch.tensor([1.0, 254.0, 3.0])        # the q channel holds the max: upstream takes it too
    assert SQ.kv_cache_scale(y).tolist() == [2.0]


def test_no_smoothing_is_not_alpha_zero():
    """smooth=False writes plain W8A8 (s = 1); alpha 0 still rescales by 1/max|W| (SmoothQuant eq. 4)."""
    from glmtrt.quant.convert_calibrated import quantize_layer

    g = torch.Generator().manual_seed(6)
    w, norm = torch.randn(8, 4, generator=g), torch.rand(4, generator=g) + 0.5
    stats = {("mlp.fc", "x"): torch.rand(4, generator=g) + 1, ("mlp.fc", "y"): torch.rand(8, generator=g) + 1}
    group = (SmoothGroup("mlp.fc", 4, "halves", norm="post_layernorm"),)
    layer = {"mlp.fc.weight": w, "post_layernorm.weight": norm}
    plain = quantize_layer(layer, stats, group, 0.0, True, True, False, smooth=False)
    a0 = quantize_layer(layer, stats, group, 0.0, True, True, False)
    assert torch.equal(plain["post_layernorm.weight"], norm)
    torch.testing.assert_close(a0["post_layernorm.weight"], norm * w.abs().amax(dim=0))
