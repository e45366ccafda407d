"""Pure multimodal request logic (no server): prompt layout, limits, engine inputs, extra ids."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from glmtrt.triton.pymodels.common import RequestError
from glmtrt.triton.pymodels.mmproc import (IMAGE_PLACEHOLDER, MultimodalFacts, check_prompt_length, decode_images,
                                           engine_inputs, image_hash, prompt_ids_with_images)

SHARED_GLM4 = Path(__file__).resolve().parents[2] / ".." / "shared" / "models" / "glm-4-9b-chat"


def _facts(**kw) -> MultimodalFacts:
    base = dict(image_token_id=151343, image_start_token_id=151339, image_end_token_id=151340, patch_size=14,
                merge_size=2, temporal_patch_size=2, vision_head_dim=16, vision_theta=10000.0, vocab_size=151552,
                hidden_size=8, rotary_dim=16, rope_theta=10000.0, mrope_section=(2, 3, 3), max_position_embeddings=256,
                table_dtype="float32", max_images=2, min_pixels=112 * 112, max_pixels=2 * 112 * 112)
    base.update(kw)
    return MultimodalFacts(**base)


def _png(w, h, seed=0) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def glm4_tok():
    if not (SHARED_GLM4 / "tokenizer.model").is_file():
        pytest.skip("../shared/models/glm-4-9b-chat is absent (real GLM-4 tokenizer needed)")
    from glmtrt.tokenizer import load_tokenizer

    return load_tokenizer(SHARED_GLM4.resolve())


def test_chat_layout_is_the_glm41v_template(glm4_tok):
    """The ids equal HF-style tokenization of the rendered GLM-4.1V template string, segment by segment
    between special tokens: [gMASK]<sop><|user|>\\n<boi><image><eoi>TEXT<|assistant|>\\n."""
    tok, f = glm4_tok, _facts()
    ids = prompt_ids_with_images(tok, "打开设置", 1, f, chat=True, messages=None, add_special_tokens=True)
    sp = tok.special_tokens
    want = ([sp["[gMASK]"], sp["<sop>"], sp["<|user|>"]] + tok.encode("\n") + [151339, 151343, 151340]
            + tok.encode("打开设置") + [sp["<|assistant|>"]] + tok.encode("\n"))
    assert ids == want
    # same as tokenizing the rendered string with the specials recognised (<|image|> is not a GLM-4 special)
    rendered = tok.encode("[gMASK]<sop><|user|>\n<|begin_of_image|>", allow_special=True) + [151343] + \
        tok.encode("<|end_of_image|>打开设置<|assistant|>\n", allow_special=True)
    assert ids == rendered
    # text-only chat: one segment "\n" + text, and the same generation prompt
    text_only = prompt_ids_with_images(tok, "你好", 0, f, chat=True, messages=None, add_special_tokens=True)
    assert text_only == tok.encode("[gMASK]<sop><|user|>\n你好<|assistant|>\n", allow_special=True)
    # earlier turns come first, the images go into the LAST user turn
    hist = '[{"role": "user", "content": "第一步"}, {"role": "assistant", "content": "好的"}]'
    multi = prompt_ids_with_images(tok, "第二步", 2, f, chat=False, messages=hist, add_special_tokens=True)
    assert multi == tok.encode("[gMASK]<sop><|user|>\n第一步<|assistant|>\n好的<|user|>\n", allow_special=True) + \
        [151339, 151343, 151340] * 2 + tok.encode("第二步<|assistant|>\n", allow_special=True)


def test_plain_placeholders_in_place_or_first(glm4_tok):
    tok, f = glm4_tok, _facts()
    slot = [151339, 151343, 151340]
    inplace = prompt_ids_with_images(tok, f"左{IMAGE_PLACEHOLDER}右", 1, f, chat=False, messages=None,
                                     add_special_tokens=True)
    assert inplace == list(tok.prefix_ids) + tok.encode("左") + slot + tok.encode("右")
    first = prompt_ids_with_images(tok, "描述", 2, f, chat=False, messages=None, add_special_tokens=False)
    assert first == slot * 2 + tok.encode("描述")
    with pytest.raises(RequestError, match="1 image placeholder"):
        prompt_ids_with_images(tok, f"a{IMAGE_PLACEHOLDER}b", 2, f, chat=False, messages=None, add_special_tokens=True)
    with pytest.raises(RequestError, match="chat template places the images"):
        prompt_ids_with_images(tok, IMAGE_PLACEHOLDER, 1, f, chat=True, messages=None, add_special_tokens=True)


def test_decode_limits_and_notes():
    f = _facts()
    imgs, ms = decode_images([_png(84, 84), _png(300, 200, 1)], f)
    assert ms >= 0 and imgs[0].note is None and "max_pixels 25088" in imgs[1].note
    with pytest.raises(RequestError, match="at most 2"):
        decode_images([_png(84, 84)] * 3, f)
    with pytest.raises(RequestError, match="image 1: .*not a readable image"):
        decode_images([_png(84, 84), b"GIF89a-but-not-really"], f)
    with pytest.raises(RequestError, match="image 0 is empty"):
        decode_images([b""], f)
    # the expanded prompt (each image slot -> its tokens) is checked against max_input_len before any encoding
    ids = [1, 151339, 151343, 151340, 2]
    assert check_prompt_length(ids, imgs[:1], f, None) == 4 + imgs[0].num_tokens
    with pytest.raises(RequestError, match=f"{imgs[0].num_tokens} of them image tokens.*max_input_len=10"):
        check_prompt_length(ids, imgs[:1], f, 10)


def test_engine_inputs_table_ids_extra_ids_and_mrope():
    from glmtrt.models.glm4v import positions as P

    f = _facts()
    imgs, _ = decode_images([_png(84, 84, 0), _png(84, 84, 1)], f)
    ids = [1, 151339, 151343, 151340, 7, 151339, 151343, 151340, 9]
    n = [im.num_tokens for im in imgs]
    embeds = [np.full((k, f.hidden_size), i + 1.0, np.float32) for i, k in enumerate(n)]
    e = engine_inputs(ids, imgs, embeds, f)
    got = e["input_ids"][0].tolist()
    assert len(got) == len(ids) - 2 + sum(n) == e["input_lengths"][0, 0] == e["prompt_table_extra_ids"].shape[1]
    table_ids = [i for i in got if i >= f.vocab_size]
    assert table_ids == list(range(f.vocab_size, f.vocab_size + sum(n)))          # vocab_size + k, k running
    extra = e["prompt_table_extra_ids"][0]
    assert e["prompt_table_extra_ids"].dtype == np.uint64
    assert set(extra[np.array(got) < f.vocab_size].tolist()) == {0}
    h0, h1 = image_hash(imgs[0]), image_hash(imgs[1])
    assert h0 != h1 and h0 > 0 and extra.tolist().count(h0) == n[0] and extra.tolist().count(h1) == n[1]
    assert e["prompt_embedding_table"].shape == (1, sum(n), f.hidden_size) and e["prompt_vocab_size"][0, 0] == sum(n)
    full, types = P.expand_image_tokens(ids, [im.grid_thw for im in imgs], f.image_token_id)
    pos, delta = P.rope_index(types, [im.grid_thw for im in imgs])
    assert e["mrope_position_deltas"].tolist() == [[delta]] and e["mrope_position_deltas"].dtype == np.int64
    assert delta < 0  # image tokens share positions
    assert e["mrope_rotary_cos_sin"].shape == (1, f.max_position_embeddings * f.rotary_dim)
    # the same image content always gets the same extra id (KV reuse across requests stays possible)
    again, _ = decode_images([_png(84, 84, 0)], f)
    assert image_hash(again[0]) == h0
    # text-only: a 1-row zero table, zero extra ids, delta 0
    t = engine_inputs([1, 2, 3], [], [], f)
    assert t["prompt_embedding_table"].shape == (1, 1, f.hidden_size) and not t["prompt_embedding_table"].any()
    assert t["mrope_position_deltas"].tolist() == [[0]] and not t["prompt_table_extra_ids"].any()
    with pytest.raises(RequestError, match="vision encoder returned"):
        engine_inputs(ids, imgs, [embeds[0]], f)
