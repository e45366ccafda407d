"""In-flight batching for the CPU reference engine: one thread owns the model and every sender.

Like TensorRT-LLM's batch manager, the loop keeps up to `max_batch` sequences active: between
two decoding steps it admits waiting requests (prefill, one forward per new prompt), then advances
all active sequences with ONE batched forward (`ReferenceModel.decode`); a finished or cancelled
sequence leaves at once. Each sequence keeps its own KV cache and sampling state
(`generation.Sequence`), and each row of the batched forward is bit-identical to decoding that
sequence alone, so a greedy answer does not depend on what else is in flight.

All calls into the python backend's response API (send, is_cancelled) happen on ONE thread,
the outbox (`_Outbox`): the loop computes, the outbox sends, in order, so compute and the
per-response IPC round trip overlap while no two threads ever call the stub's API at once;
`execute` only parses and enqueues. Cancellation is polled every CANCEL_EVERY tokens (each
poll is an IPC round trip). Pacing mode (`pace_ttft`, `pace_itl` seconds): token i
of a request is emitted at arrival + pace_ttft + i * pace_itl, on a schedule: a token computed
early waits (its sequence sits out the batched steps meanwhile), so the timing holds under load
as long as the compute fits in the interval.
If the loop itself fails, `error` holds the cause; every waiting and later request gets it.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from glmtrt.triton.pymodels.generation import GenRequest, Sequence, Step

log = logging.getLogger(__name__)
CANCEL_EVERY = 8  # tokens between two is_cancelled() polls of a streaming request


@dataclass
class Job:
    """One request in the loop. The callbacks run on the outbox thread, in order.

    on_step(job, step): a token to emit (now due); on_done(job, exc): the request ended
    (exc None) or failed; cancelled(): whether the client gave up (may be None).
    """

    req: GenRequest
    on_step: Callable[["Job", Step], None]
    on_done: Callable[["Job", BaseException | None], None]
    cancelled: Callable[[], bool] | None = None
    arrived: float = field(default_factory=time.monotonic)
    steps: list[Step] = field(default_factory=list)
    context: Any = None
    seq: Sequence | None = None
    pending: Step | None = None     # computed, waiting for its due time (pacing)
    emitted: int = 0
    stop: bool = False              # set by the outbox: cancelled, or its sender failed
    failure: BaseException | None = None
    finished: bool = False
    sent: int = 0                   # responses sent (outbox thread only)


class _Outbox:
    """The one thread that runs every callback (= every call into the stub's response API), in order."""

    def __init__(self, name: str):
        import queue

        self._q: "queue.SimpleQueue" = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def step(self, job: Job, step: Step) -> None:
        self._q.put((self._send_step, job, step))

    def done(self, job: Job, exc: BaseException | None) -> None:
        self._q.put((self._send_done, job, exc))

    def call(self, fn: Callable[[], None]) -> None:
        self._q.put((lambda _j, _x: fn(), None, None))

    def close(self, timeout: float = 10.0) -> None:
        self._q.put(None)
        self._thread.join(timeout)

    @staticmethod
    def _send_step(job: Job, step: Step) -> None:
        if job.stop:
            return
        try:
            job.on_step(job, step)
            job.sent += 1
            if job.cancelled is not None and job.sent % CANCEL_EVERY == 1 and job.cancelled():
                job.stop = True
        except Exception as exc:  # this request's sender failed: the loop drops it
            log.warning("tensorrt_llm: sending a response failed: %s", exc)
            job.failure, job.stop = exc, True

    @staticmethod
    def _send_done(job: Job, exc: BaseException | None) -> None:
        try:
            job.on_done(job, exc)
        except Exception:  # a sender that cannot send any more: nothing left to tell
            log.exception("tensorrt_llm: could not finish a request")

    def _main(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            fn, job, arg = item
            try:
                fn(job, arg)
            except Exception:
                log.exception("tensorrt_llm: outbox call failed")


class EngineLoop:
    """The stand-in's scheduler thread (see module docstring)."""

    def __init__(self, model, *, max_batch: int, pace_ttft: float = 0.0, pace_itl: float = 0.0,
                 name: str = "reference-engine"):
        self.model = model
        self.max_batch = max(1, int(max_batch))
        self.pace_ttft, self.pace_itl = float(pace_ttft), float(pace_itl)
        self.error: BaseException | None = None
        self.steps = 0                    # batched decode steps run (for tests and logs)
        self.max_active = 0
        self._waiting: deque[Job] = deque()
        self._posted: deque[Callable[[], None]] = deque()
        self._active: list[Job] = []
        self._cv = threading.Condition()
        self._stop = False
        self._outbox = _Outbox(name + "-outbox")
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    # -- called from execute() / finalize() --------------------------------------------------
    def submit(self, job: Job) -> None:
        """Queue a request; raises RuntimeError when the loop is dead."""
        with self._cv:
            if self.error is not None or self._stop:
                raise RuntimeError(self.failure())
            self._waiting.append(job)
            self._cv.notify()

    def post(self, fn: Callable[[], None]) -> None:
        """Run fn() on the outbox thread (e.g. an error response), in order with the responses."""
        with self._cv:
            if self.error is not None or self._stop:
                raise RuntimeError(self.failure())
            self._posted.append(fn)
            self._cv.notify()

    def failure(self) -> str:
        """Why the loop no longer serves ('' while healthy)."""
        if self.error is not None:
            return f"the engine loop died: {type(self.error).__name__}: {self.error}"
        return "the engine loop is stopped" if self._stop else ""

    def alive(self) -> bool:
        return self._thread.is_alive() and self.error is None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after failing what is still queued or running."""
        with self._cv:
            self._stop = True
            self._cv.notify()
        self._thread.join(timeout)
        self._outbox.close(timeout)

    # -- the loop thread ---------------------------------------------------------------------
    def _due(self, job: Job) -> float:
        return job.arrived + self.pace_ttft + job.emitted * self.pace_itl

    def _finish(self, job: Job, exc: BaseException | None) -> None:
        if not job.finished:
            job.finished = True
            self._outbox.done(job, exc)

    def _main(self) -> None:
        try:
            while True:
                with self._cv:
                    while not (self._stop or self._waiting or self._active or self._posted):
                        self._cv.wait()
                    if self._stop:
                        break
                    room = self.max_batch - len(self._active)
                    new = [self._waiting.popleft() for _ in range(min(room, len(self._waiting)))]
                    posted, self._posted = list(self._posted), deque()
                for fn in posted:
                    self._outbox.call(fn)
                self._admit(new)
                wait = self._step()
                if wait > 0:
                    with self._cv:
                        if not self._posted and (not self._waiting or len(self._active) >= self.max_batch):
                            self._cv.wait(wait)
        except BaseException as exc:  # a bug in the loop: say so to everyone, stay dead
            log.exception("tensorrt_llm: the engine loop died")
            with self._cv:
                self.error = exc
        reason = RuntimeError(self.failure())
        with self._cv:
            left, self._active, self._waiting = self._active + list(self._waiting), [], deque()
        for job in left:
            self._finish(job, reason)

    def _admit(self, jobs: list[Job]) -> None:
        for job in jobs:
            try:
                job.seq = Sequence(self.model, job.req)
                job.seq.prefill()
            except Exception as exc:  # a request the model cannot run: that request fails
                self._finish(job, exc)
                continue
            self._active.append(job)
        self.max_active = max(self.max_active, len(self._active))

    def _step(self) -> float:
        """Select, emit what is due, run one batched decode. Returns seconds to wait (0 = none)."""
        now = time.monotonic()
        keep, advance = [], []
        next_due = None
        for job in self._active:
            try:
                if job.stop:                          # cancelled, or its sender failed (outbox)
                    self._finish(job, job.failure)
                    continue
                if job.pending is None:
                    job.pending = job.seq.select()
                    if job.pending is None:          # end_id
                        self._finish(job, None)
                        continue
                due = self._due(job)
                if due > now:
                    next_due = due if next_due is None else min(next_due, due)
                    keep.append(job)
                    continue
                step, job.pending = job.pending, None
                job.steps.append(step)
                job.emitted += 1
                self._outbox.step(job, step)
                if job.seq.done:
                    self._finish(job, None)
                    continue
            except Exception as exc:  # this request's sender or state failed: drop it alone
                log.exception("tensorrt_llm: request failed")
                self._finish(job, exc)
                continue
            keep.append(job)
            advance.append(job)
        self._active = keep
        if advance:
            rows = self.model.decode([j.steps[-1].token for j in advance], [j.seq.cache for j in advance])
            for job, row in zip(advance, rows):
                job.seq.row = row
            self.steps += 1
            return 0.0
        if next_due is None:
            return 0.0
        return max(0.0, next_due - time.monotonic())
