"""Chat history that fits the engine: keep the newest turns whose prompt fits the input limit.

Used by `glmtrt chat` and by the Streamlit chat. Pure: the caller supplies `count_tokens`
(messages -> prompt token count, e.g. the model's chat template through the server's
preprocessing model, or a local tokenizer's `len(tok.build_chat_ids(messages))`).

Vocabulary: a *message* is one {"role", "content"} dict; a *turn* is one user message with the
messages that answer it (assistant / observation) up to the next user message. Leading system
messages are not a turn: they are always kept and count against the token limit.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

from glmtrt.errors import GlmtrtError

#: Turns a chat keeps at most (the Streamlit chat our users start from keeps 20).
MAX_TURNS = 20


def split_turns(messages: Sequence[Mapping]) -> tuple[list[Mapping], list[list[Mapping]]]:
    """(leading system messages, turns): each turn starts at a user message.

    Messages before the first user message that are not system messages form a turn of their own.
    """
    msgs = list(messages)
    i = 0
    while i < len(msgs) and msgs[i].get("role") == "system":
        i += 1
    system, turns = msgs[:i], []
    for m in msgs[i:]:
        if not turns or m.get("role") == "user":
            turns.append([m])
        else:
            turns[-1].append(m)
    return system, turns


def trim_history(turns: Sequence[Mapping], *, count_tokens: Callable[[list[Mapping]], int],
                 max_input_tokens: int, max_turns: int = MAX_TURNS) -> tuple[list[Mapping], int]:
    """The newest turns that fit: returns (kept messages, number of turns dropped).

    `turns` is the whole conversation as messages, oldest first, ending with the new user
    message. Kept are the leading system messages plus the longest run of most recent turns
    (at most `max_turns`) whose prompt has `count_tokens(kept) <= max_input_tokens`; the newest
    turn is always kept. `count_tokens` must grow with the number of messages (any chat template
    does); it is called O(log n) times. Raises GlmtrtError when the system messages plus the
    newest turn alone are over the limit (nothing can be dropped to make it fit).
    """
    if max_input_tokens < 1:
        raise ValueError(f"max_input_tokens={max_input_tokens}: must be >= 1")
    if max_turns < 1:
        raise ValueError(f"max_turns={max_turns}: must be >= 1")
    system, groups = split_turns(turns)
    if not groups:
        return list(system), 0

    def kept(k: int) -> list[Mapping]:
        return list(system) + [m for g in groups[len(groups) - k:] for m in g]

    n_min = count_tokens(kept(1))
    if n_min > max_input_tokens:
        raise GlmtrtError(f"the new message has {n_min} prompt tokens (with the system prompt), over this "
                          f"model's input limit of {max_input_tokens} tokens",
                          fix="send a shorter message (or a shorter --system prompt)")
    lo, hi = 1, min(len(groups), max_turns)   # lo fits; find the largest k <= hi that fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count_tokens(kept(mid)) <= max_input_tokens:
            lo = mid
        else:
            hi = mid - 1
    return kept(lo), len(groups) - lo
