"""int8-sq checkpoint layout against a pinned table; TP=2 shards == the TP=1 tensors split;
calibration is deterministic.

Pinned from TensorRT-LLM 1.2.x tensorrt_llm/models/chatglm/convert.py `get_tllm_linear_sq_weight`
(+ `load_weights_from_hf_model`: scale_to_int on input_layernorm / post_layernorm, smoothers of
dense (1, hidden) and proj (1, intermediate), kv_cache_scaling_factor [1]) and the parameter shapes
of tensorrt_llm/quantization/layers.py (SmoothQuantLinear / SmoothQuantRowLinear per_channel_scale
(1, out) or (1, 1), act_scale (1, 1), smoother (1, in/tp); SmoothQuantRmsNorm scale_to_int (1,)).
Tiny model: hidden 64, 4 heads / 2 kv heads of 16 -> qkv 128 rows, ffn 96 -> fc 192 rows.
"""
from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from tests.quant.conftest import sq_convert

F16, F32, I8 = torch.float16, torch.float32, torch.int8
COMMON = {
    "input_layernorm.weight": (F16, (64,)), "post_layernorm.weight": (F16, (64,)),
    "attention.qkv.weight": (I8, (128, 64)), "attention.qkv.bias": (F16, (128,)),
    "attention.dense.weight": (I8, (64, 64)), "mlp.fc.weight": (I8, (192, 64)), "mlp.proj.weight": (I8, (64, 96)),
    "attention.dense.smoother": (F32, (1, 64)), "mlp.proj.smoother": (F32, (1, 96)),
    "attention.kv_cache_scaling_factor": (F32, (1,)),
}
LAYOUT = {
    "per-channel-per-token": {
        "attention.qkv.per_channel_scale": (F32, (1, 128)), "attention.dense.per_channel_scale": (F32, (1, 64)),
        "mlp.fc.per_channel_scale": (F32, (1, 192)), "mlp.proj.per_channel_scale": (F32, (1, 64)),
        "input_layernorm.scale_to_int": (F16, (1,)), "post_layernorm.scale_to_int": (F16, (1,)),
    },
    "per-tensor-per-token": {
        "attention.qkv.per_channel_scale": (F32, (1, 128)), "attention.dense.per_channel_scale": (F32, (1, 1)),
        "mlp.fc.per_channel_scale": (F32, (1, 1)), "mlp.proj.per_channel_scale": (F32, (1, 1)),
        "input_layernorm.scale_to_int": (F16, (1,)), "post_layernorm.scale_to_int": (F16, (1,)),
    },
    "per-tensor": {
        "attention.qkv.per_channel_scale": (F32, (1, 128)), "attention.dense.per_channel_scale": (F32, (1, 1)),
        "mlp.fc.per_channel_scale": (F32, (1, 1)), "mlp.proj.per_channel_scale": (F32, (1, 1)),
        "input_layernorm.scale_to_int": (F32, (1,)), "post_layernorm.scale_to_int": (F32, (1,)),
        "attention.quantization_scaling_factor": (F32, (1,)), "mlp.quantization_scaling_factor": (F32, (1,)),
        **{f"{n}.act_scale": (F32, (1, 1)) for n in ("attention.qkv", "attention.dense", "mlp.fc", "mlp.proj")},
    },
}
GLOBAL = {"transformer.vocab_embedding.weight": (F16, (128, 64)), "transformer.ln_f.weight": (F16, (64,)),
          "lm_head.weight": (F16, (128, 64))}


def _read(path):
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


@pytest.mark.parametrize("variant", list(LAYOUT))
def test_layout_matches_pinned_table(tiny_src, calib_file, tmp_path, variant):
    out = sq_convert(tiny_src, tmp_path / "o", calib_file, sq_variant=variant, int8_kv_cache=True)
    t = _read(out / "rank0.safetensors")
    want = dict(GLOBAL)
    for i in range(2):
        want.update({f"transformer.layers.{i}.{k}": v for k, v in {**COMMON, **LAYOUT[variant]}.items()})
    got = {k: (v.dtype, tuple(v.shape)) for k, v in t.items()}
    assert got == want
    q = json.loads((out / "config.json").read_text())["quantization"]
    algo = {"per-channel-per-token": "W8A8_SQ_PER_CHANNEL_PER_TOKEN_PLUGIN",
            "per-tensor-per-token": "W8A8_SQ_PER_TENSOR_PER_TOKEN_PLUGIN", "per-tensor": "W8A8_SQ_PER_TENSOR_PLUGIN"}
    # only non-default QuantConfig keys are written (smoothquant_val 0.5 is the default: omitted)
    assert q == {"quant_algo": algo[variant], "kv_cache_quant_algo": "INT8"}


def test_tp2_shards_are_tp1_split(tiny_src, calib_file, tmp_path):
    from glmtrt.convert.mapping import ShardContext
    from glmtrt.quant.convert_calibrated import shard_any

    one = _read(sq_convert(tiny_src, tmp_path / "tp1", calib_file, int8_kv_cache=True) / "rank0.safetensors")
    out2 = sq_convert(tiny_src, tmp_path / "tp2", calib_file, tp_size=2, int8_kv_cache=True)
    ctx = ShardContext(2, 4, 2, 16)
    kinds = {"qkv.weight": "qkv", "qkv.bias": "qkv", "qkv.per_channel_scale": "t:qkv", "fc.weight": "halves",
             "fc.per_channel_scale": "t:halves", "dense.weight": "cols", "proj.weight": "cols",
             "dense.smoother": "cols", "proj.smoother": "cols", "lm_head.weight": "vocab_rows"}
    for r in range(2):
        shard = _read(out2 / f"rank{r}.safetensors")
        assert set(shard) == set(one)
        for name, full in one.items():
            kind = next((v for k, v in kinds.items() if name.endswith(k)), "replicate")
            assert torch.equal(shard[name], shard_any(full, kind, r, ctx)), name


def test_calibration_is_deterministic(tiny_src, calib_file, tmp_path):
    a = sq_convert(tiny_src, tmp_path / "a", calib_file, int8_kv_cache=True)
    b = sq_convert(tiny_src, tmp_path / "b", calib_file, int8_kv_cache=True)
    ma, mb = (json.loads((p / "manifest.json").read_text()) for p in (a, b))
    assert ma["files"] == mb["files"]


def test_builtin_prompts_with_a_tokenizer_and_seed(tmp_path):
    from glmtrt.quant.calib_data import builtin_prompts, calibration_ids

    docs = builtin_prompts()
    assert any("\u4e00" <= ch <= "\u9fff" for ch in "".join(docs)) and any("the" in d for d in docs)
    enc = lambda s: [b % 100 for b in s.encode("utf-8")]       # a byte "tokenizer"
    a = calibration_ids(docs, enc, num_samples=4, seq_len=64, seed=7, vocab_size=100, reuse=True)
    b = calibration_ids(docs, enc, num_samples=4, seq_len=64, seed=7, vocab_size=100, reuse=True)
    c = calibration_ids(docs, enc, num_samples=4, seq_len=64, seed=8, vocab_size=100, reuse=True)
    assert a.shape == (4, 64) and torch.equal(a, b) and not torch.equal(a, c)
