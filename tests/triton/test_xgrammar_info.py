"""The xgrammar tokenizer info file (`glmtrt repo --guided-decoding xgrammar`).

Format: the TensorRT-LLM 1.2 C++ backend (triton_backend/inflight_batcher_llm/src/
model_instance_state.cc, getGuidedDecodingConfigFromParams) reads `encoded_vocab` (list of str),
`tokenizer_str` (str) and `stop_token_ids` (list of int) from it, and the executor builds
`xgrammar::TokenizerInfo::FromHuggingFace(encoded_vocab, tokenizer_str, vocab, stop_ids)`
(cpp/tensorrt_llm/batch_manager/guidedDecoder.cpp). The token strings must decode, under the vocab
type xgrammar detects from tokenizer_str, to exactly the bytes our tokenizer gives each id.
"""
from __future__ import annotations

import json

import pytest

from glmtrt.tokenizer import load_tokenizer
from glmtrt.tokenizer.tiny import make_tiny_chatglm3_tokenizer
from glmtrt.triton.xgrammar_info import byte_level_alphabet, tokenizer_info, write_tokenizer_info
from tests.conftest import shared_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return load_tokenizer(make_tiny_chatglm3_tokenizer(tmp_path_factory.mktemp("tok")))


def _want(tok, i: int) -> bytes:
    return b"" if tok.is_special(i) else tok.piece_bytes(i, at_start=False, skip_special_tokens=True)[0]


def _decoder(info: dict):
    """Decode a token string the way the detected vocab type does (independent of glmtrt code)."""
    if json.loads(info["tokenizer_str"])["decoder"]["type"] == "ByteLevel":
        inverse = {c: b for b, c in byte_level_alphabet().items()}
        return lambda s: bytes(inverse[c] for c in s)

    def sentencepiece(s: str) -> bytes:
        if len(s) == 6 and s.startswith("<0x") and s.endswith(">"):
            return bytes([int(s[3:5], 16)])
        return s.replace("\u2581", " ").encode("utf-8")
    return sentencepiece


def test_byte_level_alphabet_is_gpt2s():
    table = byte_level_alphabet()
    assert len(set(table.values())) == 256
    assert table[ord("A")] == "A" and table[ord(" ")] == "\u0120" and table[ord("\n")] == "\u010a"  # "Ġ", "Ċ"


def _check(tok, tmp_path):
    info = json.loads(write_tokenizer_info(tok, tmp_path / "info.json").read_text(encoding="utf-8"))
    assert set(info) == {"encoded_vocab", "tokenizer_str", "stop_token_ids"}
    assert isinstance(info["tokenizer_str"], str) and json.loads(info["tokenizer_str"])["decoder"]
    assert len(info["encoded_vocab"]) == tok.vocab_size and all(isinstance(t, str) for t in info["encoded_vocab"])
    assert info["stop_token_ids"] == list(tok.stop_ids)
    decode = _decoder(info)
    bad = [i for i, s in enumerate(info["encoded_vocab"]) if decode(s) != _want(tok, i)]
    assert bad == []
    assert info["encoded_vocab"][tok.token_to_id("<|assistant|>")] == ""  # specials never emitted as text
    return info


def test_tiny_chatglm3(tiny, tmp_path):
    info = _check(tiny, tmp_path)
    assert json.loads(info["tokenizer_str"])["normalizer"]["normalizers"][0] == {"type": "Prepend", "prepend": "\u2581"}


@pytest.mark.parametrize("name", ["chatglm3-6b", "glm-4-9b-chat"])
def test_real_tokenizers(name, tmp_path):
    _check(load_tokenizer(shared_model(name)), tmp_path)


@pytest.mark.parametrize("name", ["tiny", "chatglm3-6b", "glm-4-9b-chat"])
def test_xgrammar_reads_it_like_we_do(tiny, name):
    """Cross-check with xgrammar itself (optional: its wheel pulls in the large `triton` package)."""
    xgr = pytest.importorskip("xgrammar", reason="xgrammar not installed (pip install xgrammar to run this)")
    tok = tiny if name == "tiny" else load_tokenizer(shared_model(name))
    info = tokenizer_info(tok)
    meta = xgr.TokenizerInfo._detect_metadata_from_hf(info["tokenizer_str"])
    ti = xgr.TokenizerInfo(info["encoded_vocab"], meta["vocab_type"], vocab_size=tok.vocab_size + 7,
                           stop_token_ids=info["stop_token_ids"], add_prefix_space=meta["add_prefix_space"])
    decoded = ti.decoded_vocab  # a property that copies the whole vocab: read it once
    assert decoded[:tok.vocab_size] == [_want(tok, i) for i in range(tok.vocab_size)]
    ids = tok.encode('{"a": "中文"}')
    if tok.id_to_token(ids[0]).startswith("\u2581"):  # SentencePiece dummy prefix: a JSON answer has no leading space
        return
    matcher = xgr.GrammarMatcher(xgr.GrammarCompiler(ti).compile_builtin_json_grammar())
    assert all(matcher.accept_token(t) for t in ids)
    assert matcher.accept_token(tok.eos_id) and matcher.is_terminated()
