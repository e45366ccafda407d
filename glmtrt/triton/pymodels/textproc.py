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
    #: the request's stop words as text (special tokens excluded), for `find_stop`
    stop_texts: list[str] = field(default_factory=list)


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


#: Text a word may follow, to find its mid-text tokenizations: the start of a text (SentencePiece
#: adds its dummy-prefix "▁" there), after a space, a Latin letter, a CJK character, a newline.
_CONTEXTS = ("", " ", "a", "中", "\n")
#: Tokenizations sent to the engine per word at most.
MAX_VARIANTS = 6


def word_variants(tok, word: str) -> list[list[int]]:
    """Token sequences `word` can appear as in generated text, canonical first.

    TensorRT-LLM matches stop/bad words as token-id sequences against the generated ids
    (tensorrt_llm/runtime `to_word_list_format`; the batch manager's stop criteria compare the
    last tokens of each sequence). `tok.encode(word)` alone is the word at the *start* of a text:
    with the ChatGLM3 SentencePiece tokenizer it begins with the dummy prefix "▁" ("，" becomes
    ["▁", "，"]), a sequence the model never produces mid-sentence. So the word is also encoded
    after each of `_CONTEXTS` (the context's own ids stripped when they are an unchanged prefix);
    every distinct sequence that decodes back to exactly the word (or to the word after a space,
    which BPE merges into the word's first token) is a variant. A word that BPE
    merges with the *following* text into one token still has no token sequence: the BLS model
    matches stop words on text as well (see `find_stop`).
    """
    out: list[list[int]] = []
    # BPE tokens often carry the space before a word (GLM-4: " Hello" is one token)
    forms = (word,) if word[:1].isspace() else (word, " " + word)
    for form in forms:
        for ctx in _CONTEXTS:
            head = tok.encode(ctx) if ctx else []
            ids = tok.encode(ctx + form)
            if ids[:len(head)] != head:
                continue
            rest = ids[len(head):]
            if rest and rest not in out and tok.decode(head + rest, skip_special_tokens=False) == \
                    tok.decode(head, skip_special_tokens=False) + form:
                out.append(rest)
    canonical = tok.encode(word)
    if canonical and canonical not in out:
        out.insert(0, canonical)
    return out[:MAX_VARIANTS]


def words_to_ids(tok, words: list[str] | None) -> list[list[int]]:
    """Stop/bad word strings to id lists (every variant of `word_variants`); a special token's
    text (e.g. "<|user|>") is its id."""
    out: list[list[int]] = []
    for w in words or []:
        if not w:
            continue
        variants = [[tok.special_tokens[w]]] if w in tok.special_tokens else word_variants(tok, w)
        out.extend(v for v in variants if v not in out)
    return out


def find_stop(text: str, stop_words: list[str] | None, start: int = 0) -> int | None:
    """End offset (just past it) of the first stop word in `text` that ends after `start`, or None.

    Text matching, used where the whole text is at hand (the BLS model): it also finds a stop
    word whose tokens are merged with its neighbours. The answer keeps the stop word, as the
    engine's token matching does.
    """
    best = None
    for w in stop_words or []:
        if not w:
            continue
        i = text.find(w, max(0, start - len(w) + 1))
        if i >= 0 and (best is None or i + len(w) < best):
            best = i + len(w)
    return best


def default_stop_words(tok, end_id: int) -> list[list[int]]:
    """The model's stop tokens other than end_id (ChatGLM3/GLM-4: <|user|>, <|observation|>)."""
    return [[i] for i in tok.stop_ids if i != end_id]


def prepare(tok, *, text: str, max_tokens: int | None, stop_words: list[str] | None = None,
            bad_words: list[str] | None = None, end_id: int | None = None, pad_id: int | None = None,
            chat: bool = False, messages: str | None = None, add_special_tokens: bool = True,
            max_input_len: int | None = None, prompt_builder=None) -> Prepared:
    """Validate one request and build its engine inputs.

    end_id / pad_id default to the tokenizer's; the model's stop tokens are always active and
    the request's stop words are added to them. `prompt_builder(tok, text, chat=, messages=,
    add_special_tokens=)` replaces `prompt_ids` (the multimodal models splice image slots in).
    """
    if max_tokens is None:
        raise RequestError("max_tokens is required")
    if int(max_tokens) < 1:
        raise RequestError(f"max_tokens={max_tokens}: must be >= 1")
    ids = (prompt_builder or prompt_ids)(tok, text, chat=chat, messages=messages, add_special_tokens=add_special_tokens)
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
                    stop_words=stops, bad_words=words_to_ids(tok, bad_words),
                    stop_texts=[w for w in stop_words or [] if w and w not in tok.special_tokens])


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
