"""Load on a real CPU Triton (issue 13 item 1): 64 and 128 concurrent streams, ensemble and BLS
mixed, sampled and greedy, repeated, then the server keeps serving; plus the engine's sampling
defaults (issue 7 item 2) and the pacing mode (issue 15 item 8) end to end.

The scripted model (conftest.py) answers every chat prompt greedily with `answer`; sampled
requests produce random tokens over the whole vocabulary up to max_tokens.
"""
from __future__ import annotations

import concurrent.futures as cf
import os
import queue
import time

import numpy as np
import pytest

pytestmark = [pytest.mark.triton, pytest.mark.slow]
MODELS = ("ensemble", "tensorrt_llm_bls")


@pytest.fixture(scope="module")
def load_server(tmp_path_factory, scripted, tok_dir):
    pytest.importorskip("tritonclient.grpc")
    if os.uname().machine != "x86_64":
        pytest.skip("nvidia-pytriton's tritonserver is x86_64 only")
    from glmtrt.triton.generator import RepoOptions, generate_repository
    from glmtrt.triton.server import TritonServer

    out = tmp_path_factory.mktemp("load") / "repo"
    repo = generate_repository(RepoOptions(source=scripted[0], tokenizer=tok_dir, output=out, engine="reference",
                                           max_batch_size=128, max_input_len=64, max_seq_len=256))
    with TritonServer(repo, ready_timeout=300) as srv:
        yield srv


def _gen(url, text, **kw):
    from glmtrt.client.stream import stream_generate

    return "".join(stream_generate(url, text, timeout=240, **kw))   # a dead stub fails in minutes, not hours


def _mixed_round(url, n, answer, max_tokens):
    """n streams: model alternates ensemble/BLS, every other pair sampled (seeded) vs greedy."""
    def one(i):
        kw = dict(model=MODELS[i % 2], max_tokens=max_tokens)
        if i % 4 >= 2:
            kw.update(temperature=1.0, top_p=1.0, seed=i)   # sampled: random tokens, up to max_tokens
        try:
            return i, _gen(url, f"问题{i}：请详细介绍一下你自己", **kw), kw
        except Exception as exc:  # collected, so one failure shows every failure
            return i, exc, kw

    with cf.ThreadPoolExecutor(n) as pool:
        results = list(pool.map(one, range(n)))
    errors = [(i, r) for i, r, _ in results if isinstance(r, Exception)]
    assert not errors, f"{len(errors)} of {n} streams failed, first: {errors[:3]}"
    for i, text, kw in results:
        if "seed" not in kw:
            assert text == answer, f"greedy stream {i} ({kw['model']})"
        else:
            assert text and "\ufffd" not in text
    return results


def test_64_then_128_mixed_streams_twice_then_keeps_serving(load_server, answer):
    url = load_server.grpc_url
    greedy_full = [_gen(url, "问题0：请详细介绍一下你自己", model=m, max_tokens=128, stream=False) for m in MODELS]
    assert greedy_full == [answer, answer]
    t0 = time.monotonic()
    _mixed_round(url, 64, answer, max_tokens=48)
    res = _mixed_round(url, 128, answer, max_tokens=32)
    _mixed_round(url, 128, answer, max_tokens=32)
    took = time.monotonic() - t0
    # sampled streams equal the same seeded request, not streamed (each model once)
    for i, text, kw in [r for r in res if "seed" in r[2]][:2]:
        assert _gen(url, f"问题{i}：请详细介绍一下你自己", stream=False, **kw) == text
    assert load_server.is_ready()
    assert all(_gen(url, "你好", model=m, max_tokens=64) == answer for m in MODELS)
    print(f"64 + 128 + 128 mixed streams in {took:.1f} s")


@pytest.mark.parametrize("model", MODELS)
def test_no_sampling_inputs_is_greedy(load_server, model):
    """No temperature/top_k/top_p: the engine's defaults (top_k 0, top_p 0) are greedy."""
    url = load_server.grpc_url
    kw = dict(model=model, max_tokens=24, chat=False)
    plain = [_gen(url, "Hello 世界", **kw) for _ in range(2)]
    greedy = _gen(url, "Hello 世界", temperature=0.0, **kw)
    assert plain[0].encode() == plain[1].encode() == greedy.encode() and greedy
    assert _gen(url, "Hello 世界", top_p=0.0, temperature=1.0, **kw) == greedy     # top_p 0 accepted
    assert _gen(url, "Hello 世界", top_p=1.0, temperature=1.0, seed=5, **kw) != greedy


def _engine_stream(url, ids, n):
    """Arrival times of each token streamed straight from tensorrt_llm (seconds after sending)."""
    import tritonclient.grpc as grpcclient

    from tests.triton.conftest import engine_inputs

    inputs = engine_inputs(ids, n, min_tokens=np.array([[n]], np.int32), streaming=np.array([[True]]))
    q: queue.Queue = queue.Queue()
    client = grpcclient.InferenceServerClient(url)
    client.start_stream(callback=lambda result, error: q.put((time.monotonic(), result, error)))
    try:
        t0 = time.monotonic()
        client.async_stream_infer("tensorrt_llm", inputs, enable_empty_final_response=True)
        stamps = []
        while True:
            at, r, e = q.get(timeout=300)
            assert e is None, e
            if r.as_numpy("output_ids") is not None:
                stamps.append(at - t0)
            if r.get_response().parameters["triton_final_response"].bool_param:
                return stamps
    finally:
        client.stop_stream()
        client.close()


def test_pacing_mode(tmp_path, scripted, tok_dir):
    """--pace-ttft-ms 500 --pace-itl-ms 250: first token after ~500 ms, then one every 250 ms, at 1 and 16
    streams. The schedule is fixed from each request's arrival, so no token is ever early; lateness (queueing,
    prefill, a starved machine) is bounded generously: CI shares 2 cores, and a test run under other jobs'
    load (average 5-9) made the earlier 100 ms interval miss its tolerance."""
    pytest.importorskip("tritonclient.grpc")
    from click.testing import CliRunner

    from glmtrt.cli import main
    from glmtrt.triton.server import TritonServer

    ttft, itl, n_tok = 0.5, 0.25, 12
    out = tmp_path / "paced"
    res = CliRunner().invoke(main, ["repo", str(scripted[0]), "--engine", "reference", "--tokenizer", str(tok_dir),
                                    "-o", str(out), "--max-batch-size", "32", "--pace-ttft-ms", "500",
                                    "--pace-itl-ms", "250"])
    assert res.exit_code == 0, res.output
    assert 'key: "pace_itl_ms"  value: { string_value: "250" }' in (out / "tensorrt_llm" / "config.pbtxt").read_text()
    with TritonServer(out, ready_timeout=300) as srv:
        for n in (1, 16):
            with cf.ThreadPoolExecutor(n) as pool:
                runs = list(pool.map(lambda i: _engine_stream(srv.grpc_url, [5, 6, 7 + i], n_tok), range(n)))
            for stamps in runs:
                assert len(stamps) == n_tok
                due_last = ttft + (n_tok - 1) * itl
                # never early (the schedule starts at arrival, after the send); late by at most 1 s
                assert ttft <= stamps[0] <= ttft + 1.0, stamps
                assert due_last <= stamps[-1] <= due_last + 1.0, stamps
                # between the first and the last, one token per interval
                assert np.median(np.diff(stamps)) == pytest.approx(itl, rel=0.2), stamps
    bad = CliRunner().invoke(main, ["repo", str(scripted[0]), "--engine", "reference", "--tokenizer", str(tok_dir),
                                    "-o", str(tmp_path / "x"), "--pace-itl-ms", "-1"])
    assert bad.exit_code == 2 and "--pace-itl-ms" in bad.output
