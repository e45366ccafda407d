"""glmtrt bench --image: per-stage latency from (synthetic) Triton statistics and client timestamps, in the
summary, the terminal and glmtrt report; images on every request."""
from __future__ import annotations

import asyncio
import json
import time

import pytest
from click.testing import CliRunner

from glmtrt.cli import main
from glmtrt.client.aio import Chunk
from glmtrt.client.server_side import stage_breakdown
from glmtrt.errors import GlmtrtError
from tests.autoglm.conftest import make_screenshot

MS = 1_000_000


def _stats(models: dict) -> dict:
    """Triton statistics JSON (int64 as strings) from {model: {count, queue, compute_input, ...ns}}."""
    out = []
    for name, v in models.items():
        inf = {"success": {"count": str(v["count"]), "ns": "0"}, "fail": {"count": "0", "ns": "0"}}
        for k in ("queue", "compute_input", "compute_infer", "compute_output"):
            inf[k] = {"count": str(v["count"]), "ns": str(v[k])}
        out.append({"name": name, "version": "1", "inference_stats": inf})
    return {"model_stats": out}


class PipelineClient:
    """A fake Triton: request k costs preprocessing queue 1 ms, compute_input (k+1) ms, compute_infer
    10*(k+1) ms of its own plus the vision_encoder's 20*(k+1) ms it waits for, and streams 3 chunks;
    statistics() tells the truth so far; with `bls` the first response carries the BLS stage parameters."""

    def __init__(self, with_vision=True, bls=False):
        self.k, self.bls = 0, bls
        self.images_seen = []
        names = ["preprocessing", "tensorrt_llm"] + (["vision_encoder"] if with_vision else [])
        self.totals = {n: dict(count=0, queue=0, compute_input=0, compute_infer=0, compute_output=0) for n in names}

    async def ready(self, model=None):
        return True

    async def server_metadata(self):
        return {"name": "fake", "version": "0"}

    async def model_config(self, name=None):
        raise GlmtrtError("no such model")

    async def statistics(self, name=""):
        return _stats(self.totals)

    async def close(self):
        pass

    async def stream(self, prompt=None, *, images=None, **kw):
        k = self.k
        self.k += 1
        self.images_seen.append(images)
        await asyncio.sleep(0.01)
        pre = self.totals["preprocessing"]
        pre["count"] += 1
        pre["queue"] += 1 * MS
        pre["compute_input"] += (k + 1) * MS
        pre["compute_infer"] += 10 * (k + 1) * MS
        if "vision_encoder" in self.totals and images:
            v = self.totals["vision_encoder"]
            v["count"] += 1
            v["compute_infer"] += 20 * (k + 1) * MS
            pre["compute_infer"] += 20 * (k + 1) * MS     # preprocessing calls the encoder inside its execute (BLS)
        params = {"image_decode_us": 3000 * (k + 1), "vision_encoder_us": 7000 * (k + 1), "image_tokens": 4} if self.bls else None
        for i in range(3):
            yield Chunk(text=f"好{i}", time=time.perf_counter(), index=i, parameters=params if i == 0 else None)
        yield Chunk(text="", time=time.perf_counter(), index=3, final=True)


def test_stage_breakdown_from_snapshots():
    before = _stats({"preprocessing": dict(count=2, queue=2 * MS, compute_input=2 * MS, compute_infer=20 * MS,
                                           compute_output=0), "vision_encoder": dict(count=2, queue=0, compute_input=0,
                                                                                      compute_infer=40 * MS, compute_output=0)})
    # 2 requests: preprocessing's own 40 ms + the 63 ms of vision_encoder it waited for (BLS inside its execute)
    after = _stats({"preprocessing": dict(count=4, queue=4 * MS, compute_input=6 * MS, compute_infer=123 * MS,
                                          compute_output=2 * MS), "vision_encoder": dict(count=3, queue=MS, compute_input=MS,
                                                                                         compute_infer=100 * MS, compute_output=MS)})
    b = stage_breakdown(before, after)
    assert b == {"upload_decode": 3.0, "preprocessing": 21.0, "vision_encoder": 31.5, "requests": 2}
    text_only = stage_breakdown(before, _stats({"preprocessing": dict(count=3, queue=3 * MS, compute_input=3 * MS,
                                                                     compute_infer=30 * MS, compute_output=0)}))
    assert text_only["vision_encoder"] is None and text_only["preprocessing"] == 10.0
    assert stage_breakdown(after, after)["requests"] == 0


@pytest.fixture
def fake(monkeypatch):
    client = PipelineClient()
    monkeypatch.setattr("glmtrt.client.bench.make_client", lambda opts: client)
    return client


def test_bench_image_per_request_stages_and_report(tmp_path, fake):
    shot = make_screenshot(tmp_path / "shot.png", (108, 240))
    out = tmp_path / "b1"
    r = CliRunner().invoke(main, ["bench", "127.0.0.1:1", "--out", str(out), "--image", str(shot), "--num-requests", "5",
                                  "--warmup", "1", "--concurrency", "1", "--metrics-url", "", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert all(im == [shot.read_bytes()] for im in fake.images_seen) and len(fake.images_seen) == 6
    lv = json.loads((out / "c1" / "summary.json").read_text("utf-8"))
    st = lv["stage_latency"]
    assert st["per_request"] and lv["images_per_request"] == 1
    # recorded requests are k = 1..5 (k = 0 was the warm-up): exact per-request values from the deltas
    assert st["preprocessing"]["p50"] == pytest.approx(40.0) and st["preprocessing"]["count"] == 5
    assert st["upload_decode"]["p50"] == pytest.approx(5.0)
    assert st["vision_encoder"]["p95"] == pytest.approx(116.0)     # 40..120 ms, numpy's linear interpolation
    assert st["first_token"]["p50"] > 5 and st["full_answer"]["p95"] >= st["first_token"]["p95"]
    recs = [json.loads(x) for x in (out / "c1" / "requests.jsonl").read_text("utf-8").splitlines()]
    assert [rec["stages"]["preprocessing"] for rec in recs] == pytest.approx([20, 30, 40, 50, 60])
    assert all(rec["images"] == 1 for rec in recs) and recs[0]["text"] == "好0好1好2"
    assert "per-stage latency, c1" in r.output and "vision encoder" in r.output
    # concurrency 2: no per-request snapshots; server stages are the level's mean, marked as such
    out2 = tmp_path / "b2"
    r = CliRunner().invoke(main, ["bench", "127.0.0.1:1", "--out", str(out2), "--image", str(shot), "--num-requests", "4",
                                  "--warmup", "0", "--concurrency", "2", "--metrics-url", "", "--no-progress"])
    assert r.exit_code == 0, r.output
    st2 = json.loads((out2 / "c2" / "summary.json").read_text("utf-8"))["stage_latency"]
    assert not st2["per_request"] and set(st2["preprocessing"]) == {"mean"}
    assert st2["preprocessing"]["mean"] == pytest.approx(10 * (7 + 8 + 9 + 10) / 4)
    assert "p50" in st2["first_token"]                   # client figures stay per request
    assert "mean" in r.output and "level mean from Triton statistics" in r.output
    rep = tmp_path / "report.md"
    r = CliRunner().invoke(main, ["report", str(out), str(out2), "--out", str(rep)])
    assert r.exit_code == 0, r.output
    md = rep.read_text("utf-8")
    assert "Per-stage latency with images" in md and "40.0 / " in md and "mean 85.0" in md


def test_bench_bls_parameters_are_per_request_at_any_concurrency(tmp_path, monkeypatch):
    client = PipelineClient(bls=True)
    monkeypatch.setattr("glmtrt.client.bench.make_client", lambda opts: client)
    shot = make_screenshot(tmp_path / "shot.jpg", (64, 64), "JPEG")
    out = tmp_path / "bls"
    r = CliRunner().invoke(main, ["bench", "127.0.0.1:1", "--model", "tensorrt_llm_bls", "--out", str(out), "--image",
                                  str(shot), "--image", str(shot), "--num-requests", "4", "--warmup", "0",
                                  "--concurrency", "2", "--metrics-url", "", "--no-progress"])
    assert r.exit_code == 0, r.output
    lv = json.loads((out / "c2" / "summary.json").read_text("utf-8"))
    st = lv["stage_latency"]
    assert lv["images_per_request"] == 2 and all(len(im) == 2 for im in client.images_seen)
    assert sorted(st["vision_encoder"][k] for k in ("min", "max")) == [7.0, 28.0]
    assert st["preprocessing"]["p50"] == pytest.approx(7.5)          # 3, 6, 9, 12 ms
    assert "tensorrt_llm_bls" in st["sources"]["preprocessing"] and "mean" in st["upload_decode"]
    assert not st["per_request"]


def test_bench_image_validation(tmp_path, fake):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    r = CliRunner().invoke(main, ["bench", "127.0.0.1:1", "--out", str(tmp_path / "o"), "--image", str(bad)])
    assert r.exit_code == 2 and "not a readable image" in r.output and not fake.images_seen
    ok = make_screenshot(tmp_path / "ok.png", (32, 32))
    r = CliRunner().invoke(main, ["bench", "http://x/v1", "--api", "openai-completions", "--out", str(tmp_path / "o"),
                                  "--image", str(ok)])
    assert r.exit_code == 2 and "chat API" in r.output
