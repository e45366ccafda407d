"""Ground truth for the client (issue 15 item 8): a paced CPU stand-in (first token after T ms, then one
every I ms, a fixed schedule from the request's arrival at the engine) must be reported back by
`glmtrt bench` within 5% at 1, 16, 64 and 128 concurrent streams, and the client's own overhead
(event-loop lag, which bounds how late a chunk is time-stamped) must stay under 1% of the ITL at 64.

Pacing is slow on purpose (T = 2000 ms, I = 5000 ms, 3 tokens): on a 2-core CPU the stand-in itself
costs ~16 ms CPU per token, in one GIL-bound process, and the stack a few ms more (docs/BENCHMARKS.md),
so 128 streams at one token per 5 s (26 tok/s) keep it below saturation; the workers' first sends
are spread over c/16 s for the same reason (128 prefills at once would queue in the stand-in).
A timing ground truth needs a CPU that is not oversubscribed: the test skips, saying so, when the
1-minute load average exceeds 3x the cores (other jobs would be measured, not the client).
"""
from __future__ import annotations

import asyncio
import os

import pytest

pytestmark = [pytest.mark.triton, pytest.mark.slow]
PACE_TTFT_MS, PACE_ITL_MS, TOKENS = 2000.0, 5000.0, 3
LEVELS = (1, 16, 64, 128)


@pytest.fixture(scope="module")
def paced_server(tmp_path_factory, scripted, tok_dir):
    pytest.importorskip("tritonclient.grpc")
    from glmtrt.triton.generator import RepoOptions, generate_repository
    from glmtrt.triton.server import TritonServer

    if os.uname().machine != "x86_64":
        pytest.skip("nvidia-pytriton's tritonserver is x86_64 only")
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load > 3 * cores:
        pytest.skip(f"load average {load:.0f} on {cores} cores: timing ground truth needs a quiet CPU")
    out = tmp_path_factory.mktemp("paced") / "repo"
    repo = generate_repository(RepoOptions(source=scripted[0], tokenizer=tok_dir, output=out, engine="reference",
                                           max_batch_size=128, max_input_len=64, max_seq_len=128,
                                           pace_ttft_ms=PACE_TTFT_MS, pace_itl_ms=PACE_ITL_MS))
    with TritonServer(repo, ready_timeout=180) as srv:
        yield srv, repo


def test_paced_accuracy_at_1_16_64_128_streams(paced_server, tmp_path, tok):
    from glmtrt.client.bench import BenchOptions, run_bench
    from glmtrt.client.datasets import load_dataset
    from glmtrt.client.load import LoadSpec

    srv, repo = paced_server
    items = load_dataset("builtin-zh-en", max_tokens=TOKENS)
    # one round per level; first sends spread over c/16 s (see the module docstring)
    levels = [LoadSpec(concurrency=c, num_requests=c, warmup=1, ramp_up=c / 16) for c in LEVELS]
    opts = BenchOptions(url=srv.grpc_url, out=str(tmp_path / "paced"), levels=levels, progress=False,
                        sampling={"temperature": 0.0}, metrics_url="", repo=str(repo))
    top = asyncio.run(run_bench(opts, items, tok))
    report = []
    for lv in top["levels"]:
        assert lv["requests"]["failed"] == 0, lv["errors"]
        assert lv["output_tokens"]["min"] == TOKENS
        ttft, tpot = lv["ttft_ms"]["p50"], lv["tpot_ms"]["mean"]
        report.append((lv["load"]["value"], ttft, tpot, lv["client"]["loop_lag_ms"]["mean"]))
    print("\nstreams, TTFT p50 ms, TPOT mean ms, client loop lag mean ms:", report)
    for streams, ttft, tpot, _ in report:
        assert abs(ttft - PACE_TTFT_MS) <= 0.05 * PACE_TTFT_MS, (streams, ttft)
        assert abs(tpot - PACE_ITL_MS) <= 0.05 * PACE_ITL_MS, (streams, tpot)
    lag64 = dict((s, lag) for s, _, _, lag in report)[64]
    assert lag64 < 0.01 * PACE_ITL_MS, lag64
