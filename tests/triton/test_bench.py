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
    """Streamed (bench, multi-turn, BLS) text equals the non-streamed answer to the same turns byte for byte."""
    from glmtrt.client.stream import stream_generate

    out = tmp_path / "bls"
    r = _bench(server, repo, out, "--model", "tensorrt_llm_bls", "--concurrency", "2", "--num-requests", "2",
               "--max-tokens", "64", "--temperature", "0", "--dataset", "builtin-multiturn", "--warmup", "0")
    assert r.returncode == 0, r.stderr
    reqs = [json.loads(line) for line in (out / "c2" / "requests.jsonl").read_text("utf-8").splitlines()]
    # later turns can outgrow the test repository's max_input_len (64): those fail and end their conversation
    ok = [q for q in reqs if q["error"] is None]
    assert any(q["turn"] > 0 and q["messages"][-2]["role"] == "assistant" for q in ok)
    for q in ok:
        msgs = q["messages"] or [{"role": "user", "content": q["prompt"]}]
        full = list(stream_generate(server.grpc_url, msgs[-1]["content"], model="tensorrt_llm_bls", max_tokens=64,
                                    temperature=0.0, history=msgs[:-1] or None, stream=False))[0]
        assert q["text"].encode("utf-8") == full.encode("utf-8"), q["id"]
    assert [q["text"] for q in reqs if q["turn"] == 0] == [answer, answer]


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
        import tritonclient.grpc as grpcclient

        stats = grpcclient.InferenceServerClient(srv.grpc_url)
        while time.time() < deadline:  # warm-up (2) and at least one measured request done
            got = stats.get_inference_statistics("ensemble", as_json=True)["model_stats"][0]
            if int(got["inference_stats"]["success"].get("count", 0)) >= 4:
                break
            time.sleep(0.5)
        stats.close()
        os.kill(srv.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 2, stderr
    assert "Traceback" not in stderr and "partial results" in stderr
    s = json.loads((out / "c2" / "summary.json").read_text())
    assert s["aborted"] and s["requests"]["successful"] > 0 and s["requests"]["failed"] >= 1
    reqs = [json.loads(line) for line in (out / "c2" / "requests.jsonl").read_text().splitlines()]
    assert any(q["error"] for q in reqs)
    assert json.loads((out / "summary.json").read_text())["levels"]


def test_report_on_two_runs(sweep, server, repo, tmp_path):
    """Two runs -> Markdown + self-contained HTML with tables, deltas, stage table, settings, plots."""
    import base64
    import re

    out, _ = sweep
    other = tmp_path / "bls"
    r = _bench(server, repo, other, "--model", "tensorrt_llm_bls", "--concurrency", "1,4", "--num-requests", "4",
               "--max-tokens", "64", "--temperature", "0", "--warmup", "0")
    assert r.returncode == 0, r.stderr
    md_path = tmp_path / "rep" / "report.md"
    r = subprocess.run(GLMTRT + ["report", str(out), str(other), "-o", str(md_path)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    md = md_path.read_text("utf-8")
    assert "## Headline" in md and "| ens | c4 |" in md and "| bls | c4 |" in md
    assert re.search(r"\| bls \| c4 \|.*\| [+-]\d+\.\d% \|", md)                  # deltas vs the first run
    assert "| ens | c4 | preprocessing |" in md or "| ens | c1 | preprocessing |" in md
    assert "cpu (reference engine)" in md and "float32" in md and "engine_kind=reference" in md
    for rel in re.findall(r"!\[[^]]*\]\(([^)]+)\)", md):
        assert (md_path.parent / rel).is_file(), rel
    html = (tmp_path / "rep" / "report.html").read_text("utf-8")
    imgs = re.findall(r"src='data:image/png;base64,([^']+)'", html)
    assert len(imgs) >= 6 and "<table>" in html and "src='http" not in html
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in imgs)
