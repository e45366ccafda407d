"""Streaming detokenization that never splits a character.

Guarantee: for any split of `ids` into pushes,
``"".join(d.push(part) for part in parts) + d.flush() == tokenizer.decode(ids)`` exactly
(same `skip_special_tokens`). `push` never returns half a character: bytes of an
incomplete UTF-8 sequence (SentencePiece byte-fallback pieces such as `<0xE4>`, tiktoken
tokens that end inside a character) wait until the character is complete. `push` returns
U+FFFD only where `decode` has one too: bytes that can no longer become valid UTF-8 (a
model that emits garbage). Bytes still incomplete at the very end come out of `flush()` as
U+FFFD (errors="replace"), exactly as `decode` renders them.
"""
from __future__ import annotations

import codecs
import operator
from typing import Iterable

from glmtrt.tokenizer.base import GLMTokenizer


class IncrementalDetokenizer:
    """Turns a stream of token ids into a stream of complete text pieces."""

    def __init__(self, tokenizer: GLMTokenizer, *, skip_special_tokens: bool = True):
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.reset()

    def reset(self) -> None:
        """Forget everything pushed so far (start a new sequence)."""
        self._at_start = True
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.num_ids = 0

    def push(self, ids: int | Iterable[int]) -> str:
        """Add one id or several; return the text they complete (possibly "")."""
        try:
            ids = [operator.index(ids)]  # type: ignore[arg-type]  # one id (int, numpy scalar)
        except TypeError:
            pass  # an iterable of ids
        out = []
        for i in ids:  # type: ignore[union-attr]
            b, self._at_start = self.tokenizer.piece_bytes(
                i, at_start=self._at_start, skip_special_tokens=self.skip_special_tokens
            )
            self.num_ids += 1
            if b:
                out.append(self._utf8.decode(b))
        return "".join(out)

    @property
    def pending_bytes(self) -> int:
        """How many bytes wait for the rest of their character."""
        return len(self._utf8.getstate()[0])

    def flush(self) -> str:
        """End of the sequence: return what is left (incomplete bytes as U+FFFD)."""
        text = self._utf8.decode(b"", final=True)
        self._utf8.reset()
        return text
