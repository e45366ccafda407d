"""`load_tokenizer(path)`: recognise a GLM tokenizer by the CONTENT of tokenizer.model.

- SentencePiece model (a protobuf ModelProto; first byte 0x0A = field 1 "pieces") -> ChatGLM3
- text lines "base64(token bytes) rank" (tiktoken ranks) -> GLM-4
Nothing is imported from the model folder: `auto_map` / remote code is ignored.
"""
from __future__ import annotations

import base64
import binascii
import logging
import os
import re
from pathlib import Path

from glmtrt.fileio import read_json_object
from typing import Any

from glmtrt.errors import GlmtrtError
from glmtrt.tokenizer.base import GENERATION_CONFIG, TOKENIZER_CONFIG, TOKENIZER_FILE, GLMTokenizer

log = logging.getLogger(__name__)

_EXPECTED = (
    "tokenizer.model holding either a SentencePiece model (ChatGLM3) or tiktoken BPE ranks, "
    "one 'base64 rank' per line (GLM-4)"
)
_RANK_LINE = re.compile(rb"^[A-Za-z0-9+/]+={0,2} [0-9]+$")


def detect_format(data: bytes) -> str:
    """"sentencepiece" or "tiktoken" from the first bytes of a tokenizer.model; GlmtrtError else."""
    first = data.split(b"\n", 1)[0].rstrip(b"\r")
    if _RANK_LINE.match(first):
        return "tiktoken"
    if data[:1] == b"\x0a":
        return "sentencepiece"
    shown = data[:16]
    raise GlmtrtError(
        f"tokenizer.model of unknown format (starts with {shown!r})",
        expected=_EXPECTED,
        fix="point at the tokenizer.model of a ChatGLM3 or GLM-4 checkpoint",
    )


def load_tokenizer(path: str | os.PathLike) -> GLMTokenizer:
    """Load the tokenizer of a GLM checkpoint.

    `path` is a model folder holding tokenizer.model (plus optional tokenizer_config.json,
    config.json, generation_config.json) or the tokenizer.model file itself (its folder is
    searched for the json files). The family is decided from the file content only. Extra eos
    ids of generation_config.json / config.json join `stop_ids`.
    """
    p = Path(path)
    if p.is_dir():
        folder, model_file = p, p / TOKENIZER_FILE
        if not model_file.is_file():
            found = sorted(x.name for x in p.iterdir())[:20]
            raise GlmtrtError(
                f"no {TOKENIZER_FILE} in {p} (found: {', '.join(found) or 'nothing'})",
                expected=_EXPECTED,
                fix="pass the HF model folder of a ChatGLM3 / GLM-4 checkpoint, or the tokenizer.model file",
            )
    elif p.is_file():
        folder, model_file = p.parent, p
    else:
        raise GlmtrtError(f"tokenizer path {p} does not exist", expected=_EXPECTED)

    data = model_file.read_bytes()
    if not data:
        raise GlmtrtError(f"{model_file} is empty", expected=_EXPECTED, fix="re-download the file (git lfs pull)")
    if data.startswith(b"version https://git-lfs"):
        raise GlmtrtError(
            f"{model_file} is a Git LFS pointer, not the tokenizer", expected=_EXPECTED, fix="run `git lfs pull`"
        )
    kind = detect_format(data)
    tok_cfg = _read_json(folder / TOKENIZER_CONFIG)
    gen_file = folder / GENERATION_CONFIG
    eos = _eos_ids(_read_json(gen_file)) + _eos_ids(_read_json(folder / "config.json"))
    common: dict[str, Any] = dict(
        tokenizer_config=tok_cfg,
        extra_eos_ids=eos,
        generation_config_file=gen_file if gen_file.is_file() else None,
    )
    if kind == "sentencepiece":
        from glmtrt.tokenizer.chatglm3 import ChatGLM3Tokenizer

        tok: GLMTokenizer = ChatGLM3Tokenizer(model_file, _load_sentencepiece(model_file, data), **common)
    else:
        from glmtrt.tokenizer.glm4 import GLM4Tokenizer

        tok = GLM4Tokenizer(model_file, parse_tiktoken_ranks(data, model_file), **common)
    log.info("loaded %s tokenizer from %s: vocab %d, stop ids %s", tok.name, model_file, tok.vocab_size, tok.stop_ids)
    return tok


def _load_sentencepiece(model_file: Path, data: bytes):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor()
    try:
        sp.LoadFromSerializedProto(data)
    except (RuntimeError, OSError, TypeError) as e:
        raise GlmtrtError(
            f"{model_file} looks like a SentencePiece model but does not load: {e}",
            expected=_EXPECTED,
            fix="the file is corrupt or truncated; re-download it",
        ) from e
    if sp.get_piece_size() < 259:
        raise GlmtrtError(
            f"SentencePiece model {model_file} has only {sp.get_piece_size()} pieces",
            expected="a ChatGLM3-style model with <unk>, <s>, </s> and 256 byte-fallback pieces",
        )
    return sp


def parse_tiktoken_ranks(data: bytes, source: Path | str = "tokenizer.model") -> dict[bytes, int]:
    """{token bytes: rank} from tiktoken text; GlmtrtError naming the first bad line."""
    ranks: dict[bytes, int] = {}
    for n, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            if len(parts) != 2:
                raise ValueError("not two fields")
            tok, rank = base64.b64decode(parts[0], validate=True), int(parts[1])
        except (ValueError, binascii.Error) as e:
            raise GlmtrtError(
                f"{source} line {n} is not 'base64 rank': {line[:60]!r} ({e})",
                expected=_EXPECTED,
                fix="the file is corrupt or truncated; re-download it",
            ) from e
        if tok in ranks:
            raise GlmtrtError(f"{source} line {n}: token {tok!r} appears twice", expected="unique tokens")
        ranks[tok] = rank
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise GlmtrtError(f"{source}: ranks are not 0..{len(ranks) - 1} without gaps", expected=_EXPECTED)
    missing = [b for b in range(256) if bytes([b]) not in ranks]
    if missing:
        raise GlmtrtError(
            f"{source}: {len(missing)} single bytes have no token (first: {missing[0]:#04x})",
            expected="a byte-level BPE with all 256 single bytes",
        )
    return ranks


def _read_json(path: Path) -> dict[str, Any]:
    return read_json_object(path, path.name, missing_ok=True)


def _eos_ids(cfg: dict[str, Any]) -> list[int]:
    eos = cfg.get("eos_token_id")
    if eos is None:
        return []
    items = eos if isinstance(eos, list) else [eos]
    return [int(x) for x in items if isinstance(x, int) and not isinstance(x, bool)]
