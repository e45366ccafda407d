"""INT4-AWQ: quantizer / packing vs numpy reimplementations of the ModelOpt export
(`to_quantized_weight`, INT4_AWQ) and TensorRT-LLM 1.2.x modeling_utils.py
`preprocess_perlayer_weights` (W4A16_AWQ: packed weight (out/2, in), weights_scaling_factor
(out, in/group), prequant_scaling_factor (in,)); layout; TP=2 shards == TP=1 split; RTN is the a=0 point."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from glmtrt.quant import awq as A
from tests.quant.conftest import sq_convert


def test_quantize_groups_and_pack_match_numpy():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(6, 32, generator=g)
    q, scale = A.quantize_groups(w, 8)
    wn = w.numpy().reshape(6, 4, 8)
    s_np = np.abs(wn).max(-1) / 7
    q_np = np.clip(np.round(wn / s_np[..., None]), -8, 7).astype(np.int8).reshape(6, 32)
    np.testing.assert_allclose(scale.numpy(), s_np, rtol=1e-6)
    np.testing.assert_array_equal(q.numpy(), q_np)
    packed = A.pack_int4(q).numpy()
    t = q_np.T.reshape(32, 3, 2)                                    # ModelOpt: pairs of output rows
    want = ((t[:, :, 0] & 0x0F) | (t[:, :, 1].astype(np.int16) << 4)).astype(np.uint8).view(np.int8).T
    np.testing.assert_array_equal(packed, want)
    assert packed.shape == (3, 32)
    assert torch.equal(A.unpack_int4(A.pack_int4(q)), q)


def test_awq_search_never_loses_to_rtn_on_its_data():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(16, 32, generator=g)
    x = torch.randn(64, 32, generator=g) * torch.linspace(0.1, 8, 32)       # outlier channels
    s, a, loss, rtn = A.awq_scales(w, x, x.abs().mean(0), 8)
    assert loss <= rtn and a > 0 and loss < rtn


def test_awq_layout_and_tp2_split(tiny_src, calib_file, tmp_path):
    from glmtrt.convert.mapping import ShardContext
    from glmtrt.quant.convert_calibrated import shard_any

    def read(p):
        with safe_open(str(p), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}

    one = read(sq_convert(tiny_src, tmp_path / "a1", calib_file, precision="int4-awq", group_size=16)
               / "rank0.safetensors")
    f16, i8 = torch.float16, torch.int8
    want = {"attention.qkv.weight": (i8, (64, 64)), "attention.qkv.weights_scaling_factor": (f16, (128, 4)),
            "attention.qkv.prequant_scaling_factor": (f16, (64,)), "attention.dense.weight": (i8, (32, 64)),
            "attention.dense.weights_scaling_factor": (f16, (64, 4)), "mlp.fc.weight": (i8, (96, 64)),
            "mlp.proj.weight": (i8, (32, 96)), "mlp.proj.weights_scaling_factor": (f16, (64, 6)),
            "mlp.proj.prequant_scaling_factor": (f16, (96,)), "input_layernorm.weight": (f16, (64,))}
    for k, v in want.items():
        t = one[f"transformer.layers.1.{k}"]
        assert (t.dtype, tuple(t.shape)) == v, k
    assert one["lm_head.weight"].dtype == f16
    out2 = sq_convert(tiny_src, tmp_path / "a2", calib_file, precision="int4-awq", group_size=16, tp_size=2)
    q = json.loads((out2 / "config.json").read_text())["quantization"]
    assert (q["quant_algo"], q["group_size"], q["pre_quant_scale"], q["exclude_modules"]) == \
        ("W4A16_AWQ", 16, True, ["lm_head"])
    ctx = ShardContext(2, 4, 2, 16)
    kinds = {"qkv.weight": "pack4:qkv", "fc.weight": "pack4:halves", "dense.weight": "pack4:cols",
             "proj.weight": "pack4:cols", "qkv.weights_scaling_factor": "qkv", "fc.weights_scaling_factor": "halves",
             "dense.weights_scaling_factor": "cols", "proj.weights_scaling_factor": "cols",
             "dense.prequant_scaling_factor": "rows", "proj.prequant_scaling_factor": "rows", "qkv.bias": "qkv",
             "lm_head.weight": "vocab_rows"}
    for r in range(2):
        shard = read(out2 / f"rank{r}.safetensors")
        for name, full in one.items():
            kind = next((v for k, v in kinds.items() if name.endswith(k)), "replicate")
            if kind.startswith("pack4:"):
                full = A.unpack_int4(full)
            assert torch.equal(shard[name], shard_any(full, kind, r, ctx)), name


def test_group_size_must_divide_rank_inputs(tiny_src, calib_file, tmp_path):
    from glmtrt.errors import GlmtrtError

    with pytest.raises(GlmtrtError, match="not a multiple of --group-size 32"):
        sq_convert(tiny_src, tmp_path / "x", calib_file, precision="int4-awq", group_size=32, tp_size=2)
    assert not (tmp_path / "x").exists()
