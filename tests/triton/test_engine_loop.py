"""The CPU stand-in's engine loop in-process (no Triton): in-flight batching, pacing, failure."""
from __future__ import annotations

import threading
import time

import pytest

from glmtrt.triton.pymodels.engine_loop import EngineLoop, Job
from glmtrt.triton.pymodels.generation import GenRequest, generate_tokens


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from glmtrt.convert.pipeline import convert_checkpoint
    from glmtrt.models.chatglm.tiny import make_tiny_checkpoint
    from glmtrt.reference import ReferenceModel

    work = tmp_path_factory.mktemp("loop")
    hf = make_tiny_checkpoint(work / "hf", seed=3, num_layers=2)
    return ReferenceModel.from_checkpoint(convert_checkpoint(hf, work / "ckpt", dtype="float32", progress=False))


def _run(loop, reqs, timeout=120):
    done = threading.Event()
    left = [len(reqs)]
    lock = threading.Lock()
    results = [None] * len(reqs)
    stamps = [[] for _ in reqs]

    def on_done(job, exc):
        results[job.context] = exc if exc is not None else [s.token for s in job.steps]
        with lock:
            left[0] -= 1
            if not left[0]:
                done.set()

    for i, r in enumerate(reqs):
        loop.submit(Job(r, on_step=lambda j, s: stamps[j.context].append(time.monotonic()), on_done=on_done,
                        context=i))
    assert done.wait(timeout)
    return results, stamps


def _reqs(n, tokens=12):
    return [GenRequest(input_ids=[3 + i, 9, 17 + 2 * i][: 1 + i % 3], max_new_tokens=tokens + i % 5,
                       temperature=1.0 if i % 2 else 0.0, top_k=0 if i % 2 == 0 else 30, seed=i) for i in range(n)]


def test_batched_loop_equals_each_request_alone(model):
    reqs = _reqs(12)
    alone = [[s.token for s in generate_tokens(model, r)] for r in _reqs(12)]
    loop = EngineLoop(model, max_batch=8)
    try:
        got, _ = _run(loop, reqs)
    finally:
        loop.stop()
    assert got == alone
    # in flight together: far fewer batched steps than tokens, never more than max_batch at once
    assert loop.max_active == 8
    assert loop.steps < sum(len(a) for a in alone) / 3


def test_pacing_is_a_schedule(model):
    ttft, itl = 0.25, 0.04
    loop = EngineLoop(model, max_batch=8, pace_ttft=ttft, pace_itl=itl)
    try:
        reqs = [GenRequest(input_ids=[5, 6, 7], max_new_tokens=10, min_tokens=10) for _ in range(6)]
        t0 = time.monotonic()
        got, stamps = _run(loop, reqs)
    finally:
        loop.stop()
    assert all(len(g) == 10 for g in got)
    for s in stamps:
        first = s[0] - t0
        gaps = [b - a for a, b in zip(s, s[1:])]
        assert ttft - 0.01 <= first <= ttft + 0.2
        # a schedule: token i is due at arrival + ttft + i * itl, so the total holds even if a gap slips
        assert s[-1] - s[0] == pytest.approx(9 * itl, abs=0.1)
        assert sorted(gaps)[len(gaps) // 2] == pytest.approx(itl, abs=0.02)


def test_dead_loop_fails_every_request_clearly(model):
    loop = EngineLoop(model, max_batch=4)

    def broken(*a, **k):
        raise MemoryError("simulated")

    loop.model = type("Broken", (), {"decode": broken, "new_cache": model.new_cache, "prefill": model.prefill,
                                     "vocab_size": model.vocab_size})()
    got, _ = _run(loop, _reqs(3))
    assert all(isinstance(g, RuntimeError) and "engine loop died: MemoryError: simulated" in str(g) for g in got)
    assert not loop.alive()
    with pytest.raises(RuntimeError, match="engine loop died"):
        loop.submit(Job(_reqs(1)[0], on_step=lambda j, s: None, on_done=lambda j, e: None))
    loop.stop()


def test_a_failing_sender_drops_only_its_request(model):
    loop = EngineLoop(model, max_batch=4)

    class Gone(Exception):
        pass

    results = {}
    done = threading.Semaphore(0)

    def on_step(job, step):
        if job.context == 0:
            raise Gone("client went away")

    def on_done(job, exc):
        results[job.context] = exc
        done.release()

    try:
        for i, r in enumerate(_reqs(3)):
            loop.submit(Job(r, on_step=on_step, on_done=on_done, context=i))
        for _ in range(3):
            assert done.acquire(timeout=60)
        assert isinstance(results[0], Gone) and results[1] is None and results[2] is None
        assert loop.alive()
    finally:
        loop.stop()
