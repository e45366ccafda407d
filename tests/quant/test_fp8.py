"""fp8 (`quant_algo` FP8, optional FP8 KV cache): quantizer and GEMM emulation against plain numpy
(ml_dtypes e4m3), the checkpoint layout against a pinned table, TP=2 shards == TP=1 split, bad input.

Pinned from TensorRT-LLM 1.2.x tensorrt_llm/quantization/layers.py FP8Linear / FP8RowLinear (weight
fp8 (out/tp, in) / (out, in/tp), weights_scaling_factor and activation_scaling_factor float32 (1,)),
quantization/quantize.py `fp8_quantize` + `quantize_layers` (Column/RowLinear only; '*lm_head',
'*vocab_embedding' excluded; norms untouched), models/modeling_utils.py `preprocess_perlayer_weights`
(FP8 branch) and `process_kv_scaling_factor` (kv_cache_scaling_factor (1,); rcp derived), and the
ModelOpt export (`to_quantized_weight` QUANTIZATION_FP8: (w / scale).to(e4m3), scale = amax / 448;
`get_kv_cache_scaling_factor`: FP8 KV scale at least 1.0). Tiny model: hidden 64, 4 heads / 2 kv
heads of 16 -> qkv 128 rows, ffn 96 -> fc 192 rows.
"""
from __future__ import annotations

import json

import ml_dtypes
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open

from glmtrt.quant import fp8 as FP8
from glmtrt.reference.qlinear import FP8Linear, KVQuant
from tests.quant.conftest import sq_convert

BF16, F16, F32, E4 = torch.bfloat16, torch.float16, torch.float32, torch.float8_e4m3fn
S1 = (F32, (1,))
LAYER = {
    "input_layernorm.weight": (BF16, (64,)), "post_layernorm.weight": (BF16, (64,)),
    "attention.qkv.weight": (E4, (128, 64)), "attention.qkv.bias": (BF16, (128,)),
    "attention.dense.weight": (E4, (64, 64)), "mlp.fc.weight": (E4, (192, 64)), "mlp.proj.weight": (E4, (64, 96)),
    **{f"{lin}.{k}": S1 for lin in ("attention.qkv", "attention.dense", "mlp.fc", "mlp.proj")
       for k in ("weights_scaling_factor", "activation_scaling_factor")},
}
GLOBAL = {"transformer.vocab_embedding.weight": (BF16, (128, 64)), "transformer.ln_f.weight": (BF16, (64,)),
          "lm_head.weight": (BF16, (128, 64))}


def _read(path):
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def _np_e4m3(x):
    return np.clip(np.asarray(x, np.float32), -448, 448).astype(ml_dtypes.float8_e4m3fn)


def _fp8(src, out, calib_file, **kw):
    return sq_convert(src, out, calib_file, precision="fp8", dtype=kw.pop("dtype", "bfloat16"), **kw)


def test_weight_quantizer_matches_numpy():
    g = torch.Generator().manual_seed(3)
    w = torch.randn(48, 32, generator=g)
    w[7, 3] = 25.0                                                   # an outlier sets the scale
    q, s = FP8.quantize_weight(w)
    scale = np.float32(np.abs(w.numpy()).max()) / np.float32(448.0)
    want = _np_e4m3(w.numpy() / scale)
    assert q.dtype == E4 and s.dtype == F32 and s.shape == (1,)
    assert s.item() == pytest.approx(float(scale), rel=1e-7)
    np.testing.assert_array_equal(q.view(torch.uint8).numpy(), want.view(np.uint8))
    assert float(q.float().abs().max()) == 448.0                     # the max maps to e4m3's largest value
    assert torch.isfinite(FP8.to_e4m3(torch.tensor([1e6, -1e6])).float()).all()     # saturates, no NaN


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("tp", [1, 2])
def test_fp8_gemm_emulation_matches_numpy(dtype, tp):
    g = torch.Generator().manual_seed(4)
    w = torch.randn(24, 32, generator=g)
    x = (torch.randn(5, 32, generator=g) * 3).to(dtype)
    q, ws = FP8.quantize_weight(w)
    a_s = FP8.scale_of(torch.tensor(7.5))                            # some inputs clip: |x| up to ~10
    got = FP8Linear(q, ws, a_s, tp_splits=tp).linear(x, None)
    # numpy: scales cast to the activation dtype, e4m3 input, fp32 GEMM per rank, output in dtype
    a_dt = a_s.to(dtype).float().numpy()
    alpha = (a_dt * ws.to(dtype).float().numpy()).astype(np.float32)
    xq = _np_e4m3(x.float().numpy() / a_dt).astype(np.float32)
    wq = q.float().numpy()
    y = None
    for xr, wr in zip(np.split(xq, tp, axis=1), np.split(wq, tp, axis=1)):
        part = torch.from_numpy((xr @ wr.T).astype(np.float32) * alpha).to(dtype)
        y = part if y is None else y + part
    assert got.dtype == dtype
    torch.testing.assert_close(got, y, rtol=1e-5 if dtype == torch.float32 else 0, atol=1e-5)
    # and it is close to the float GEMM (3 mantissa bits: a few % relative)
    ref = x.float() @ w.t()
    assert ((got.float() - ref).norm() / ref.norm()).item() < 0.1


def test_fused_qkv_gets_one_scale_the_max_of_q_k_v():
    g = torch.Generator().manual_seed(5)
    q, k, v = torch.randn(64, 16, generator=g), torch.randn(16, 16, generator=g) * 4, torch.randn(16, 16, generator=g)
    _, s = FP8.quantize_weight(torch.cat([q, k, v]))
    assert s.item() == max(FP8.quantize_weight(t)[1].item() for t in (q, k, v))


def test_kv_cache_scale_and_emulation():
    assert FP8.kv_cache_scale(torch.tensor(44.8)).item() == 1.0       # amax/448 < 1 -> ModelOpt's floor 1.0
    assert FP8.kv_cache_scale(torch.tensor(896.0)).item() == 2.0
    kv = KVQuant(2.0, "FP8")
    k = torch.tensor([[[[1.0, 900.0, -3.3, 0.01]]]])
    kq, _ = kv.cache(k, k)
    want = _np_e4m3(k.numpy() / 2.0).astype(np.float32) * 2.0
    np.testing.assert_array_equal(kq.numpy(), want)


@pytest.mark.parametrize("kv", [False, True])
def test_layout_matches_pinned_table(tiny_src, calib_file, tmp_path, kv):
    out = _fp8(tiny_src, tmp_path / "o", calib_file, fp8_kv_cache=kv)
    got = {k: (v.dtype, tuple(v.shape)) for k, v in _read(out / "rank0.safetensors").items()}
    layer = {**LAYER, **({"attention.kv_cache_scaling_factor": S1} if kv else {})}
    want = dict(GLOBAL)
    for i in range(2):
        want.update({f"transformer.layers.{i}.{k}": v for k, v in layer.items()})
    assert got == want
    q = json.loads((out / "config.json").read_text())["quantization"]
    assert q == {"quant_algo": "FP8", "exclude_modules": ["lm_head"], **({"kv_cache_quant_algo": "FP8"} if kv else {})}


def test_tp2_shards_are_tp1_split(tiny_src, calib_file, tmp_path):
    from glmtrt.convert.mapping import ShardContext
    from glmtrt.quant.convert_calibrated import shard_any

    one = _read(_fp8(tiny_src, tmp_path / "tp1", calib_file, fp8_kv_cache=True) / "rank0.safetensors")
    out2 = _fp8(tiny_src, tmp_path / "tp2", calib_file, tp_size=2, fp8_kv_cache=True)
    ctx = ShardContext(2, 4, 2, 16)
    kinds = {"qkv.weight": "qkv", "qkv.bias": "qkv", "fc.weight": "halves", "dense.weight": "cols",
             "proj.weight": "cols", "lm_head.weight": "vocab_rows"}
    for r in range(2):
        shard = _read(out2 / f"rank{r}.safetensors")
        assert set(shard) == set(one)
        for name, full in one.items():
            kind = next((v for k, v in kinds.items() if name.endswith(k)), "replicate")
            want = shard_any(full, kind, r, ctx)
            assert shard[name].dtype == want.dtype and torch.equal(shard[name].view(torch.uint8) if want.dtype == E4
                                                                   else shard[name],
                                                                   want.view(torch.uint8) if want.dtype == E4 else want), name


def test_scales_come_from_the_calibration(tiny_src, calib_file, tmp_path):
    """activation_scaling_factor = max|input| / 448 of each linear of the float model on the
    calibration tokens (here: the whole float32 reference model with recorders on layer 1)."""
    import dataclasses

    from glmtrt.convert.pipeline import convert_checkpoint
    from glmtrt.quant.calib_data import resolve_calibration
    from glmtrt.reference import ReferenceModel
    from glmtrt.reference.qlinear import Recorder

    t = _read(_fp8(tiny_src, tmp_path / "o", calib_file) / "rank0.safetensors")
    ref = ReferenceModel.from_checkpoint(convert_checkpoint(tiny_src, tmp_path / "f32", dtype="float32",
                                                            progress=False), dtype="float32")
    stats: dict = {}
    names = {"qkv_w": "attention.qkv", "dense_w": "attention.dense", "fc_w": "mlp.fc", "proj_w": "mlp.proj"}
    ref.layers[1] = dataclasses.replace(ref.layers[1], **{f: Recorder(getattr(ref.layers[1], f), stats, n)
                                                           for f, n in names.items()})
    ids = resolve_calibration(tiny_src, calib_data=calib_file, calib_dataset=None, num_samples=8, seq_len=32,
                              seed=0, vocab_size=128)
    for batch in ids.split(4):
        ref.forward(batch)
    for lin in names.values():
        got = t[f"transformer.layers.1.{lin}.activation_scaling_factor"].item()
        assert got == pytest.approx(stats[(lin, "x")].max().item() / 448.0, rel=1e-4), lin


def test_cli_fp8_writes_and_verifies(tiny_src, calib_file, tmp_path):
    from glmtrt.cli import main

    res = CliRunner().invoke(main, ["convert", str(tiny_src), "-o", str(tmp_path / "out"), "--precision", "fp8",
                                    "--fp8-kv-cache", "--calib-data", str(calib_file), "--calib-samples", "8",
                                    "--calib-seq-len", "32", "--no-progress"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["verify", str(tmp_path / "out"), "--hf", str(tiny_src), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["tolerance_key"] == "fp8" and report["passed"]
    assert 0 < report["kl"] < 0.05


@pytest.mark.parametrize("args, msg", [
    (["--precision", "fp8", "--int8-kv-cache"], "--int8-kv-cache with fp8"),
    (["--precision", "int8-sq", "--fp8-kv-cache"], "--fp8-kv-cache with int8-sq"),
    (["--precision", "int8-wo", "--fp8-kv-cache"], "--fp8-kv-cache with int8-wo"),
])
def test_bad_kv_combinations_leave_no_output(tiny_src, calib_file, tmp_path, args, msg):
    from glmtrt.cli import main

    res = CliRunner().invoke(main, ["convert", str(tiny_src), "-o", str(tmp_path / "out"), *args,
                                    "--calib-data", str(calib_file), "--calib-samples", "8", "--calib-seq-len", "32"])
    assert res.exit_code == 2 and msg in res.output, res.output
    assert not [p for p in tmp_path.iterdir() if "out" in p.name]


def test_t4_refuses_an_fp8_checkpoint_and_builds_nothing(tiny_src, calib_file, tmp_path):
    from glmtrt.cli import main

    ckpt = _fp8(tiny_src, tmp_path / "ck", calib_file, dtype="float16", fp8_kv_cache=True)
    res = CliRunner().invoke(main, ["build", str(ckpt), "-o", str(tmp_path / "eng"), "--gpu", "t4"])
    assert res.exit_code == 2 and "fp8" in res.output and "t4" in res.output, res.output
    assert not [p for p in tmp_path.iterdir() if "eng" in p.name]
    res = CliRunner().invoke(main, ["build", str(ckpt), "-o", str(tmp_path / "eng"), "--gpu", "rtx4090", "--dry-run"])
    assert res.exit_code == 0 and "--use_fp8_context_fmha enable" in res.output, res.output


def test_planner_counts_the_fp8_checkpoint_bytes(tiny_src, calib_file, tmp_path):
    """plan: 1 byte per linear weight + two f32 scales per linear, model dtype for the rest — equal to
    the bytes of the tensors convert writes; the FP8 KV cache is 1 byte per element."""
    from glmtrt.build.inputs import dims_from_trtllm_config
    from glmtrt.build.planner import _kv_dtype_bytes, weight_bytes

    out = _fp8(tiny_src, tmp_path / "o", calib_file, dtype="float16")
    cfg = json.loads((out / "config.json").read_text())
    dims = dims_from_trtllm_config(cfg, "tiny")
    written = sum(t.numel() * t.element_size() for t in _read(out / "rank0.safetensors").values())
    assert weight_bytes(dims, "fp8") == written
    assert weight_bytes(dims, "fp8") < weight_bytes(dims, "fp16")
    assert _kv_dtype_bytes("fp8", "fp8") == 1 and _kv_dtype_bytes("fp8", "auto") == 2     # bf16/fp16 cache
