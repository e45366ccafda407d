"""The web chat's connection to Triton: one per Streamlit server process (`st.cache_resource`).

Streamlit runs each browser session's script in its own thread; the asyncio gRPC client
(glmtrt.api.backend.TritonBackend, shared with the OpenAI endpoint) lives on one event loop in
a daemon thread here, and sessions call it through `run_coroutine_threadsafe`. Streams are
plain generators for `st.write_stream`: text arrives in complete UTF-8 characters (the
server's detokenizer never splits one) and closing the generator (a rerun, Stop) cancels the
Triton request.
"""
from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator

from glmtrt.api.backend import BackendError, Sampling, TritonBackend

#: The Triton models a glmtrt repository offers for chat (identical client tensors).
CHAT_MODELS = ("ensemble", "tensorrt_llm_bls")
IDLE_SECONDS = 30 * 60


@dataclass
class AnswerStats:
    """Timing of one answer: time to first text, tokens (engine count) and decode speed."""

    ttft_s: float | None = None
    total_s: float = 0.0
    tokens: int = 0

    @property
    def tokens_per_s(self) -> float | None:
        gen = self.total_s - (self.ttft_s or 0.0)
        return self.tokens / gen if self.tokens > 1 and gen > 0 else None

    def caption(self) -> str:
        ttft = f"{self.ttft_s * 1000:.0f} ms" if self.ttft_s is not None else "-"
        tps = f"{self.tokens_per_s:.1f} tok/s" if self.tokens_per_s is not None else "- tok/s"
        return f"TTFT {ttft} · {tps} · {self.tokens} tokens"


@dataclass
class SessionBook:
    """Last activity per browser session and a reference to its history list, for idle clearing."""

    entries: dict[str, tuple[float, list]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def touch(self, session_id: str, history: list, now: float | None = None) -> None:
        with self.lock:
            self.entries[session_id] = (time.time() if now is None else now, history)

    def sweep(self, idle_s: float = IDLE_SECONDS, now: float | None = None) -> int:
        """Empty the histories of sessions idle longer than `idle_s`; returns how many."""
        now = time.time() if now is None else now
        with self.lock:
            stale = [k for k, (t, _) in self.entries.items() if now - t > idle_s]
            for k in stale:
                self.entries.pop(k)[1].clear()
        return len(stale)


class ChatService:
    """Triton access for the web chat (one per server process)."""

    def __init__(self, url: str, *, metrics_url: str | None = None, timeout: float = 300.0):
        self.url = url
        self.metrics_url = metrics_url
        self.timeout = timeout
        self.backend = TritonBackend(url, timeout=timeout)
        self.sessions = SessionBook()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="glmtrt-ui-grpc", daemon=True)
        self._thread.start()

    def _call(self, coro, timeout: float | None = None):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout or self.timeout)

    def check(self, model: str) -> tuple[bool, str]:
        """(ready, why) for the startup panel."""
        try:
            return self._call(self.backend.ready(model), timeout=15)
        except Exception as exc:  # timeout of the check itself
            return False, f"Triton at {self.url} did not answer ({type(exc).__name__})"

    def max_input_len(self) -> int | None:
        return self._call(self.backend.max_input_len(), timeout=15)

    def count_tokens(self, messages: list[dict]) -> int:
        """Prompt tokens of `messages` under the server's chat template (preprocessing model)."""
        return self._call(self.backend.count_prompt_tokens("", list(messages)))

    def facts(self):
        """Live server facts (glmtrt.ui.facts); None when no metrics URL is known."""
        from glmtrt.ui.facts import fetch_facts

        return fetch_facts(self.metrics_url) if self.metrics_url else None

    def stream(self, messages: list[dict], sampling: Sampling, model: str, stats: AnswerStats,
               reasoning: list[str] | None = None) -> Iterator[str]:
        """Yield the answer's text as it streams; fills `stats`. Raises BackendError on failure.

        With a `reasoning` list, a `<think>...</think>` part (GLM-4.1V / AutoGLM) is collected
        there instead of being yielded (glmtrt.api.textstream.ReasoningSplitter).
        """
        from glmtrt.api.textstream import ReasoningSplitter

        split = ReasoningSplitter() if reasoning is not None else None
        agen = self.backend.stream("", list(messages), sampling, model=model)
        t0 = time.perf_counter()
        try:
            while True:
                try:
                    chunk = self._call(agen.__anext__())
                except StopAsyncIteration:
                    return
                stats.tokens += chunk.tokens
                text = chunk.text
                if split is not None:
                    r, text = split.push(text)
                    if chunk.final:
                        r2, c2 = split.flush()
                        r, text = r + r2, text + c2
                    reasoning.append(r)
                if chunk.text and stats.ttft_s is None:
                    stats.ttft_s = time.perf_counter() - t0
                if text:
                    yield text
                stats.total_s = time.perf_counter() - t0
                if chunk.final:
                    return
        finally:
            stats.total_s = time.perf_counter() - t0
            try:
                self._call(agen.aclose(), timeout=10)
            except Exception:  # the loop is gone at interpreter exit
                pass


__all__ = ["AnswerStats", "BackendError", "CHAT_MODELS", "ChatService", "IDLE_SECONDS", "SessionBook"]
