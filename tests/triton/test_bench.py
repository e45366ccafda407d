"""`glmtrt bench` / `report` / `eval` against a real Triton on CPU (the scripted tiny model).

Short runs: CI cost matters. The scripted model answers every chat prompt with `answer`.
"""
from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.triton, pytest.mark.slow]
GLMTRT = [sys.executable, "-m", "glmtrt"]


def _bench(server, repo, out, *args, timeout=300):
    cmd = GLMTRT + ["bench", server.grpc_url, "--out", str(out), "--repo", str(repo),
                    "--metrics-url", f"http://127.0.0.1:{server.metrics_port}/metrics",
                    "--metrics-interval", "0.2", "--no-progress", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def sweep(server, repo, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "ens"
    r = _bench(server, repo, out, "--concurrency", "1,4", "--num-requests", "8", "--max-tokens", "64",
               "--temperature", "0", "--slo-ttft-ms", "60000")
    assert r.returncode == 0, r.stderr + r.stdout
    return out, r


def test_sweep_layout_and_summary(sweep, answer, tok):
    out, r = sweep
    top = json.loads((out / "summary.json").read_text())
    assert [lv["load"]["label"] for lv in top["levels"]] == ["c1", "c4"]
    for label in ("c1", "c4"):
        d = out / label
        for name in ("run.json", "requests.jsonl", "summary.json", "summary.csv", "server_metrics.jsonl",
                     "ttft_cdf.png", "latency_over_time.png"):
            assert (d / name).is_file() and (d / name).stat().st_size > 0, (label, name)
        s = json.loads((d / "summary.json").read_text())
        assert s["requests"] == {"attempted": 8, "successful": 8, "failed": 0}
        n_answer = len(tok.encode(answer))
        assert s["output_tokens"]["mean"] == n_answer and s["output_tokens"]["std"] == 0
        assert 0 < s["ttft_ms"]["p50"] <= s["e2e_ms"]["p50"]
        assert s["goodput"] > 0 and s["output_tps"] > 0
        reqs = [json.loads(line) for line in (d / "requests.jsonl").read_text("utf-8").splitlines()]
        assert len(reqs) == 8 and all(q["text"] == answer and q["error"] is None for q in reqs)
        run = json.loads((d / "run.json").read_text())
        assert run["transport"] == "triton" and run["server"]["name"] == "triton"
        assert run["engine_manifest"]["kind"] == "trtllm-checkpoint" and run["options"]["command"]
        # per-stage table from the statistics API (ensemble + composing models)
        stages = {row["model"]: row for row in s["stages"]}
        assert {"ensemble", "preprocessing", "tensorrt_llm", "postprocessing"} <= set(stages)
        assert stages["preprocessing"]["requests"] == 8 + (2 if label == "c1" else 2)
        # server metrics were scraped and parsed
        rows = [json.loads(line) for line in (d / "server_metrics.jsonl").read_text().splitlines()]
        assert rows and any(k.startswith("nv_inference_request_success") for k in rows[-1]["metrics"])
    # genai-perf CSV layout
    text = (out / "c4" / "summary.csv").read_text()
    stat_part, value_part = text.split("\n\n")
    rows = list(csv.reader(io.StringIO(stat_part)))
    assert rows[0][:5] == ["Metric", "avg", "min", "max", "p99"]
    names = [row[0] for row in rows[1:]]
    for name in ("Time To First Token (ms)", "Inter Token Latency (ms)", "Request Latency (ms)",
                 "Output Sequence Length (tokens)"):
        assert name in names
    assert "Output Token Throughput (tokens/sec)" in value_part
    for name in ("ttft_vs_load.png", "tpot_vs_load.png", "throughput_vs_load.png"):
        assert (out / name).stat().st_size > 1000
    assert "c4" in r.stdout and "TTFT" in r.stdout


def test_bls_and_chinese_byte_identical(server, repo, tmp_path, answer):
    """Streamed (bench) text equals the non-streamed answer byte for byte, through BLS too."""
    from glmtrt.client.stream import stream_generate

    full = list(stream_generate(server.grpc_url, "你好", model="tensorrt_llm_bls", max_tokens=64,
                                temperature=0.0, stream=False))[0]
    out = tmp_path / "bls"
    r = _bench(server, repo, out, "--model", "tensorrt_llm_bls", "--concurrency", "2", "--num-requests", "4",
               "--max-tokens", "64", "--temperature", "0", "--dataset", "builtin-multiturn", "--warmup", "0")
    assert r.returncode == 0, r.stderr
    reqs = [json.loads(line) for line in (out / "c2" / "requests.jsonl").read_text("utf-8").splitlines()]
    assert reqs and all(q["text"].encode("utf-8") == full.encode("utf-8") == answer.encode("utf-8") for q in reqs)
    assert any(q["turn"] and q["turn"] > 0 and q["messages"][-2]["content"] == answer for q in reqs)


def test_dead_server_gives_partial_results(repo, tmp_path):
    """Kill the server mid-run: exit 2 with a one-paragraph error, partial readable results."""
    from glmtrt.triton.server import TritonServer

    out = tmp_path / "dead"
    with TritonServer(repo, ready_timeout=180) as srv:
        proc = subprocess.Popen(GLMTRT + ["bench", srv.grpc_url, "--out", str(out), "--repo", str(repo),
                                          "--concurrency", "2", "--duration", "120", "--max-tokens", "64",
                                          "--no-progress", "--timeout", "20"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while time.time() < deadline and not (out / "c1").exists() and not (out / "c2" / "run.json").exists():
            time.sleep(0.5)
        time.sleep(4)
        os.kill(srv.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 2, stderr
    assert "Traceback" not in stderr and "partial results" in stderr
    s = json.loads((out / "c2" / "summary.json").read_text())
    assert s["aborted"] and s["requests"]["successful"] > 0 and s["requests"]["failed"] >= 1
    reqs = [json.loads(line) for line in (out / "c2" / "requests.jsonl").read_text().splitlines()]
    assert any(q["error"] for q in reqs)
    assert json.loads((out / "summary.json").read_text())["levels"]
