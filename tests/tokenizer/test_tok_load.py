"""load_tokenizer: family from file content (not the path), clear errors, save round trip."""
from __future__ import annotations

import base64
import json
import shutil

import pytest

from glmtrt.errors import GlmtrtError
from glmtrt.tokenizer import detect_format, load_tokenizer
from glmtrt.tokenizer.glm4 import GLM4Tokenizer


def _write_ranks(path, merges=(b"ab", b"abc", b"\xe4\xbd", "你".encode())):
    toks = [bytes([b]) for b in range(256)] + list(merges)
    path.write_text("".join(f"{base64.b64encode(t).decode()} {r}\n" for r, t in enumerate(toks)))
    return len(toks)


def test_detect_format_from_content(chatglm3_dir, glm4_dir):
    assert detect_format((chatglm3_dir / "tokenizer.model").read_bytes()[:4096]) == "sentencepiece"
    assert detect_format((glm4_dir / "tokenizer.model").read_bytes()[:4096]) == "tiktoken"


def test_path_name_is_not_used(tmp_path, chatglm3_dir):
    # a ChatGLM3 file in a folder called glm-4-9b-chat is still ChatGLM3
    d = tmp_path / "glm-4-9b-chat"
    d.mkdir()
    shutil.copyfile(chatglm3_dir / "tokenizer.model", d / "tokenizer.model")
    tok = load_tokenizer(d)
    assert tok.name == "chatglm3" and tok.vocab_size == 64798


def test_load_by_file_path(glm4_dir):
    tok = load_tokenizer(glm4_dir / "tokenizer.model")
    assert tok.name == "glm4" and tok.stop_ids == (151329, 151336, 151338)


def test_small_tiktoken_file(tmp_path):
    n = _write_ranks(tmp_path / "tokenizer.model")
    tok = load_tokenizer(tmp_path)
    assert isinstance(tok, GLM4Tokenizer)
    assert tok.vocab_size == n + 14 and tok.eos_id == n and tok.special_tokens["<|user|>"] == n + 7
    assert tok.encode("abc你") == [n - 3, n - 1]
    assert tok.decode(tok.encode("xyz 你好 😀")) == "xyz 你好 😀"


def test_extra_eos_from_config(tmp_path):
    n = _write_ranks(tmp_path / "tokenizer.model")
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [n, n + 9, 5]}))
    tok = load_tokenizer(tmp_path)
    assert tok.stop_ids == (n, n + 7, n + 9, 5)


@pytest.mark.parametrize(
    "content, match",
    [
        (b"", "empty"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:00\n", "Git LFS"),
        (b"\x00\x01garbage\xff", "unknown format"),
        (b"<html>not found</html>", "unknown format"),
        (b"\x0a\x05hello-not-a-model", "does not load"),
        (b"IQ== 0\nIg== x\n", "line 2"),
        (b"IQ== 0\nIg== 2\n", "without gaps"),
        (b"IQ== 0\nIg== 1\n", "single bytes"),
    ],
)
def test_bad_files(tmp_path, content, match):
    (tmp_path / "tokenizer.model").write_bytes(content)
    with pytest.raises(GlmtrtError, match=match) as e:
        load_tokenizer(tmp_path)
    assert "expected" in str(e.value)


def test_missing_paths(tmp_path):
    with pytest.raises(GlmtrtError, match="does not exist"):
        load_tokenizer(tmp_path / "nope")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(GlmtrtError, match="no tokenizer.model.*config.json") as e:
        load_tokenizer(tmp_path)
    assert "SentencePiece" in str(e.value) and "tiktoken" in str(e.value)


def test_bad_json_beside(tmp_path):
    _write_ranks(tmp_path / "tokenizer.model")
    (tmp_path / "tokenizer_config.json").write_text("{oops")
    with pytest.raises(GlmtrtError, match="not valid JSON"):
        load_tokenizer(tmp_path)


def test_bad_messages(tiny):
    for bad, match in [
        ("hello", "list of dicts"),
        (["hello"], "is a str"),
        ([{"role": "bot", "content": "x"}], "role 'bot'"),
        ([{"role": "user", "content": ["x"]}], "non-text"),
        ([{"role": "user", "content": "x", "tools": []}], "tools"),
    ]:
        with pytest.raises(GlmtrtError, match=match):
            tiny.build_chat_ids(bad)
    with pytest.raises(GlmtrtError, match="not a special token"):
        tiny.token_to_id("<|bot|>")
    with pytest.raises(GlmtrtError, match="can only encode str"):
        tiny.encode(b"bytes")


def test_save_round_trip(tmp_path, chatglm3_dir, glm4):
    tok = load_tokenizer(chatglm3_dir)
    out = tok.save(tmp_path / "c3")
    assert (out / "tokenizer.model").read_bytes() == (chatglm3_dir / "tokenizer.model").read_bytes()
    cfg = json.loads((out / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert "auto_map" not in cfg
    assert cfg["glmtrt"]["name"] == "chatglm3" and cfg["glmtrt"]["stop_ids"] == [2, 64795, 64797]
    again = load_tokenizer(out)
    assert again.special_tokens == tok.special_tokens and again.stop_ids == tok.stop_ids

    out4 = glm4.save(tmp_path / "g4")
    assert json.loads((out4 / "generation_config.json").read_text())["eos_token_id"] == [151329, 151336, 151338]
    assert not list(out4.glob(".*tmp"))
