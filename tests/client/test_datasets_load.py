"""Datasets (exact synthetic lengths, built-in set, ShareGPT, multi-turn) and the load runner on a fake client."""
from __future__ import annotations

import asyncio
import json
import time

import numpy as np
import pytest

from glmtrt.client.aio import Chunk
from glmtrt.client.datasets import builtin_prompts, exact_length_text, load_dataset
from glmtrt.client.load import LoadSpec, Runner, arrival_gaps
from glmtrt.errors import GlmtrtError


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    from glmtrt.tokenizer import load_tokenizer
    from glmtrt.tokenizer.tiny import make_tiny_chatglm3_tokenizer

    return load_tokenizer(make_tiny_chatglm3_tokenizer(tmp_path_factory.mktemp("tok")))


def test_synthetic_lengths_are_exact(tok):
    rng = np.random.default_rng(0)
    for n in (1, 7, 32, 128):
        assert len(tok.encode(exact_length_text(tok, n, rng))) == n
    items = load_dataset("synthetic", tok=tok, count=6, input_tokens=20, input_std=5, output_tokens=9, seed=3)
    assert len(items) == 6 and all(len(tok.encode(i.turns[0])) == i.input_tokens[0] for i in items)
    assert len({i.input_tokens[0] for i in items}) > 1 and all(i.max_tokens == i.min_tokens == 9 for i in items)
    assert not items[0].chat
    again = load_dataset("synthetic", tok=tok, count=6, input_tokens=20, input_std=5, output_tokens=9, seed=3)
    assert [i.turns for i in again] == [i.turns for i in items]  # --seed reproduces the prompts
    with pytest.raises(GlmtrtError, match="tokenizer"):
        load_dataset("synthetic", tok=None, count=1)


def test_builtin_set_is_bilingual():
    data = builtin_prompts()
    langs = {p["lang"] for p in data["prompts"]}
    assert {"zh", "en", "mix"} <= langs and len(data["prompts"]) >= 30
    assert len({p["id"] for p in data["prompts"]}) == len(data["prompts"])
    items = load_dataset("builtin-zh-en", max_tokens=32)
    assert items[0].turns == ["用三句话介绍一下长江。"] and items[0].max_tokens == 32
    conv = load_dataset("builtin-multiturn")
    assert all(len(i.turns) >= 3 for i in conv)


def test_sharegpt_and_errors(tmp_path, tok):
    rows = [{"id": "a", "conversations": [{"from": "human", "value": "你好"}, {"from": "gpt", "value": "Hello there friend"},
                                          {"from": "human", "value": "再见"}]},
            {"conversations": [{"from": "gpt", "value": "no human"}]}]
    p = tmp_path / "sg.jsonl"
    p.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    items = load_dataset(str(p), tok=tok)
    assert [i.turns for i in items] == [["你好"]] and items[0].max_tokens == len(tok.encode("Hello there friend"))
    assert load_dataset(str(p), tok=tok, multi_turn=True)[0].turns == ["你好", "再见"]
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(GlmtrtError, match="not JSON"):
        load_dataset(str(tmp_path / "bad.json"))
    with pytest.raises(GlmtrtError, match="built-in"):
        load_dataset("no-such-dataset")


def test_arrival_processes():
    n = 20000
    for arrival in ("constant", "poisson", "gamma"):
        g = arrival_gaps(LoadSpec(rate=4.0, arrival=arrival, burstiness=0.5, seed=1), n)
        assert g.mean() == pytest.approx(0.25, rel=0.03)
    assert arrival_gaps(LoadSpec(rate=4.0, arrival="constant"), 3).tolist() == [0.25] * 3
    # Poisson: coefficient of variation 1; gamma shape 0.5: sqrt(2)
    assert np.std(arrival_gaps(LoadSpec(rate=4, arrival="poisson", seed=2), n)) * 4 == pytest.approx(1, rel=0.05)
    g = arrival_gaps(LoadSpec(rate=4, arrival="gamma", burstiness=0.5, seed=2), n)
    assert np.std(g) / g.mean() == pytest.approx(2 ** 0.5, rel=0.05)


class FakeClient:
    """Streams `n` chunks `itl` s apart after `ttft` s; tracks concurrency; can die."""

    def __init__(self, ttft=0.02, itl=0.01, n=4, fail_after=None):
        self.ttft, self.itl, self.n, self.fail_after = ttft, itl, n, fail_after
        self.active = self.peak = self.calls = 0
        self.alive = True
        self.seen = []

    async def ready(self):
        return self.alive

    async def stream(self, prompt=None, *, messages=None, chat=True, max_tokens=16, request_id=None, **kw):
        self.calls += 1
        self.seen.append((prompt, messages, request_id))
        if self.fail_after is not None and self.calls > self.fail_after:
            self.alive = False
            raise GlmtrtError("connection refused")
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await asyncio.sleep(self.ttft)
            for i in range(self.n):
                if i:
                    await asyncio.sleep(self.itl)
                yield Chunk(text=f"t{i}", time=time.perf_counter(), index=i)
            yield Chunk(text="", time=time.perf_counter(), index=self.n, final=True)
        finally:
            self.active -= 1


def test_runner_concurrency_warmup_and_multiturn():
    items = load_dataset("builtin-multiturn", max_tokens=8)
    client = FakeClient()
    runner = Runner(client, sampling={"temperature": 0.0})
    recs = asyncio.run(runner.run(items, LoadSpec(concurrency=2, num_requests=4, warmup=3)))
    turns = sum(len(i.turns) for i in items)
    assert len(recs) == turns and client.calls == turns + 3 and client.peak == 2
    assert all(r.ok and r.text == "t0t1t2t3" for r in recs)
    later = [r for r in recs if r.turn == 1]
    assert later and all(r.messages[-2] == {"role": "assistant", "content": "t0t1t2t3"} for r in later)
    assert len({rid for _, _, rid in client.seen}) == client.calls  # request ids never repeat


def test_runner_rate_mode_cap_and_duration():
    items = load_dataset("builtin-zh-en", max_tokens=8)
    client = FakeClient(ttft=0.05, itl=0.05, n=3)
    t0 = time.perf_counter()
    recs = asyncio.run(Runner(client, sampling={}).run(items, LoadSpec(rate=200.0, arrival="constant",
                                                                          max_concurrency=3, num_requests=12)))
    assert len(recs) == 12 and client.peak == 3 and all(r.ok for r in recs)
    assert max(r.scheduled_delay_s for r in recs) > 0.05  # capped requests waited
    client = FakeClient(ttft=0.01, itl=0.01, n=2)
    recs = asyncio.run(Runner(client, sampling={}).run(items, LoadSpec(concurrency=2, duration=0.5)))
    assert 10 < len(recs) and time.perf_counter() - t0 < 30


def test_runner_dead_server_and_interrupt():
    items = load_dataset("builtin-zh-en", max_tokens=8)
    client = FakeClient(fail_after=5)
    runner = Runner(client, sampling={})
    recs = asyncio.run(runner.run(items, LoadSpec(concurrency=1, num_requests=30)))
    assert runner.aborted and "connection refused" in runner.aborted
    assert sum(r.ok for r in recs) == 5 and recs[-1].error and len(recs) < 30

    async def interrupted():
        stop = asyncio.Event()
        r = Runner(FakeClient(ttft=0.01, itl=0.2, n=50), sampling={}, stop=stop)
        asyncio.get_running_loop().call_later(0.5, stop.set)
        return r, await r.run(items, LoadSpec(concurrency=4, num_requests=40))

    runner, recs = asyncio.run(interrupted())
    assert len(recs) == 4 and all(r.error and "interrupted" in r.error for r in recs)
    assert all(len(r.chunk_times) >= 2 for r in recs)  # partial chunks kept
