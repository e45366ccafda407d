"""Pure text filters for the OpenAI endpoint: reasoning split and stop-string trimming.

Both work on a stream of text deltas and give the same result however the text is cut into
deltas (unit-tested against the whole-text result).

Reasoning (GLM-4.1V / AutoGLM answer `<think>...</think><answer>...</answer>`): split like
vLLM's reasoning parsers (vllm/reasoning/glm4_moe_reasoning_parser.py, deepseek_r1 style): text
between `<think>` and `</think>` is `reasoning_content`, everything after `</think>` is `content`,
the tags themselves appear in neither; an output without `<think>` is all content.
"""
from __future__ import annotations

from typing import Iterable, Sequence

THINK_START = "<think>"
THINK_END = "</think>"


def _held_prefix(text: str, marks: Sequence[str]) -> int:
    """Length of the longest tail of `text` that is a proper prefix of one of `marks`."""
    best = 0
    for mark in marks:
        for n in range(min(len(mark) - 1, len(text)), 0, -1):
            if text.endswith(mark[:n]):
                best = max(best, n)
                break
    return best


class ReasoningSplitter:
    """Feed text deltas; get (reasoning_delta, content_delta) pairs, tags removed.

    States: "start" (have not yet seen whether the output opens with `<think>`), "think",
    "content". Text that could be the beginning of a tag is held back until it is decided.
    """

    def __init__(self) -> None:
        self.state = "start"
        self.opened = False            # the output opened with <think>
        self._buf = ""

    def push(self, delta: str) -> tuple[str, str]:
        """Split one delta; returns (reasoning, content) text that is final."""
        self._buf += delta
        reasoning, content = [], []
        while self._buf:
            if self.state == "start":
                stripped = self._buf.lstrip()
                if stripped.startswith(THINK_START):
                    self._buf = stripped[len(THINK_START):]
                    self.state = "think"
                    self.opened = True
                elif THINK_START.startswith(stripped):
                    break                      # still could be "<think>"
                else:
                    self.state = "content"
            elif self.state == "think":
                i = self._buf.find(THINK_END)
                if i >= 0:
                    reasoning.append(self._buf[:i])
                    self._buf = self._buf[i + len(THINK_END):]
                    self.state = "content"
                    continue
                hold = _held_prefix(self._buf, [THINK_END])
                reasoning.append(self._buf[:len(self._buf) - hold])
                self._buf = self._buf[len(self._buf) - hold:]
                break
            else:
                content.append(self._buf)
                self._buf = ""
        return "".join(reasoning), "".join(content)

    def flush(self) -> tuple[str, str]:
        """The end of the stream: whatever is held back is final now."""
        buf, self._buf = self._buf, ""
        if self.state == "think":
            return buf, ""     # unterminated reasoning (cut by max_tokens) stays reasoning
        return "", buf


def split_reasoning(text: str) -> tuple[str | None, str]:
    """(reasoning_content or None, content) of a whole answer."""
    s = ReasoningSplitter()
    r1, c1 = s.push(text)
    r2, c2 = s.flush()
    return (r1 + r2 if s.opened else None), c1 + c2


class StopTrimmer:
    """Removes a trailing stop string (TensorRT-LLM keeps stop words in the output; OpenAI does not).

    The engine stops right after a stop word, so a stop string can only be at the very end:
    text that could be the start of one is held back until the next delta or the end.
    """

    def __init__(self, stops: Iterable[str] = ()) -> None:
        self.stops = [s for s in stops if s]
        self._buf = ""
        self.hit: str | None = None

    def push(self, delta: str) -> str:
        """Text that is certainly not part of a trailing stop string."""
        if not self.stops:
            return delta
        self._buf += delta
        for stop in self.stops:
            i = self._buf.find(stop)
            if i >= 0:
                self.hit = stop
                out, self._buf = self._buf[:i], ""
                self.stops = []        # the engine has stopped; nothing more is expected
                return out
        hold = _held_prefix(self._buf, self.stops)
        out, self._buf = self._buf[:len(self._buf) - hold], self._buf[len(self._buf) - hold:]
        return out

    def flush(self) -> str:
        """The end of the stream: held-back text was not a stop string after all."""
        buf, self._buf = self._buf, ""
        return buf
