"""Stop words match wherever their text appears (issue 13 item 4), not only at a text's start.

With the ChatGLM3 SentencePiece tokenizer `encode("，")` is ["▁，"] (the dummy prefix), while
"，" inside a sentence is the token "，": the stop word never matched mid-text. TensorRT-LLM
matches stop words as token sequences, so every mid-text tokenization is sent (`word_variants`).
"""
from __future__ import annotations

import functools

import pytest

from glmtrt.triton.pymodels.textproc import find_stop, prepare, word_variants, words_to_ids
from tests.conftest import shared_model


def _contains(seq, sub):
    return any(seq[i:i + len(sub)] == sub for i in range(len(seq) - len(sub) + 1))


@functools.lru_cache(maxsize=None)
def _tokenizer(name):
    from glmtrt.tokenizer import load_tokenizer

    if name == "tiny":
        from glmtrt.tokenizer.tiny import make_tiny_chatglm3_tokenizer
        import tempfile

        return load_tokenizer(make_tiny_chatglm3_tokenizer(tempfile.mkdtemp(prefix="tinytok-")))
    return load_tokenizer(shared_model(name))


TEXTS = ["你好，请介绍一下你自己。", "我是微型GLM模型，经Triton流式输出。", "Say Hello, world. Hello!"]


@pytest.mark.parametrize("name", ["chatglm3-6b", "glm-4-9b-chat", "tiny"])
@pytest.mark.parametrize("word", ["，", "。", "Hello", "你自己", "\n"])
def test_every_mid_text_occurrence_has_its_token_sequence(name, word):
    tok = _tokenizer(name)
    variants = word_variants(tok, word)
    assert variants[0] == tok.encode(word) and len(variants) <= 6
    for v in variants:  # every variant is the word's text (or the word after a space)
        assert tok.decode(v, skip_special_tokens=False).lstrip() == word.lstrip() or word == "\n"
    for text in TEXTS + [t.replace("，", "\n") for t in TEXTS]:
        if word not in text:
            continue
        ids = tok.encode(text)
        # the occurrence is a token sequence of the text unless BPE merged it with its neighbours;
        # then the text matching (find_stop) catches it
        merged = not any(_contains(ids, v) for v in variants)
        assert not merged or find_stop(tok.decode(ids), [word]) is not None, (text, word)


def test_chatglm3_comma_is_sent_without_the_dummy_prefix():
    tok = _tokenizer("chatglm3-6b")
    ids = tok.encode("你好，请介绍一下你自己。")
    comma = [i for i in ids if tok.id_to_token(i) == "，"]
    assert comma and [comma[0]] in words_to_ids(tok, ["，"])
    assert tok.encode("，") != [comma[0]]  # the canonical encoding alone never matched mid-text
    p = prepare(tok, text="hi", max_tokens=4, stop_words=["，", "<|observation|>"])
    assert [comma[0]] in p.stop_words and p.stop_texts == ["，"]


def test_find_stop_on_text():
    assert find_stop("你好，世界", ["，"]) == 3
    assert find_stop("abc", ["x"]) is None and find_stop("abc", []) is None
    assert find_stop("Hello world", ["lo w", "wor"]) == 7       # the earliest end wins
    assert find_stop("ab, cd, ef", [","], start=5) == 7         # occurrences ending after start only
    assert find_stop("abcd", ["bcd"], start=3) == 4              # across the previous delta
