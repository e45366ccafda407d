"""Image preprocessing, placeholder expansion, 3-D positions and the M-RoPE table vs transformers."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from glmtrt.errors import GlmtrtError
from glmtrt.models.glm4v import positions as P
from glmtrt.models.glm4v.preprocess import AUTOGLM_MAX_PIXELS, MAX_PIXELS, MIN_PIXELS, preprocess_image

from .conftest import BOI, EOI, IMAGE


def _image(w, h, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(max(h // 8, 1), max(w // 8, 1), 3), dtype=np.uint8)
    # smooth-ish content plus noise, like a screenshot rather than pure noise
    img = Image.fromarray(base).resize((w, h), Image.NEAREST)
    arr = np.asarray(img).astype(np.int16) + rng.integers(-20, 21, size=(h, w, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


SIZES = [((47, 33), MAX_PIXELS), ((336, 224), MAX_PIXELS), ((300, 517), MAX_PIXELS),
         ((1080, 2400), AUTOGLM_MAX_PIXELS)]


@pytest.mark.parametrize("size,max_pixels", SIZES)
def test_matches_transformers_processor(size, max_pixels):
    from transformers.models.glm4v.image_processing_pil_glm4v import Glm4vImageProcessorPil

    img = _image(*size)
    ours = preprocess_image(img, max_pixels=max_pixels)
    proc = Glm4vImageProcessorPil(size={"shortest_edge": MIN_PIXELS, "longest_edge": max_pixels})
    theirs = proc(images=[img], return_tensors="np")
    assert tuple(theirs["image_grid_thw"][0]) == ours.grid_thw
    assert ours.patches.shape == theirs["pixel_values"].shape == (ours.grid_thw[1] * ours.grid_thw[2], 1176)
    np.testing.assert_allclose(ours.patches, theirs["pixel_values"], atol=1e-5, rtol=0)
    assert ours.resized[0] % 28 == 0 and ours.resized[1] % 28 == 0


def test_screenshot_over_budget_is_resized_and_said():
    img = _image(1080, 2400)
    ours = preprocess_image(img, max_pixels=AUTOGLM_MAX_PIXELS)
    assert ours.original == (2400, 1080) and 2 * ours.resized[0] * ours.resized[1] <= AUTOGLM_MAX_PIXELS
    assert ours.note and "max_pixels 5000000" in ours.note
    assert preprocess_image(_image(336, 224)).note is None


def test_bad_image_inputs(tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(GlmtrtError, match="not a readable image"):
        preprocess_image(bad)
    buf = io.BytesIO()
    _image(64, 64).save(buf, format="PNG")
    with pytest.raises(GlmtrtError, match="not a readable image"):
        preprocess_image(buf.getvalue()[:60])          # truncated PNG
    with pytest.raises(GlmtrtError, match="does not exist"):
        preprocess_image(tmp_path / "missing.png")
    with pytest.raises(GlmtrtError, match="aspect ratio"):
        preprocess_image(_image(28 * 220, 28))


def test_rope_index_matches_transformers(tiny_glm4v):
    _, model = tiny_glm4v
    grids = [(1, 6, 4), (1, 2, 10)]
    prompt = [1, 2, BOI, IMAGE, EOI, 3, 4, 5, BOI, IMAGE, EOI, 6]
    ids, types = P.expand_image_tokens(prompt, grids, IMAGE)
    assert sum(types) == 6 + 5 and len(ids) == len(prompt) - 2 + 11
    pos, delta = P.rope_index(types, grids)
    want, want_delta = model.model.get_rope_index(torch.tensor([ids]), torch.tensor([types]),
                                                  image_grid_thw=torch.tensor(grids))
    assert torch.equal(pos, want[:, 0]) and delta == int(want_delta[0, 0])
    text_pos, d0 = P.rope_index([0] * 7, [])
    assert d0 == 0 and torch.equal(text_pos, torch.arange(7).expand(3, -1))


def test_placeholder_count_errors():
    with pytest.raises(GlmtrtError, match="2 image placeholder"):
        P.expand_image_tokens([IMAGE, 5, IMAGE], [(1, 2, 2)], IMAGE)


def test_mrope_cos_sin_matches_transformers_rotary(tiny_glm4v):
    """Our per-slot cos/sin (engine layout) equals transformers' rotary after undoing repeat_interleave."""
    _, model = tiny_glm4v
    rot = model.model.language_model.rotary_emb
    grids = [(1, 4, 6)]
    ids, types = P.expand_image_tokens([1, BOI, IMAGE, EOI, 2, 3], grids, IMAGE)
    pos, _ = P.rope_index(types, grids)
    cos_t, sin_t = rot(torch.zeros(1, dtype=torch.float32), pos[:, None, :])
    cos, sin = P.mrope_cos_sin(pos, 16, 10000.0, (2, 3, 3))
    torch.testing.assert_close(cos, cos_t[0, :, 0::2], rtol=0, atol=1e-6)
    torch.testing.assert_close(sin, sin_t[0, :, 0::2], rtol=0, atol=1e-6)
    table = P.mrope_table(pos, 16, 10000.0, (2, 3, 3), max_positions=64).view(64, 8, 2)
    torch.testing.assert_close(table[: pos.shape[1], :, 0], cos)
    torch.testing.assert_close(table[: pos.shape[1], :, 1], sin)
    assert torch.equal(table[pos.shape[1]:, :, 0], torch.ones(64 - pos.shape[1], 8))   # position 0 past the prompt


def test_vision_host_inputs_match_transformers():
    from transformers.vision_utils import get_vision_position_ids

    grid = (1, 6, 8)
    want = get_vision_position_ids(torch.tensor([grid]), 2)
    assert torch.equal(P.vision_patch_positions(grid), want)
