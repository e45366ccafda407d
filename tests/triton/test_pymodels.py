"""Unit tests of the python models' pure parts (no server): word lists, prompt building,
request validation, the per-request detokenizer cache."""
from __future__ import annotations

import pytest

from glmtrt.triton.pymodels.common import RequestError, from_words_list, stack_words, to_words_list
from glmtrt.triton.pymodels.textproc import DetokenizerCache, prepare


def test_words_list_format_matches_trtllm():
    # TensorRT-LLM preprocessing `_to_word_list_format`: ids concatenated, end offsets, pads 0 / -1
    arr = to_words_list([[5, 6], [7]])
    assert arr.tolist() == [[5, 6, 7], [2, 3, -1]]
    assert to_words_list([]).tolist() == [[0], [-1]]
    assert from_words_list(arr) == [[5, 6], [7]]
    batch = stack_words([arr, to_words_list([])])
    assert batch.shape == (2, 2, 3) and batch[1].tolist() == [[0, 0, 0], [-1, -1, -1]]


@pytest.fixture(scope="module")
def tok():
    from conftest import need_shared_tokenizer  # noqa: PLC0415  (skip without ../shared)

    from glmtrt.tokenizer import load_tokenizer

    return load_tokenizer(need_shared_tokenizer())


def test_prepare_chat_defaults_from_model(tok):
    p = prepare(tok, text="hi", max_tokens=5, chat=True)
    assert p.input_ids == [64790, 64792, 64795, 30910, 13, 14980, 64796]  # shared/models/README.md
    assert p.end_id == 2 and p.pad_id == tok.pad_id
    assert [64795] in p.stop_words and [64797] in p.stop_words
    extra = prepare(tok, text="hi", max_tokens=5, stop_words=["<|observation|>", "Hello"])
    # "Hello" as the text's start ("▁Hello" 13755) and mid-text ("Hello" 24218, "▁▁"+"Hello"): issue 13 item 4
    assert extra.stop_words == [[64795], [64797], [13755], [24218], [265, 24218]]
    plain = prepare(tok, text="你好，世界! Hello", max_tokens=1)
    assert plain.input_ids == [64790, 64792, 36474, 54591, 31123, 31661, 30992, 13755]


@pytest.mark.parametrize("kw, match", [
    (dict(text="", max_tokens=4), "empty"),
    (dict(text="hi", max_tokens=0), "max_tokens"),
    (dict(text="世界 " * 50, max_tokens=4, max_input_len=10), "max_input_len=10"),
    (dict(text="hi", max_tokens=4, messages="{not json"), "not JSON"),
    (dict(text="hi", max_tokens=4, messages='[{"role": "wizard", "content": "x"}]'), "bad chat messages"),
])
def test_prepare_rejects_bad_requests(tok, kw, match):
    with pytest.raises(RequestError, match=match):
        prepare(tok, **kw)


def test_detokenizer_cache_is_utf8_safe_and_bounded(tok):
    ids = tok.encode("你好 𠮷鿏 end")
    now = [0.0]
    cache = DetokenizerCache(tok, max_entries=2, ttl_s=10, clock=lambda: now[0])
    deltas = [cache.push("a", [i])[0] for i in ids]
    assert "".join(deltas) == tok.decode(ids) and not any("\ufffd" in d for d in deltas)
    assert cache.push("a", [])[1] == tok.decode(ids)
    cache.push("b", ids[:1])
    cache.push("c", ids[:1])  # LRU: "a" goes
    assert len(cache) == 2 and cache.push("a", ids[:1])[1] == tok.decode(ids[:1])
    now[0] = 100.0  # idle past the TTL: everything expires
    cache.push("d", ids[:1])
    assert len(cache) == 1
    assert cache.release("d") == "" and len(cache) == 0
