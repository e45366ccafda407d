"""The reference executor against transformers' GlmForCausalLM on converted tiny checkpoints.

Checkpoints come from the real `glmtrt convert` pipeline (TensorRT-LLM 1.2.x chatglm layout,
tensorrt_llm/models/chatglm/convert.py); the truth is transformers on the source dir.
"""
from __future__ import annotations

import pytest
import torch

from glmtrt.reference.model import ReferenceModel, apply_rope_gptj, rope_gptj_inv_freq
from tests.reference.conftest import hf_logits

FP32_TOL = 1e-4  # issue #2: converted FP32 logits match transformers to <= 1e-4 max-abs


@pytest.mark.parametrize("fmt", ["chatglm", "hf-glm"])
@pytest.mark.parametrize("tp", [1, 2])
@pytest.mark.parametrize("rope_ratio", [1.0, 500.0])
def test_fp32_logits_match_transformers(tiny, prompt_ids, fmt, tp, rope_ratio):
    ref = ReferenceModel.from_checkpoint(tiny.checkpoint(fmt, tp=tp, rope_ratio=rope_ratio))
    want = hf_logits(tiny.hf_model(fmt, rope_ratio=rope_ratio), prompt_ids)
    got, past = ref.forward(prompt_ids)
    assert got.dtype == torch.float32 and got.shape == want.shape == (2, 19, 128)
    assert (got - want).abs().max().item() <= FP32_TOL
    assert len(past) == 2 and past[0][0].shape == (2, 2, 19, 16)  # [B, kv heads, S, head]


def test_tp2_equals_tp1_exactly(tiny, prompt_ids):
    one = ReferenceModel.from_checkpoint(tiny.checkpoint(tp=1))
    two = ReferenceModel.from_checkpoint(tiny.checkpoint(tp=2))
    assert torch.equal(one.forward(prompt_ids)[0], two.forward(prompt_ids)[0])


@pytest.mark.parametrize("kv_heads", [1, 2])
def test_replicated_kv_heads_and_padded_vocab(tiny, prompt_ids, kv_heads):
    """tp=4 > kv heads (convert.py tile_kv_weight_bias) and vocab 130 (lm_head padded to 132)."""
    dims = dict(num_kv_heads=kv_heads, vocab_size=130, head_size=32)   # head_size != hidden / heads
    one = ReferenceModel.from_checkpoint(tiny.checkpoint(tp=1, **dims))
    four = ReferenceModel.from_checkpoint(tiny.checkpoint(tp=4, **dims))
    assert four.vocab_size == 130 and four.lm_head.shape == (130, 64)
    got = four.forward(prompt_ids)[0]
    assert torch.equal(got, one.forward(prompt_ids)[0])
    want = hf_logits(tiny.hf_model(**dims), prompt_ids)
    assert (got - want).abs().max().item() <= FP32_TOL


def test_rope_ratio_changes_logits_and_is_matched(tiny, prompt_ids):
    """rotary_base = 10000 * rope_ratio: a reference ignoring it would match the ratio-1 model."""
    ckpt = tiny.checkpoint(rope_ratio=500.0)
    ref = ReferenceModel.from_checkpoint(ckpt)
    assert ref.config["rotary_base"] == pytest.approx(5e6)
    got = ref.forward(prompt_ids)[0]
    same_weights_base_1 = ReferenceModel({**ref.config, "rotary_base": 10000.0},
                                         _weights_of(ckpt)).forward(prompt_ids)[0]
    want = hf_logits(tiny.hf_model(rope_ratio=500.0), prompt_ids)
    assert (got - want).abs().max().item() <= FP32_TOL
    assert (same_weights_base_1 - want).abs().max().item() > 100 * FP32_TOL


def _weights_of(ckpt):
    from glmtrt.reference.weights import load_merged_weights

    return load_merged_weights(ckpt)[1]


def test_kv_cache_decode_equals_full_forward(tiny, prompt_ids):
    ref = ReferenceModel.from_checkpoint(tiny.checkpoint(tp=2, rope_ratio=500.0))
    full = ref.forward(prompt_ids)[0]
    parts, past = [], None
    for lo, hi in ((0, 7), (7, 8), (8, 13), (13, 19)):
        logits, past = ref.forward(prompt_ids[:, lo:hi], past)
        parts.append(logits)
    assert past[0][0].shape[2] == 19
    assert (torch.cat(parts, dim=1) - full).abs().max().item() <= 1e-5


def test_batch_rows_are_independent(tiny, prompt_ids):
    ref = ReferenceModel.from_checkpoint(tiny.checkpoint())
    both = ref.forward(prompt_ids)[0]
    for b in range(2):
        assert (ref.forward(prompt_ids[b:b + 1])[0][0] - both[b]).abs().max().item() <= 1e-5


@pytest.mark.parametrize("dtype,rtol", [("float16", 5e-3), ("bfloat16", 4e-2)])
def test_half_checkpoint_in_engine_dtype(tiny, prompt_ids, dtype, rtol):
    """dtype='auto' computes in the checkpoint dtype; error stays inside verify's table."""
    ref = ReferenceModel.from_checkpoint(tiny.checkpoint(dtype=dtype, tp=2), dtype="auto")
    assert ref.dtype == getattr(torch, dtype) and ref.embedding.dtype == ref.dtype
    got = ref.forward(prompt_ids)[0]
    assert got.dtype == torch.float32
    want = hf_logits(tiny.hf_model(), prompt_ids)
    err = (got - want).abs().max().item()
    assert 0 < err <= rtol * want.abs().max().item()
    # default dtype=None upcasts the half weights and computes in float32
    assert ReferenceModel.from_checkpoint(tiny.checkpoint(dtype=dtype, tp=2)).dtype == torch.float32


def test_rope_gptj_matches_transformers_glm_rotary():
    """Interleaved pairs on the first rotary_dim dims, the rest untouched (HF modeling_glm)."""
    from transformers.models.glm.modeling_glm import apply_rotary_pos_emb

    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 3, 11, 32, generator=g)
    inv = rope_gptj_inv_freq(16, 5e6)
    freqs = torch.arange(11).float()[:, None] * inv[None, :]
    emb = torch.cat([freqs, freqs], dim=-1)
    want, _ = apply_rotary_pos_emb(q, q, emb.cos()[None], emb.sin()[None])
    got = apply_rope_gptj(q, freqs.cos(), freqs.sin(), 16)
    assert (got - want).abs().max().item() <= 1e-6
    assert torch.equal(got[..., 16:], q[..., 16:])
    assert not torch.allclose(got[..., :16], q[..., :16])


def test_post_layernorm_residual_flag_changes_the_graph(tiny, prompt_ids):
    """apply_residual_connection_post_layernorm (chatglm/model.py) takes the residual after the norm."""
    ckpt = tiny.checkpoint()
    ref = ReferenceModel.from_checkpoint(ckpt)
    flagged = ReferenceModel({**ref.config, "apply_residual_connection_post_layernorm": True},
                             _weights_of(ckpt))
    assert not torch.allclose(ref.forward(prompt_ids)[0], flagged.forward(prompt_ids)[0])
