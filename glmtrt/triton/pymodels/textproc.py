"""Pure text <-> ids logic shared by the preprocessing, postprocessing and BLS models.

`prepare()` turns one request's text and options into engine inputs; `DetokenizerCache` keeps
per-request streaming detokenizers (UTF-8 safe, see glmtrt.tokenizer.stream) keyed on the
request id, bounded in size and idle time.
"""
from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from glmtrt.triton.pymodels.common import RequestError


@dataclass
class Prepared:
    """Engine inputs of one request (python lists; the models turn them into tensors)."""

    input_ids: list[int]
    output_len: int
    end_id: int
    pad_id: int
    stop_words: list[list[int]] = field(default_factory=list)
    bad_words: list[list[int]] = field(default_factory=list)


def parse_messages(text: str) -> list[dict]:
    """Earlier chat turns from the `messages` request parameter (JSON list of role/content)."""
    try:
        msgs = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RequestError(f"request parameter messages is not JSON: {exc}") from exc
    if not isinstance(msgs, list) or not all(isinstance(m, dict) for m in msgs):
        raise RequestError('request parameter messages must be a JSON list of {"role": ..., "content": ...}')
    return msgs


def prompt_ids(tok, text: str, *, chat: bool, messages: str | None, add_special_tokens: bool) -> list[int]:
    """Prompt ids: the chat template (history + `text` as the new user turn) or plain text.

    Plain text gets the `[gMASK]` sop prefix when `add_special_tokens` (what the HF ChatGLM
    tokenizers do with add_special_tokens=True).
    """
    from glmtrt.errors import GlmtrtError

    if chat or messages is not None:
        conv = parse_messages(messages) if messages is not None else []
        if text:
            conv.append({"role": "user", "content": text})
        if not conv:
            raise RequestError("text_input is empty and there are no messages: nothing to answer")
        try:
            return tok.build_chat_ids(conv)
        except GlmtrtError as exc:
            raise RequestError(f"bad chat messages: {exc}") from exc
    if not text:
        raise RequestError("text_input is empty: give a prompt")
    ids = tok.encode(text)
    return (list(tok.prefix_ids) if add_special_tokens else []) + ids


def words_to_ids(tok, words: list[str] | None) -> list[list[int]]:
    """Stop/bad word strings to id lists; a special token's text (e.g. "<|user|>") is its id."""
    out = []
    for w in words or []:
        if not w:
            continue
        if w in tok.special_tokens:
            out.append([tok.special_tokens[w]])
        else:
            ids = tok.encode(w)
            if ids:
                out.append(ids)
    return out


def default_stop_words(tok, end_id: int) -> list[list[int]]:
    """The model's stop tokens other than end_id (ChatGLM3/GLM-4: <|user|>, <|observation|>)."""
    return [[i] for i in tok.stop_ids if i != end_id]


def prepare(tok, *, text: str, max_tokens: int | None, stop_words: list[str] | None = None,
            bad_words: list[str] | None = None, end_id: int | None = None, pad_id: int | None = None,
            chat: bool = False, messages: str | None = None, add_special_tokens: bool = True,
            max_input_len: int | None = None) -> Prepared:
    """Validate one request and build its engine inputs.

    end_id / pad_id default to the tokenizer's; the model's stop tokens are always active and
    the request's stop words are added to them.
    """
    if max_tokens is None:
        raise RequestError("max_tokens is required")
    if int(max_tokens) < 1:
        raise RequestError(f"max_tokens={max_tokens}: must be >= 1")
    ids = prompt_ids(tok, text, chat=chat, messages=messages, add_special_tokens=add_special_tokens)
    if max_input_len is not None and len(ids) > max_input_len:
        raise RequestError(f"prompt has {len(ids)} tokens, over max_input_len={max_input_len} of this model; "
                           "shorten the prompt")
    end = tok.eos_id if end_id is None else int(end_id)
    pad = tok.pad_id if pad_id is None else int(pad_id)
    stops = default_stop_words(tok, end)
    for w in words_to_ids(tok, stop_words):
        if w not in stops:
            stops.append(w)
    return Prepared(input_ids=ids, output_len=int(max_tokens), end_id=end, pad_id=pad,
                    stop_words=stops, bad_words=words_to_ids(tok, bad_words))


class DetokenizerCache:
    """Per-request streaming detokenizers, keyed on (request id, batch, beam).

    Needed by the ensemble's postprocessing step, which sees only each response's new tokens
    and never the final flag: an entry lives until `release()`, until it has been idle
    `ttl_s` seconds, or until `max_entries` newer entries push it out (LRU). Thread safe.
    """

    def __init__(self, tokenizer, *, skip_special_tokens: bool = True, max_entries: int = 1024,
                 ttl_s: float = 600.0, clock=time.monotonic):
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def push(self, key, ids) -> tuple[str, str]:
        """Feed new ids of `key`; returns (new text, all text so far)."""
        from glmtrt.tokenizer import IncrementalDetokenizer

        now = self._clock()
        with self._lock:
            self._expire(now)
            entry = self._entries.pop(key, None)
            if entry is None:
                entry = [IncrementalDetokenizer(self.tokenizer, skip_special_tokens=self.skip_special_tokens), "", now]
            self._entries[key] = entry
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        delta = entry[0].push([int(i) for i in ids])
        entry[1] += delta
        entry[2] = now
        return delta, entry[1]

    def release(self, key) -> str:
        """Forget `key`; returns what its detokenizer still held (flushed)."""
        with self._lock:
            entry = self._entries.pop(key, None)
        return "" if entry is None else entry[0].flush()

    def _expire(self, now: float) -> None:
        while self._entries:
            key, entry = next(iter(self._entries.items()))
            if now - entry[2] < self.ttl_s:
                break
            self._entries.popitem(last=False)
