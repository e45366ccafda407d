"""The xgrammar tokenizer info file of `glmtrt repo --guided-decoding xgrammar`.

The TensorRT-LLM 1.2 C++ backend (triton_backend/inflight_batcher_llm/src/model_instance_state.cc,
`getGuidedDecodingConfigFromParams`) parses the JSON file named by `xgrammar_tokenizer_info_path`
and reads three keys, all required: `encoded_vocab` (list of str, the token strings by id),
`tokenizer_str` (str) and `stop_token_ids` (list of int). The executor hands them to
`xgrammar::TokenizerInfo::FromHuggingFace(encoded_vocab, tokenizer_str, vocab_size_padded,
stop_token_ids)` (cpp/tensorrt_llm/batch_manager/guidedDecoder.cpp), which takes the vocab type
(how a token string maps to bytes) and the prefix-space rule from the `decoder` / `normalizer`
fields of `tokenizer_str`, an HF tokenizer.json document. Upstream writes the file with
examples/generate_xgrammar_tokenizer_info.py from an HF fast tokenizer; glmtrt has its own
tokenizers (no remote code), so it writes the same three keys itself:

- ChatGLM3 (SentencePiece with byte fallback): the pieces ("▁Hello", "<0x0A>"), and a
  tokenizer_str whose decoder is SentencePiece's (Replace "▁" -> " ", ByteFallback, Fuse, Strip)
  and whose normalizer prepends "▁" -> xgrammar BYTE_FALLBACK with add_prefix_space;
- GLM-4 (tiktoken byte-level BPE): each token's bytes in GPT-2's byte-to-unicode alphabet, and a
  ByteLevel decoder -> xgrammar BYTE_LEVEL.

Special and control tokens get "" (xgrammar never lets a grammar emit an empty token), so a
grammar cannot produce `<|assistant|>` or `[gMASK]` as text; `stop_token_ids` are the tokenizer's
stop ids (eos, `<|user|>`, `<|observation|>`), which end a grammar-complete answer.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from glmtrt.errors import GlmtrtError

_SPACE = "\u2581"
#: tokenizer_str per vocab kind: the HF tokenizer.json fields xgrammar reads.
_SENTENCEPIECE_STR = {
    "version": "1.0",
    "normalizer": {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": _SPACE}, {"type": "Replace", "pattern": {"String": " "}, "content": _SPACE}]},
    "decoder": {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": _SPACE}, "content": " "}, {"type": "ByteFallback"},
        {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
}
_BYTE_LEVEL_STR = {"version": "1.0", "decoder": {"type": "ByteLevel", "add_prefix_space": False,
                                                  "trim_offsets": True, "use_regex": True}}
#: tokenizer kind (GLMTokenizer.name) -> how its vocab is written.
VOCAB_KINDS = {"chatglm3": "sentencepiece", "glm4": "byte_level"}


def byte_level_alphabet() -> dict[int, str]:
    """GPT-2's reversible byte -> unicode map (openai/gpt-2 src/encoder.py `bytes_to_unicode`,
    also HF tokenizers' ByteLevel): printable Latin-1 bytes map to themselves, the other 68 bytes
    to U+0100 onwards in byte order."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {b: chr(b) for b in keep}, 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def tokenizer_info(tok) -> dict[str, Any]:
    """The three keys the 1.2 backend reads, for a glmtrt GLMTokenizer `tok`."""
    kind = VOCAB_KINDS.get(tok.name)
    if kind is None:
        raise GlmtrtError(f"guided decoding has no xgrammar vocab mapping for the {tok.name!r} tokenizer",
                          expected="one of " + ", ".join(VOCAB_KINDS), fix="drop --guided-decoding")
    vocab: list[str] = []
    if kind == "sentencepiece":
        for i in range(tok.vocab_size):
            vocab.append("" if tok.is_special(i) else tok.id_to_token(i))
        backend = _SENTENCEPIECE_STR
    else:
        alphabet = byte_level_alphabet()
        for i in range(tok.vocab_size):
            raw, _ = tok.piece_bytes(i, at_start=False, skip_special_tokens=True)
            vocab.append("" if tok.is_special(i) else "".join(alphabet[b] for b in raw))
        backend = _BYTE_LEVEL_STR
    return {"encoded_vocab": vocab, "tokenizer_str": json.dumps(backend, ensure_ascii=False),
            "stop_token_ids": [int(i) for i in tok.stop_ids]}


def write_tokenizer_info(tok, path: Path) -> Path:
    """Write `tokenizer_info(tok)` as UTF-8 JSON to `path`; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(tokenizer_info(tok), ensure_ascii=False) + "\n", encoding="utf-8")
    return path
