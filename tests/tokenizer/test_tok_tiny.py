"""The tiny trained ChatGLM3-style tokenizer used by the demo and the tests."""
from __future__ import annotations

import json
import time

import pytest

from glmtrt.errors import GlmtrtError
from glmtrt.tokenizer.chatglm3 import ChatGLM3Tokenizer
from glmtrt.tokenizer.tiny import (
    TINY_VOCAB_PADDED,
    TINY_VOCAB_SIZE,
    make_tiny_chatglm3_tokenizer,
    padded_vocab_size,
    tiny_vocab_padded,
)


def test_deterministic_and_fast(tmp_path, tiny_dir):
    t0 = time.perf_counter()
    out = make_tiny_chatglm3_tokenizer(tmp_path / "again")
    assert time.perf_counter() - t0 < 5
    assert (out / "tokenizer.model").read_bytes() == (tiny_dir / "tokenizer.model").read_bytes()


def test_files_and_no_remote_code(tiny_dir):
    cfg = json.loads((tiny_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert "auto_map" not in cfg
    assert sorted(p.name for p in tiny_dir.iterdir()) == ["tokenizer.model", "tokenizer_config.json"]


def test_chatglm3_layout(tiny):
    assert isinstance(tiny, ChatGLM3Tokenizer) and tiny.name == "chatglm3"
    assert tiny.vocab_size == TINY_VOCAB_SIZE == 1009
    assert list(tiny.special_tokens.values()) == list(range(1000, 1009))
    assert tiny.eos_id == 2 and tiny.pad_id == 0
    assert tiny.stop_ids == (2, tiny.special_tokens["<|user|>"], tiny.special_tokens["<|observation|>"])
    assert tiny.sp.id_to_piece(3) == "<0x00>" and tiny.sp.is_byte(3 + 0xE4)


def test_padded_vocab(tiny_dir):
    assert TINY_VOCAB_PADDED == 1024 == tiny_vocab_padded(tiny_dir) == tiny_vocab_padded()
    assert padded_vocab_size(64798) == 64832 and padded_vocab_size(64, 64) == 64
    with pytest.raises(GlmtrtError):
        padded_vocab_size(0)


def test_round_trip_and_byte_fallback(tiny, texts):
    for t in texts:
        assert tiny.decode(tiny.encode(t)) == t
    ids = tiny.encode("😀")
    assert [tiny.id_to_token(i) for i in ids if tiny.sp.is_byte(i)] == ["<0xF0>", "<0x9F>", "<0x98>", "<0x80>"]
    # corpus words are merged into pieces
    assert len(tiny.encode("TensorRT")) <= 3


def test_chat_ids(tiny):
    ids = tiny.build_chat_ids([{"role": "user", "content": "你好"}])
    sp = tiny.special_tokens
    assert ids[:3] == [sp["[gMASK]"], sp["sop"], sp["<|user|>"]] and ids[-1] == sp["<|assistant|>"]
    assert ids[3:-1] == tiny.encode("\n") + tiny.encode("你好")
    assert tiny.decode(list(range(1009, 1024))) == ""  # embedding padding rows
