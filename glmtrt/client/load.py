"""Load generation for `glmtrt bench`: one load level (a concurrency or a request rate) over a dataset.

- concurrency N: N workers, each sends its next conversation as soon as the previous one ends;
- request rate R/s: conversations start at arrival times with constant, Poisson (exponential gaps)
  or gamma gaps (shape = `burstiness`; 1 is Poisson, < 1 burstier), optionally capped at
  `max_concurrency` in flight (a capped request waits; its record keeps the scheduled time);
- `ramp_up` s spreads the N workers' first sends (a burst of N simultaneous arrivals otherwise
  queues in preprocessing and shows up as TTFT);
- `num_requests` conversations, or as many as start within `duration` s (in-flight ones finish);
- `warmup` requests first, at the same concurrency, not recorded;
- `stop` (an asyncio.Event, set by Ctrl-C) ends the level at once: in-flight requests are cancelled
  and recorded with an error; a dead server (a failed request, then `ready()` false) ends it too.

A multi-turn conversation's turns are sent one after another, each with the model's own earlier
answers as history; every turn is one RequestRecord.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from glmtrt.client.datasets import Item
from glmtrt.client.metrics import RequestRecord
from glmtrt.errors import GlmtrtError

log = logging.getLogger(__name__)
ARRIVALS = ("constant", "poisson", "gamma")


@dataclass
class LoadSpec:
    """One load level."""

    concurrency: int | None = None      #: closed loop with this many workers
    rate: float | None = None           #: open loop: conversations started per second
    arrival: str = "poisson"
    burstiness: float = 1.0
    max_concurrency: int | None = None  #: cap on in-flight conversations in rate mode
    num_requests: int | None = None
    duration: float | None = None
    warmup: int = 0
    seed: int = 0
    ramp_up: float = 0.0                #: concurrency mode: start worker k at k * ramp_up / N s

    @property
    def label(self) -> str:
        """Output folder name: c{N} or r{RATE}."""
        if self.concurrency is not None:
            return f"c{self.concurrency}"
        return f"r{self.rate:g}"


def arrival_gaps(spec: LoadSpec, n: int) -> np.ndarray:
    """n gaps (s) between conversation starts for rate mode."""
    rng = np.random.default_rng(spec.seed)
    mean = 1.0 / spec.rate
    if spec.arrival == "constant":
        return np.full(n, mean)
    if spec.arrival == "poisson":
        return rng.exponential(mean, size=n)
    if spec.arrival == "gamma":
        return rng.gamma(spec.burstiness, mean / spec.burstiness, size=n)
    raise GlmtrtError(f"arrival {spec.arrival!r}", expected=" | ".join(ARRIVALS))


class Runner:
    """Sends the requests of one level and collects their records."""

    def __init__(self, client, *, sampling: dict, tok=None, stop: asyncio.Event | None = None,
                 on_done: Callable[[RequestRecord], None] | None = None, request_timeout: float | None = None,
                 images: Sequence[bytes] | None = None, stage_probe: Callable | None = None):
        self.client = client
        self.sampling = dict(sampling)
        self.tok = tok
        self.stop = stop or asyncio.Event()
        self.on_done = on_done
        self.request_timeout = request_timeout
        self.images = list(images or [])     # sent with every request
        self.stage_probe = stage_probe       # async () -> statistics snapshot, around each recorded request
        self.records: list[RequestRecord] = []
        self.aborted: str | None = None
        self._seq = itertools.count()

    def _input_tokens(self, item: Item, turn: int, messages: list[dict]) -> int | None:
        if item.input_tokens and turn < len(item.input_tokens) and item.input_tokens[turn] is not None:
            return item.input_tokens[turn]
        if self.tok is None:
            return None
        if item.chat:
            return len(self.tok.build_chat_ids(messages))
        return len(self.tok.encode(messages[-1]["content"]))

    async def _request(self, item: Item, turn: int, history: list[dict], record: bool,
                       scheduled: float | None) -> RequestRecord:
        text = item.turns[turn]
        messages = history + [{"role": "user", "content": text}]
        # unique across levels and runs: the ensemble's postprocessing keys its detokenizer on the id
        rid = f"{item.id}-{next(self._seq)}-{uuid.uuid4().hex[:12]}"
        rec = RequestRecord(id=rid, t_send=0.0, prompt=text if not history else None,
                            messages=messages if history else None, conversation=item.id, turn=turn,
                            max_tokens=item.max_tokens, images=len(self.images))
        if record:
            self.records.append(rec)
        kwargs = dict(self.sampling, max_tokens=item.max_tokens, request_id=rid)
        if item.min_tokens is not None:
            kwargs["min_tokens"] = item.min_tokens
        if self.request_timeout is not None:
            kwargs["timeout"] = self.request_timeout
        if self.images:
            kwargs["images"] = self.images
        before = await self.stage_probe() if (self.stage_probe is not None and record) else None
        if history:
            gen = self.client.stream(messages=messages, **kwargs)
        else:
            gen = self.client.stream(text, chat=item.chat, **kwargs)
        rec.t_send = time.perf_counter()
        if scheduled is not None:
            rec.scheduled_delay_s = rec.t_send - scheduled
        try:
            async with contextlib.aclosing(gen):
                async for ch in gen:
                    rec.chunk_times.append(ch.time)
                    rec.chunk_texts.append(ch.text)
                    if ch.log_probs:
                        rec.log_probs = (rec.log_probs or []) + list(ch.log_probs)
                    if ch.parameters:
                        rec.server_info = {**(rec.server_info or {}), **ch.parameters}
                    if ch.top_log_probs:
                        rec.top_log_probs = (rec.top_log_probs or []) + list(ch.top_log_probs)
                    if ch.final:
                        rec.finish_reason = ch.finish_reason
                        rec.server_output_tokens = ch.num_tokens
        except GlmtrtError as exc:
            rec.error = str(exc).splitlines()[0]
        except asyncio.CancelledError:
            rec.error = "cancelled: the run was interrupted"
            raise
        finally:
            self._count(rec, item, turn, messages, record)
        if before is not None and rec.ok:
            from glmtrt.client.server_side import stage_breakdown

            rec.stages = stage_breakdown(before, await self.stage_probe())
        if rec.error and record and not self.stop.is_set() and not await self.client.ready():
            self.aborted = f"server unavailable after request {rid}: {rec.error}"
            log.warning("%s; ending the run", self.aborted)
            self.stop.set()
        return rec

    def _count(self, rec: RequestRecord, item: Item, turn: int, messages: list[dict], record: bool) -> None:
        try:
            rec.input_tokens = self._input_tokens(item, turn, messages)
        except GlmtrtError:
            rec.input_tokens = None
        if rec.chunk_times:
            rec.output_tokens = (len(self.tok.encode(rec.text)) if self.tok is not None
                                 else sum(1 for t in rec.chunk_texts if t))
        if self.on_done is not None and record:
            self.on_done(rec)

    async def _conversation(self, item: Item, record: bool = True, scheduled: float | None = None) -> None:
        history: list[dict] = []
        for turn in range(len(item.turns)):
            if self.stop.is_set():
                return
            rec = await self._request(item, turn, history, record, scheduled if turn == 0 else None)
            if rec.error:
                return
            history = history + [{"role": "user", "content": item.turns[turn]},
                                 {"role": "assistant", "content": rec.text}]

    async def warmup(self, items: Sequence[Item], n: int, width: int) -> None:
        """`n` unrecorded single requests, `width` at a time."""
        if n <= 0 or not items:
            return
        sem = asyncio.Semaphore(max(1, width))

        async def one(item):
            async with sem:
                await self._request(Item(id=f"warmup-{item.id}", turns=item.turns[:1], max_tokens=item.max_tokens,
                                         min_tokens=item.min_tokens, chat=item.chat), 0, [], False, None)

        await asyncio.gather(*[one(items[i % len(items)]) for i in range(n)])

    async def _until_stopped(self, tasks: list[asyncio.Task]) -> None:
        """Wait for `tasks`; when `stop` is set, cancel what is still running."""
        if not tasks:
            return
        stopper = asyncio.create_task(self.stop.wait())
        pending = set(tasks)
        while pending and not self.stop.is_set():
            done, pending = await asyncio.wait(pending | {stopper}, return_when=asyncio.FIRST_COMPLETED)
            pending.discard(stopper)
            for t in done:
                if t is not stopper and not t.cancelled() and t.exception() is not None:
                    raise t.exception()
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        stopper.cancel()

    def _schedule(self, items: Sequence[Item], spec: LoadSpec):
        """Items to send: `num_requests` of them (cycled), or endless for `duration`."""
        if spec.num_requests is not None:
            return [items[i % len(items)] for i in range(spec.num_requests)]
        return itertools.cycle(items)

    async def run(self, items: Sequence[Item], spec: LoadSpec) -> list[RequestRecord]:
        """Run the level; returns the records (partial when stopped)."""
        if not items:
            raise GlmtrtError("the dataset is empty")
        width = spec.concurrency or spec.max_concurrency or 8
        await self.warmup(items, spec.warmup, width)
        deadline = time.perf_counter() + spec.duration if spec.duration else None
        queue = iter(self._schedule(items, spec))
        if spec.concurrency is not None:
            async def worker(k: int):
                if spec.ramp_up:
                    await asyncio.sleep(k * spec.ramp_up / spec.concurrency)
                for item in queue:
                    if self.stop.is_set() or (deadline and time.perf_counter() >= deadline):
                        return
                    await self._conversation(item)

            await self._until_stopped([asyncio.create_task(worker(k)) for k in range(spec.concurrency)])
            return self.records
        # request-rate mode
        sem = asyncio.Semaphore(spec.max_concurrency) if spec.max_concurrency else None
        tasks: list[asyncio.Task] = []

        async def capped(item, scheduled):
            if sem is None:
                return await self._conversation(item, scheduled=scheduled)
            async with sem:
                await self._conversation(item, scheduled=scheduled)

        async def launcher():
            gaps = arrival_gaps(spec, spec.num_requests or 1_000_000)
            t = time.perf_counter()
            for item, gap in zip(queue, gaps):
                t += float(gap) if tasks else 0.0
                if deadline and t >= deadline:
                    return
                await asyncio.sleep(max(0.0, t - time.perf_counter()))
                if self.stop.is_set():
                    return
                tasks.append(asyncio.create_task(capped(item, t)))

        launch = asyncio.create_task(launcher())
        await self._until_stopped([launch])
        await self._until_stopped(list(tasks))
        return self.records
