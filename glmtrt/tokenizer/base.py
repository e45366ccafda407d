"""What every GLM tokenizer shares: byte-level decoding, message checks, stop ids, save.

Decoding is defined on bytes: every id maps to a byte string (`piece_bytes`), the bytes of a
sequence are joined and decoded as UTF-8 with errors="replace". `IncrementalDetokenizer`
(glmtrt.tokenizer.stream) walks the same function with an incremental UTF-8 decoder, which is
why streamed text concatenates to exactly `decode(ids)`.
"""
from __future__ import annotations

import json
import logging
import operator
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from glmtrt.errors import GlmtrtError

log = logging.getLogger(__name__)

#: Roles the GLM chat formats know (upstream tokenization_chatglm.py `build_single_message`).
ROLES = ("system", "user", "assistant", "observation")

#: Files `save()` writes next to tokenizer.model.
TOKENIZER_FILE = "tokenizer.model"
TOKENIZER_CONFIG = "tokenizer_config.json"
GENERATION_CONFIG = "generation_config.json"


class GLMTokenizer(ABC):
    """A GLM-family tokenizer (ChatGLM3 SentencePiece or GLM-4 tiktoken BPE).

    Attributes: `name` ("chatglm3" | "glm4"), `vocab_size` (base vocab + specials, before the
    embedding is padded), `special_tokens` {text: id}, `eos_id`, `pad_id`, `stop_ids`
    (eos first, then `<|user|>`, `<|observation|>`, then any extra eos ids of the model's
    generation_config.json / config.json), `prefix_ids` (`[gMASK]` + sop), `model_file`.
    """

    name: str = ""

    def __init__(
        self,
        model_file: Path,
        *,
        base_vocab_size: int,
        special_names: Sequence[str],
        eos_id: int,
        pad_id: int,
        sop_name: str,
        tokenizer_config: Mapping[str, Any] | None = None,
        extra_eos_ids: Iterable[int] = (),
        generation_config_file: Path | None = None,
    ):
        self.model_file = Path(model_file)
        self.base_vocab_size = int(base_vocab_size)
        self.special_tokens: dict[str, int] = {
            tok: self.base_vocab_size + k for k, tok in enumerate(special_names)
        }
        self._special_by_id: dict[int, str] = {i: t for t, i in self.special_tokens.items()}
        self.vocab_size = self.base_vocab_size + len(self.special_tokens)
        self.eos_id = int(eos_id)
        self.pad_id = int(pad_id)
        self.prefix_ids: tuple[int, ...] = (self.special_tokens["[gMASK]"], self.special_tokens[sop_name])
        stops = [self.eos_id, self.special_tokens["<|user|>"], self.special_tokens["<|observation|>"]]
        for i in extra_eos_ids:
            if not 0 <= int(i) < self.vocab_size:
                log.warning("ignoring eos id %s from the model config: outside the vocab [0, %d)", i, self.vocab_size)
            elif int(i) not in stops:
                stops.append(int(i))
        self.stop_ids: tuple[int, ...] = tuple(stops)
        self.tokenizer_config: dict[str, Any] = dict(tokenizer_config or {})
        self._generation_config_file = generation_config_file

    # ---- per-family parts -------------------------------------------------------------
    @abstractmethod
    def encode(self, text: str, *, allow_special: bool = False) -> list[int]:
        """Token ids of `text` (no prefix). Special-token text in `text` is ordinary text
        unless `allow_special=True`."""

    @abstractmethod
    def piece_bytes(self, token_id: int, *, at_start: bool, skip_special_tokens: bool) -> tuple[bytes, bool]:
        """Bytes that `token_id` contributes to a decoded text, and the new `at_start` state.

        `at_start` is True until the first token that produces visible text (SentencePiece drops
        the dummy-prefix space of that token only). Ids >= vocab_size (embedding padding rows)
        give b"". Negative or non-integer ids raise GlmtrtError.
        """

    @abstractmethod
    def _message_ids(self, role: str, metadata: str, content: str) -> list[int]:
        """Ids of one chat message in this family's format (role token included)."""

    # ---- shared ---------------------------------------------------------------------------
    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """Text of `ids`. Special tokens are dropped (default) or written as their text.

        Invalid or truncated UTF-8 (only possible from raw byte tokens) becomes U+FFFD, one per
        maximal invalid subsequence (Python's errors="replace").
        """
        buf = bytearray()
        at_start = True
        for i in ids:
            b, at_start = self.piece_bytes(i, at_start=at_start, skip_special_tokens=skip_special_tokens)
            buf += b
        return bytes(buf).decode("utf-8", errors="replace")

    def token_to_id(self, token: str) -> int:
        """Id of a special token by its text, e.g. "<|user|>"."""
        if token not in self.special_tokens:
            raise GlmtrtError(
                f"{token!r} is not a special token of the {self.name} tokenizer",
                expected="one of " + ", ".join(self.special_tokens),
            )
        return self.special_tokens[token]

    def is_special(self, token_id: int) -> bool:
        """True for the appended special tokens (and the SentencePiece control tokens)."""
        return int(token_id) in self._special_by_id

    def build_chat_ids(self, messages: Sequence[Mapping[str, Any]], *, add_generation_prompt: bool = True) -> list[int]:
        """Prompt ids of a conversation: `[gMASK]` sop, then every message in this family's
        format, then `<|assistant|>` (when `add_generation_prompt`).

        Each message is a dict with `role` (system | user | assistant | observation), `content`
        (str) and optional `metadata` (str). Special-token text inside contents stays ordinary
        text: a user cannot inject `<|assistant|>`.
        """
        if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
            raise GlmtrtError(
                f"chat messages must be a list of dicts, got {type(messages).__name__}",
                expected='[{"role": "user", "content": "..."}, ...]',
            )
        ids = list(self.prefix_ids)
        for n, msg in enumerate(messages):
            role, metadata, content = _check_message(n, msg)
            if "tools" in msg:
                content = self._with_tools(n, role, content, msg["tools"])
            ids.extend(self._message_ids(role, metadata, content))
        if add_generation_prompt:
            ids.append(self.special_tokens["<|assistant|>"])
        return ids

    def _with_tools(self, n: int, role: str, content: str, tools: Any) -> str:
        """Content of a message that carries a `tools` list (family specific)."""
        raise GlmtrtError(
            f"chat message {n} carries `tools`, which the {self.name} prompt builder does not render",
            expected="messages with role/content/metadata only",
            fix="describe the tools in the system message content yourself",
        )

    def id_to_token(self, token_id: int) -> str:
        """Text of one id: the special token, or the family's piece text (`_base_token_text`)."""
        i = self._check_id(token_id)
        if i >= self.vocab_size:
            raise GlmtrtError(f"token id {i} is outside the vocab", expected=f"ids in [0, {self.vocab_size})")
        if i >= self.base_vocab_size:
            return self._special_by_id[i]
        return self._base_token_text(i)

    @abstractmethod
    def _base_token_text(self, i: int) -> str:
        """Text of a non-special id below base_vocab_size."""

    def _check_id(self, token_id: int) -> int:
        if type(token_id) is not int:  # numpy / torch integer scalars are fine
            try:
                if isinstance(token_id, bool):
                    raise TypeError
                token_id = operator.index(token_id)
            except TypeError:
                raise GlmtrtError(f"token id {token_id!r} is not an integer", expected="int ids") from None
        if token_id < 0:
            raise GlmtrtError(f"token id {token_id} is negative", expected=f"ids in [0, {self.vocab_size})")
        return token_id

    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write tokenizer.model (copied byte for byte), tokenizer_config.json (the source's,
        without `auto_map`, plus a `glmtrt` block with the resolved special tokens and stop
        ids) and generation_config.json (copied, when the source had one) into `out_dir`.
        Each file is written to a temp file and renamed. Returns `out_dir`."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        cfg = {k: v for k, v in self.tokenizer_config.items() if k != "auto_map"}
        cfg["glmtrt"] = {
            "name": self.name,
            "vocab_size": self.vocab_size,
            "eos_id": self.eos_id,
            "pad_id": self.pad_id,
            "stop_ids": list(self.stop_ids),
            "special_tokens": self.special_tokens,
        }
        _atomic_copy(self.model_file, out / TOKENIZER_FILE)
        _atomic_write(out / TOKENIZER_CONFIG, json.dumps(cfg, ensure_ascii=False, indent=2) + "\n")
        if self._generation_config_file is not None:
            _atomic_copy(self._generation_config_file, out / GENERATION_CONFIG)
        return out

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} vocab={self.vocab_size} file={self.model_file}>"


def _check_message(n: int, msg: Any) -> tuple[str, str, str]:
    if not isinstance(msg, Mapping):
        raise GlmtrtError(f"chat message {n} is a {type(msg).__name__}", expected='a dict {"role", "content"}')
    role = msg.get("role")
    if role not in ROLES:
        raise GlmtrtError(f"chat message {n} has role {role!r}", expected="one of " + ", ".join(ROLES))
    content = msg.get("content", "")
    metadata = msg.get("metadata", "") or ""
    if not isinstance(content, str) or not isinstance(metadata, str):
        raise GlmtrtError(
            f"chat message {n} ({role}) has non-text content or metadata",
            expected="str content and str metadata",
            fix="render images/tool results to text before building the prompt",
        )
    return role, metadata, content


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _atomic_copy(src: Path, dst: Path) -> None:
    if src.resolve() == dst.resolve():
        return
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
