"""Web chat pieces without a server: metrics facts, idle-session book, answer stats, CLI helpers."""
from __future__ import annotations

import pytest

from glmtrt.ui.facts import NOT_REPORTED, parse_metrics
from glmtrt.ui.service import AnswerStats, SessionBook

pytest.importorskip("prometheus_client")

# the shape of a TensorRT-LLM backend's /metrics page (names and labels as the backend exports them)
GPU_METRICS = """\
# HELP nv_gpu_memory_total_bytes GPU total memory, in bytes
# TYPE nv_gpu_memory_total_bytes gauge
nv_gpu_memory_total_bytes{gpu_uuid="GPU-aaaaaaaa-1111"} 16106127360
nv_gpu_memory_total_bytes{gpu_uuid="GPU-bbbbbbbb-2222"} 16106127360
# HELP nv_gpu_memory_used_bytes GPU used memory, in bytes
# TYPE nv_gpu_memory_used_bytes gauge
nv_gpu_memory_used_bytes{gpu_uuid="GPU-aaaaaaaa-1111"} 13958643712
nv_gpu_memory_used_bytes{gpu_uuid="GPU-bbbbbbbb-2222"} 13421772800
# HELP nv_trt_llm_request_metrics TRT LLM request metrics
# TYPE nv_trt_llm_request_metrics gauge
nv_trt_llm_request_metrics{model="tensorrt_llm",request_type="active",version="1"} 7
nv_trt_llm_request_metrics{model="tensorrt_llm",request_type="max",version="1"} 64
# HELP nv_trt_llm_kv_cache_block_metrics TRT LLM KV cache block metrics
# TYPE nv_trt_llm_kv_cache_block_metrics gauge
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="used",model="tensorrt_llm",version="1"} 2000
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="free",model="tensorrt_llm",version="1"} 4000
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="max",model="tensorrt_llm",version="1"} 8000
"""


def test_facts_from_a_gpu_server():
    f = parse_metrics(GPU_METRICS)
    assert f.gpus["GPU-aaaaaaaa-1111"] == (13958643712, 16106127360)
    assert (f.kv_blocks_used, f.kv_blocks_max, f.active_requests) == (2000, 8000, 7)
    lines = f.lines()
    assert lines[0] == "GPU 0 (GPU-aaaaaaaa): 13.0 / 15.0 GiB"
    assert "KV-cache blocks: 2000 / 8000 used" in lines and "active requests: 7" in lines


def test_facts_not_reported_on_the_cpu_stand_in():
    cpu_only = "# TYPE nv_inference_request_success counter\nnv_inference_request_success{model=\"ensemble\",version=\"1\"} 3\n"
    lines = parse_metrics(cpu_only).lines()
    assert lines == [f"GPU memory: {NOT_REPORTED}", f"KV-cache blocks: {NOT_REPORTED}",
                     f"active requests: {NOT_REPORTED}"]


def test_idle_sessions_are_cleared():
    book = SessionBook()
    old, new = [{"role": "user", "content": "旧"}], [{"role": "user", "content": "新"}]
    book.touch("a", old, now=0.0)
    book.touch("b", new, now=1700.0)
    assert book.sweep(idle_s=1800, now=1801.0) == 1
    assert old == [] and new == [{"role": "user", "content": "新"}]
    assert list(book.entries) == ["b"]


def test_answer_stats_caption():
    s = AnswerStats(ttft_s=0.25, total_s=1.25, tokens=21)
    assert s.tokens_per_s == pytest.approx(21.0)
    assert s.caption() == "TTFT 250 ms · 21.0 tok/s · 21 tokens"
    assert AnswerStats().caption() == "TTFT - · - tok/s · 0 tokens"


def test_metrics_url_and_exposure_checks():
    from glmtrt.api.commands import check_exposure, is_loopback
    from glmtrt.errors import GlmtrtError
    from glmtrt.ui.commands import metrics_url_for

    assert metrics_url_for("127.0.0.1:8001", None) == "http://127.0.0.1:8002/metrics"
    assert metrics_url_for("h:8001", "none") is None
    assert metrics_url_for("h:8001", "h:9") == "http://h:9/metrics"
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0")
    check_exposure("127.0.0.1", None, False)
    check_exposure("0.0.0.0", "key", False)
    check_exposure("0.0.0.0", None, True)
    with pytest.raises(GlmtrtError, match="--api-key"):
        check_exposure("0.0.0.0", None, False)
