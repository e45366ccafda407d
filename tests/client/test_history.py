"""trim_history: newest turns that fit the engine's input limit, at most 20 turns."""
from __future__ import annotations

import pytest

from glmtrt.client.history import split_turns, trim_history
from glmtrt.errors import GlmtrtError


def conv(n, system=True):
    msgs = [{"role": "system", "content": "sys"}] if system else []
    for i in range(n):
        msgs += [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]
    return msgs + [{"role": "user", "content": "new"}]


def chars(msgs):
    """A stand-in chat template: 2 tokens per message + 1 per character."""
    return sum(2 + len(m["content"]) for m in msgs)


def test_fits_keeps_everything():
    msgs = conv(3)
    kept, dropped = trim_history(msgs, count_tokens=chars, max_input_tokens=10_000)
    assert kept == msgs and dropped == 0


def test_drops_oldest_turns_keeps_system_and_newest():
    msgs = conv(10)
    limit = chars(msgs) - 1
    kept, dropped = trim_history(msgs, count_tokens=chars, max_input_tokens=limit)
    assert kept[0]["role"] == "system" and kept[-1]["content"] == "new"
    assert chars(kept) <= limit and dropped == 1
    assert kept[1]["content"] == "q1"  # the oldest exchange went, whole
    # the largest suffix that fits: one more turn would not
    system, turns = split_turns(msgs)
    assert chars(system + [m for t in turns[-(len(turns) - dropped + 1):] for m in t]) > limit


def test_at_most_max_turns():
    msgs = conv(30)
    kept, dropped = trim_history(msgs, count_tokens=chars, max_input_tokens=10**9)
    _, turns = split_turns(kept)
    assert len(turns) == 20 and dropped == 11 and kept[-1]["content"] == "new"


def test_newest_alone_too_long_is_one_clear_error():
    msgs = conv(2) + []
    msgs[-1] = {"role": "user", "content": "x" * 500}
    with pytest.raises(GlmtrtError, match="input limit of 100 tokens"):
        trim_history(msgs, count_tokens=chars, max_input_tokens=100)


def test_counts_calls_are_logarithmic():
    calls = []
    msgs = conv(19)
    trim_history(msgs, count_tokens=lambda m: calls.append(1) or chars(m), max_input_tokens=chars(msgs) // 2)
    assert len(calls) <= 6


def test_no_system_and_roles_before_first_user():
    msgs = [{"role": "assistant", "content": "hello"}] + conv(2, system=False)
    system, turns = split_turns(msgs)
    assert system == [] and len(turns) == 4
    kept, dropped = trim_history(msgs, count_tokens=chars, max_input_tokens=10_000, max_turns=2)
    assert dropped == 2 and kept == msgs[-3:]
