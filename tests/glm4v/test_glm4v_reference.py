"""Glm4vReference vs transformers' Glm4vForConditionalGeneration; the rotary permutation proof."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from glmtrt.errors import GlmtrtError
from glmtrt.models.glm4v.positions import expand_image_tokens
from glmtrt.models.glm4v.preprocess import preprocess_image
from glmtrt.models.glm4v.rotary import permute_heads, rotary_permutation
from glmtrt.reference.glm4v import Glm4vReference, apply_rope_neox

from .conftest import BOI, EOI, IMAGE

TEXT = [1, 5, 7, 9, 11, 3, 2, 8, 40, 41, 42, 17]


def _img(w, h, seed=0):
    from PIL import Image

    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def ref(tiny_glm4v_converted):
    return Glm4vReference.from_checkpoint(tiny_glm4v_converted)


def _hf_inputs(ids, images):
    inps = [preprocess_image(i) for i in images]
    full, types = expand_image_tokens(ids, [i.grid_thw for i in inps], IMAGE)
    kw = dict(input_ids=torch.tensor([full]), mm_token_type_ids=torch.tensor([types]))
    if inps:
        kw.update(pixel_values=torch.tensor(np.concatenate([i.patches for i in inps])),
                  image_grid_thw=torch.tensor([i.grid_thw for i in inps]))
    return kw


def test_rotary_permutation_equivalence():
    """Interleaved rotary on (q, k) == NeoX rotary on the permuted rows, up to one fixed permutation
    of the head dims, so every q.k score is identical (the engine sees permuted weights)."""
    torch.manual_seed(0)
    hd, rot, t = 32, 16, 7
    q, k = torch.randn(3, t, hd, dtype=torch.float64), torch.randn(3, t, hd, dtype=torch.float64)
    ang = torch.randn(t, rot // 2, dtype=torch.float64) * 3
    cos, sin = ang.cos(), ang.sin()

    def interleaved(x):
        r = x[..., :rot]
        e, o = r[..., 0::2], r[..., 1::2]
        return torch.cat([torch.stack((e * cos - o * sin, o * cos + e * sin), -1).flatten(-2), x[..., rot:]], -1)

    perm = rotary_permutation(hd, rot)
    qn, kn = apply_rope_neox(q[..., perm], cos, sin, rot), apply_rope_neox(k[..., perm], cos, sin, rot)
    # apply_rope_neox rotates in float32 (like the engine): float32 rounding only
    torch.testing.assert_close(qn, interleaved(q)[..., perm], rtol=0, atol=1e-6)
    torch.testing.assert_close(qn @ kn.transpose(-1, -2), interleaved(q) @ interleaved(k).transpose(-1, -2),
                               rtol=0, atol=1e-5)
    # without the permutation NeoX rotary is a different function (the trap the permutation avoids)
    assert (apply_rope_neox(q, cos, sin, rot) - interleaved(q)).abs().max() > 0.1
    # permute_heads on a projection == permuting the dims of each head's output
    w = torch.randn(2 * hd, 5, dtype=torch.float64)
    x = torch.randn(5, dtype=torch.float64)
    torch.testing.assert_close((permute_heads(w, hd, rot) @ x).view(2, hd), (w @ x).view(2, hd)[:, perm])


def test_text_logits_fp32(tiny_glm4v, ref):
    _, hf = tiny_glm4v
    with torch.no_grad():
        want = hf(torch.tensor([TEXT])).logits[0]
    got, _ = ref.prompt_forward(ref.prepare(TEXT))
    assert (got[0] - want).abs().max().item() <= 1e-4


@pytest.mark.parametrize("size", [(130, 90), (56, 224)])
def test_image_text_logits_and_decode(tiny_glm4v, ref, size):
    """Context logits of an image prompt and 4 KV-cache decode steps (position = index + delta)."""
    _, hf = tiny_glm4v
    img = _img(*size)
    ids = [1, 5, BOI, IMAGE, EOI, 9, 11]
    prompt = ref.prepare(ids, [img])
    got, past = ref.prompt_forward(prompt)
    kw = _hf_inputs(ids, [img])
    with torch.no_grad():
        want = hf(**kw).logits[0]
    assert (got[0] - want).abs().max().item() <= 1e-4      # stated tolerance: FP32 max-abs 1e-4
    # decode 4 tokens through the cache; transformers recomputes the whole sequence each time
    extra = [21, 22, 23, 24]
    steps = []
    for tok in extra:
        step, past = ref.forward([[tok]], past, rope_delta=prompt.rope_delta)
        steps.append(step[0, -1])
    kw2 = dict(kw, input_ids=torch.cat([kw["input_ids"], torch.tensor([extra])], 1),
               mm_token_type_ids=torch.cat([kw["mm_token_type_ids"], torch.zeros(1, 4, dtype=torch.long)], 1))
    with torch.no_grad():
        want2 = hf(**kw2).logits[0, -4:]
    assert (torch.stack(steps) - want2).abs().max().item() <= 1e-4


def test_greedy_32_tokens_identical(tiny_glm4v, ref):
    _, hf = tiny_glm4v
    img = _img(100, 70, seed=3)
    ids = [1, BOI, IMAGE, EOI, 9, 11, 12]
    kw = _hf_inputs(ids, [img])
    hf.generation_config.eos_token_id = None
    with torch.no_grad():
        out = hf.generate(**kw, max_new_tokens=32, do_sample=False, pad_token_id=0)
    want = out[0, kw["input_ids"].shape[1]:].tolist()
    got = list(ref.generate(ref.prepare(ids, [img]), 32, end_id=None, temperature=0.0))
    assert len(want) == 32 and got == want
    text_want = hf.generate(input_ids=torch.tensor([TEXT]), max_new_tokens=32, do_sample=False,
                            pad_token_id=0)[0, len(TEXT):].tolist()
    assert list(ref.generate(TEXT, 32, end_id=None, temperature=0.0)) == text_want


def test_tp2_int8_reference_runs(tiny_glm4v, tmp_path):
    from glmtrt.convert.pipeline import convert_checkpoint

    out = convert_checkpoint(tiny_glm4v[0], tmp_path / "tp2", dtype="float32", tp_size=2, progress=False)
    got, _ = Glm4vReference.from_checkpoint(out).prompt_forward(
        Glm4vReference.from_checkpoint(out).prepare(TEXT))
    with torch.no_grad():
        want = tiny_glm4v[1](torch.tensor([TEXT])).logits[0]
    assert (got[0] - want).abs().max().item() <= 1e-4


def test_prepare_errors(ref):
    img = _img(60, 60)
    with pytest.raises(GlmtrtError, match="at most 1"):
        ref.prepare([BOI, IMAGE, EOI, BOI, IMAGE, EOI], [img, img], max_images=1)
    with pytest.raises(GlmtrtError, match="image placeholder"):
        ref.prepare([1, 2, 3], [img])


def test_engine_step_interface_matches_forward(ref):
    """prefill (rotary from the request's mrope_rotary_cos_sin table, as the engine reads it) + batched decode
    (position = cache length + rope delta) give the logits of forward() with a past, row for row, and a row does
    not depend on what else is in the batch (the CPU stand-in's in-flight batching)."""
    from glmtrt.models.glm4v.positions import mrope_table

    img = _img(84, 112, seed=5)
    p = ref.prepare([1, BOI, IMAGE, EOI, 9, 11], [img])
    table = mrope_table(p.positions, ref.rotary_dim, ref.theta, ref.section, ref.max_positions)
    want, past = ref.prompt_forward(p)
    cache = ref.new_cache(64)
    got = ref.prefill(p.input_ids, cache, prompt_table=p.prompt_table, mrope_rotary_cos_sin=table.numpy(),
                      rope_delta=p.rope_delta)
    assert (got - want[0]).abs().max().item() <= 1e-5
    text_cache = ref.new_cache(64)
    ref.prefill(TEXT, text_cache)
    alone_cache = ref.new_cache(64)
    ref.prefill(p.input_ids, alone_cache, prompt_table=p.prompt_table, mrope_rotary_cos_sin=table.numpy(),
                rope_delta=p.rope_delta)
    for tok in (5, 17, 3):
        step_want, past = ref.forward([[tok]], past, rope_delta=p.rope_delta)
        both = ref.decode([tok, tok], [cache, text_cache])
        alone = ref.decode([tok], [alone_cache])
        assert (both[0] - step_want[0, -1]).abs().max().item() <= 1e-5
        assert torch.equal(both[0], alone[0])
