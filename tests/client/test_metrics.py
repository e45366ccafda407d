"""Client metrics on known data: definitions, percentiles, genai-perf CSV, Prometheus parsing, stage table."""
from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from glmtrt.client.metrics import RequestRecord, request_metrics, stats, summarize, summary_csv


def _rec(i, t0, times, texts, n_tokens, **kw):
    return RequestRecord(id=f"r{i}", t_send=t0, chunk_times=times, chunk_texts=texts, output_tokens=n_tokens,
                         input_tokens=10, **kw)


def test_stats_percentiles_on_known_data():
    s = stats(range(1, 101))  # 1..100
    assert s["mean"] == 50.5 and s["min"] == 1 and s["max"] == 100 and s["count"] == 100
    # numpy linear interpolation (genai-perf's method): p50 of 1..100 is 50.5, p99 is 99.01
    assert s["p50"] == pytest.approx(50.5) and s["p99"] == pytest.approx(99.01) and s["p1"] == pytest.approx(1.99)
    assert s["p25"] == pytest.approx(25.75) and s["p95"] == pytest.approx(95.05)
    assert s["std"] == pytest.approx(np.std(np.arange(1, 101)))
    assert stats([]) is None and stats([None, float("nan")]) is None


def test_request_definitions():
    # sent at 10.0; empty held-back chunk at 10.05; text at 10.1, 10.3, 10.5; empty final at 10.6
    r = _rec(0, 10.0, [10.05, 10.1, 10.3, 10.5, 10.6], ["", "a", "b", "c", ""], 4)
    m = request_metrics(r)
    assert m["ttft"] == pytest.approx(0.1)            # first chunk WITH text
    assert m["ttst"] == pytest.approx(0.2)            # second text chunk - first
    assert m["e2e"] == pytest.approx(0.6)             # last response (the final marker)
    assert m["tpot"] == pytest.approx(0.5 / 3)        # (e2e - ttft) / (tokens - 1)
    assert m["gaps"] == pytest.approx([0.2, 0.2])     # between text chunks
    assert m["tokens_per_chunk"] == pytest.approx(4 / 3)
    assert m["user_tps"] == pytest.approx(3 / 0.5)
    failed = _rec(1, 0.0, [], [], None, error="boom")
    assert request_metrics(failed)["ttft"] is None


def test_summary_throughput_goodput_and_token_mismatch():
    recs = [_rec(i, float(i), [i + 0.1 * (k + 1) for k in range(5)], ["x"] * 5, 5, server_output_tokens=4)
            for i in range(4)]
    recs.append(_rec(9, 0.5, [], [], None, error="server error"))
    s = summarize(recs, slo_ttft_ms=150, slo_tpot_ms=50)
    assert s["requests"] == {"attempted": 5, "successful": 4, "failed": 1}
    assert s["duration_s"] == pytest.approx(3.5)       # first send 0.0 -> last response 3.5
    assert s["output_tps"] == pytest.approx(20 / 3.5)
    assert s["ttft_ms"]["p50"] == pytest.approx(100) and s["tpot_ms"]["mean"] == pytest.approx(100)
    assert s["slo"]["met"] == 0 and s["goodput"] == 0   # TPOT 100 ms > 50 ms
    assert summarize(recs, slo_ttft_ms=150)["goodput"] == pytest.approx(4 / 3.5)
    assert s["token_count_diff_pct"] == pytest.approx(25.0) and "server 16" in s["warnings"][0]
    assert s["errors"] == ["server error"]


def test_summary_csv_is_genai_perf_layout():
    recs = [_rec(i, 0.0, [0.1, 0.2, 0.3], ["a", "b", "c"], 3) for i in range(3)]
    text = summary_csv(summarize(recs))
    stat, values = text.split("\n\n")
    rows = list(csv.reader(io.StringIO(stat)))
    assert rows[0] == ["Metric", "avg", "min", "max", "p99", "p95", "p90", "p75", "p50", "p25", "p10", "p5", "p1", "std"]
    by = {r[0]: r for r in rows[1:]}
    assert by["Time To First Token (ms)"][1] == "100.00"
    assert by["Inter Token Latency (ms)"][1] == "100.00"
    assert by["Output Sequence Length (tokens)"][1] == "3.00"
    vals = dict(list(csv.reader(io.StringIO(values)))[1:])
    assert list(csv.reader(io.StringIO(values)))[0] == ["Metric", "Value"]
    assert float(vals["Output Token Throughput (tokens/sec)"]) == pytest.approx(30.0)
    assert vals["Request Count (count)"] == "3"


def test_record_json_roundtrip_keeps_chinese():
    r = _rec(0, 1.0, [1.1, 1.2], ["你好", "𠮷"], 3)
    back = RequestRecord.from_json(r.to_json())
    assert back.text == "你好𠮷" and back == r


PROM = """# HELP nv_inference_request_success Number of successful inference requests
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="ensemble",version="1"} 12
# TYPE nv_gpu_memory_used_bytes gauge
nv_gpu_memory_used_bytes{gpu_uuid="GPU-a"} 1.5e+09
nv_gpu_memory_used_bytes{gpu_uuid="GPU-b"} 2e+09
# TYPE nv_trt_llm_kv_cache_block_metrics gauge
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="used",model="tensorrt_llm",version="1"} 30
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="max",model="tensorrt_llm",version="1"} 120
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 3
"""


def test_prometheus_parsing_and_gpu_summary():
    from glmtrt.client.server_side import gpu_summary, kv_cache_series, parse_metrics, split_key

    m = parse_metrics(PROM)
    assert m['nv_inference_request_success{model="ensemble",version="1"}'] == 12
    assert "process_cpu_seconds_total" not in m
    assert split_key('nv_gpu_memory_used_bytes{gpu_uuid="GPU-a"}') == ("nv_gpu_memory_used_bytes", {"gpu_uuid": "GPU-a"})
    later = parse_metrics(PROM.replace("1.5e+09", "1.8e+09").replace("} 30", "} 60"))
    samples = [{"t": 0.0, "metrics": m}, {"t": 1.0, "metrics": later}]
    g = gpu_summary(samples)
    assert g["gpus"] == 2 and g["peak_gpu_memory_bytes"] == {"GPU-a": 1.8e9, "GPU-b": 2e9}
    assert kv_cache_series(samples) == [(0.0, 0.25), (1.0, 0.5)]


def test_stage_table_from_statistics_snapshots():
    from glmtrt.client.server_side import stage_table

    def snap(n, q_ns, infer_ns):
        return {"model_stats": [{"name": "preprocessing", "version": "1", "inference_stats": {
            "success": {"count": str(n), "ns": "0"}, "queue": {"count": str(n), "ns": str(q_ns)},
            "compute_input": {"count": str(n), "ns": "0"}, "compute_infer": {"count": str(n), "ns": str(infer_ns)},
            "compute_output": {"count": str(n), "ns": "0"}}}]}

    rows = stage_table(snap(2, 1_000_000, 2_000_000), snap(12, 11_000_000, 42_000_000))
    assert rows == [{"model": "preprocessing", "requests": 10, "queue_ms": 1.0, "compute_ms": 4.0, "fail": 0,
                     "responses": None, "response_ms": None}]
