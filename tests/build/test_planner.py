"""Planner arithmetic against hand-computed cases."""
from __future__ import annotations

import pytest

from glmtrt.build.planner import (GiB, ModelDims, Workload, kv_bytes_per_token, plan_memory, require_fit,
                                  weight_bytes)
from glmtrt.build.profile import load_profile
from glmtrt.errors import GlmtrtError

# ChatGLM3-6B: shared/models/README.md (28 layers, hidden 4096, 32 heads, 2 KV groups, head 128,
# ffn 13696, padded vocab 65024).
CHATGLM3 = ModelDims("chatglm3-6b", 28, 4096, 32, 2, 128, 13696, 65024, 8192)
# AutoGLM-Phone-9B = GLM-4.1V-9B text decoder (40 layers, 4096, 32 heads, 2 KV heads, 13696, vocab 151552)
# plus its vision tower (depth 24, hidden 1536, ~0.6B params incl. merger) that must sit on each GPU.
AUTOGLM = ModelDims("autoglm-phone-9b", 40, 4096, 32, 2, 128, 13696, 151552, 65536,
                    extra_params=600_000_000, extra_name="vision tower")


def test_chatglm3_param_count_and_kv_bytes():
    # per layer: qkv 4096*4608 + dense 4096*4096 + fc 4096*27392 + proj 13696*4096 = 203,948,032
    assert CHATGLM3.linear_params() == 28 * 203_948_032
    assert abs(CHATGLM3.num_params() / 1e9 - 6.2436) < 1e-3          # ChatGLM3-6B has 6.24B weights
    # 2 (K,V) x 28 layers x 2 KV heads x 128 x 2 bytes = 28 KiB
    assert kv_bytes_per_token(CHATGLM3, 2) == 2 * 28 * 2 * 128 * 2 == 28 * 1024
    assert kv_bytes_per_token(CHATGLM3, 1) == 14 * 1024              # int8 / fp8 KV cache
    assert kv_bytes_per_token(CHATGLM3, 2, tp_size=2) == 14 * 1024   # one KV head per rank
    assert kv_bytes_per_token(CHATGLM3, 2, tp_size=4) == 14 * 1024   # 2 KV heads replicated over 4 ranks


def test_weight_bytes_by_precision():
    emb = 65024 * 4096 * 2                         # embedding and lm_head stay fp16
    small = (28 * (2 * 4096 + 4608) + 4096) * 2    # norms + qkv bias
    lin = 28 * 203_948_032
    assert weight_bytes(CHATGLM3, "fp16") == lin * 2 + 2 * emb + small
    scales = CHATGLM3.linear_out_channels() * 2
    assert weight_bytes(CHATGLM3, "int8-wo") == lin + scales + 2 * emb + small
    assert weight_bytes(CHATGLM3, "int4-wo") == lin // 2 + scales + 2 * emb + small
    # TP=2: linear and lm_head halve, the embedding is replicated
    assert weight_bytes(CHATGLM3, "fp16", 2) == lin + emb + emb // 2 + small


def test_chatglm3_fp16_on_t4_8k_batch8_does_not_fit():
    t4 = load_profile("t4")
    p = plan_memory(CHATGLM3, t4, "fp16", 1, Workload(max_batch_size=8, max_seq_len=8192))
    # usable 15360-1024 MiB = 14 GiB; weights 11.63 GiB; activations 8192 tok x 57984 x 2 B = 0.885 GiB
    assert round(p.usable_bytes / GiB, 2) == 14.00
    assert round(p.weight_bytes / GiB, 2) == 11.63
    assert p.activation_bytes == 8192 * 57984 * 2 + 8 * 65024 * 4
    free = p.usable_bytes - p.weight_bytes - p.activation_bytes
    assert p.kv_budget_bytes == int(free * 0.9)
    assert p.kv_tokens == (p.kv_budget_bytes // 28672) // 64 * 64 == 49984
    assert p.needed_kv_tokens == 8 * 8192
    assert not p.fits and "65536 tokens" in p.reason
    assert p.max_batch_at_seq_len == 6 and p.max_seq_len_at_batch == 6208
    text = " | ".join(p.suggestions)
    assert "--precision int8-wo" in text and "--tp 2" in text and "--max-seq-len 6208" in text
    with pytest.raises(GlmtrtError, match="does not fit t4"):
        require_fit(p)


def test_chatglm3_int8wo_on_t4_fits():
    p = plan_memory(CHATGLM3, load_profile("t4"), "int8-wo", 1, Workload(max_batch_size=8, max_seq_len=8192))
    assert p.fits and p.kv_tokens >= 65536 and p.suggestions == ()
    assert round(p.weight_bytes / GiB, 2) == 6.31
    assert require_fit(p) is p


def test_autoglm_fp16_needs_tp2_on_4090():
    # a phone agent keeps screenshots + history: 16k context, 8 concurrent sessions
    r = load_profile("rtx4090")
    wl = Workload(max_batch_size=8, max_seq_len=16384)
    p1 = plan_memory(AUTOGLM, r, "fp16", 1, wl)
    assert not p1.fits
    assert p1.extra_weight_bytes == 600_000_000 * 2
    assert kv_bytes_per_token(AUTOGLM, 2) == 40 * 1024
    assert any("--tp 2" in s for s in p1.suggestions)
    p2 = plan_memory(AUTOGLM, r, "fp16", 2, wl)
    assert p2.fits and p2.kv_bytes_per_token == 20 * 1024
    assert p2.weight_bytes < p1.weight_bytes / 2 + 151552 * 4096 * 2   # embedding replicated


def test_weights_alone_too_big_is_explained():
    big = ModelDims("big", 80, 8192, 64, 8, 128, 28672, 128256, 8192)
    p = plan_memory(big, load_profile("t4"), "fp16", 1, Workload(1, 2048))
    assert not p.fits and "exceed" in p.reason and p.kv_tokens == 0


def test_unsupported_precision_and_kv_dtype_refused():
    t4 = load_profile("t4")
    for prec in ("bf16", "int8-sq", "fp8"):
        with pytest.raises(GlmtrtError, match="not supported on t4"):
            plan_memory(CHATGLM3, t4, prec)
    with pytest.raises(GlmtrtError, match="KV-cache dtype fp8"):
        plan_memory(CHATGLM3, t4, "fp16", kv_cache_dtype="fp8")


def test_bad_workload_and_tp():
    r = load_profile("rtx4090")
    with pytest.raises(GlmtrtError, match="max_input_len"):
        plan_memory(CHATGLM3, r, "fp16", 1, Workload(max_seq_len=100, max_input_len=200))
    with pytest.raises(GlmtrtError, match="tp_size=3"):
        plan_memory(CHATGLM3, r, "fp16", 3)
    with pytest.raises(GlmtrtError, match="fraction"):
        plan_memory(CHATGLM3, r, "fp16", 1, Workload(kv_cache_free_gpu_mem_fraction=1.5))
