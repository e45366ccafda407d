"""IncrementalDetokenizer: pushes + flush == decode(all ids), for every split, no split characters."""
from __future__ import annotations

import random

import numpy as np
import pytest

from glmtrt.errors import GlmtrtError
from glmtrt.tokenizer import IncrementalDetokenizer

TOKENIZERS = ["chatglm3", "glm4", "tiny"]


@pytest.fixture(params=TOKENIZERS)
def tok(request):
    return request.getfixturevalue(request.param)


def _random_split(ids, rng):
    parts, k = [], 0
    while k < len(ids):
        n = rng.choice([0, 1, 1, 1, 2, 3, 5])
        parts.append(ids[k:k + n])
        k += n
    return parts


def _stream(tok, parts, **kw):
    d = IncrementalDetokenizer(tok, **kw)
    outs = [d.push(p) for p in parts]
    return outs, d.flush()


def test_random_splits_of_valid_text(tok, texts):
    rng = random.Random(1234)
    for t in texts + ["".join(texts)]:
        ids = tok.encode(t)
        for _ in range(25):
            outs, tail = _stream(tok, _random_split(ids, rng))
            assert "".join(outs) + tail == tok.decode(ids) == t
            assert tail == ""
            assert all("\ufffd" not in o for o in outs)


def test_one_id_at_a_time_never_splits_a_character(tok, texts):
    for t in texts:
        ids = tok.encode(t)
        d = IncrementalDetokenizer(tok)
        got = ""
        for i in ids:
            piece = d.push(i)
            got += piece
            assert t.startswith(got)  # every emitted piece is complete text of the input
        assert got + d.flush() == t


def test_random_ids_any_split(tok):
    # arbitrary ids (byte tokens, specials, padding rows): streaming still equals decode exactly
    rng = random.Random(99)
    for skip in (True, False):
        for _ in range(60):
            ids = [rng.randrange(0, tok.vocab_size + 20) for _ in range(rng.randint(0, 30))]
            outs, tail = _stream(tok, _random_split(ids, rng), skip_special_tokens=skip)
            assert "".join(outs) + tail == tok.decode(ids, skip_special_tokens=skip)


def test_byte_fallback_pieces_wait_for_the_whole_character(chatglm3):
    # "龘" has no piece in ChatGLM3: it is encoded as <0xE9> <0xBE> <0x98>
    ids = chatglm3.encode("龘")
    byte_ids = [i for i in ids if chatglm3.sp.is_byte(i)]
    assert len(byte_ids) == 3
    d = IncrementalDetokenizer(chatglm3)
    assert d.push(byte_ids[0]) == ""
    assert d.pending_bytes == 1
    assert d.push(byte_ids[1]) == ""
    assert d.push(byte_ids[2]) == "龘"
    assert d.pending_bytes == 0 and d.flush() == ""


def test_tiktoken_partial_utf8_tokens(glm4):
    # find a character whose BPE tokens end inside a UTF-8 sequence
    for ch in "🦊🐶👨‍👩‍👧龘靐齉𠀀":
        ids = glm4.encode(ch)
        if any(glm4._table[i].decode("utf-8", "ignore") != glm4._table[i].decode("utf-8", "replace") for i in ids):
            break
    else:  # pragma: no cover
        pytest.fail("no multi-token character found")
    d = IncrementalDetokenizer(glm4)
    outs = [d.push(i) for i in ids]
    assert "".join(outs) == ch and all("\ufffd" not in o for o in outs)
    assert outs[0] == ""


def test_incomplete_bytes_at_the_end_come_out_of_flush(chatglm3):
    e4, bd = chatglm3.sp.piece_to_id("<0xE4>"), chatglm3.sp.piece_to_id("<0xBD>")
    d = IncrementalDetokenizer(chatglm3)
    assert d.push([36474, e4, bd]) == "你"
    assert d.flush() == "\ufffd"
    assert chatglm3.decode([36474, e4, bd]) == "你\ufffd"


def test_invalid_bytes_in_the_middle_match_decode(chatglm3):
    e4, a = chatglm3.sp.piece_to_id("<0xE4>"), chatglm3.sp.piece_to_id("<0x41>")
    d = IncrementalDetokenizer(chatglm3)
    assert d.push(e4) == ""
    assert d.push(a) == "\ufffdA" == chatglm3.decode([e4, a])


def test_reset_and_numpy_ids(tiny):
    ids = np.array(tiny.encode("你好 TensorRT"), dtype=np.int64)
    d = IncrementalDetokenizer(tiny)
    assert d.push(ids) == "你好 TensorRT"
    assert d.num_ids == len(ids)
    d.reset()
    assert d.push(ids[0]) + d.push(ids[1:]) + d.flush() == "你好 TensorRT"


def test_bad_ids(tiny):
    d = IncrementalDetokenizer(tiny)
    with pytest.raises(GlmtrtError, match="negative"):
        d.push(-1)
    with pytest.raises(GlmtrtError, match="not an integer"):
        tiny.decode(["5"])
