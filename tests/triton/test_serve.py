"""A real Triton on CPU serving a generated repository (ensemble and BLS), one server per module.

The scripted checkpoint (conftest.py) answers every chat prompt with answer, whose tokens
include SentencePiece byte-fallback pieces (<0xF0><0xA0><0xAE><0xB7> = 𠮷): streamed token by
token, the text must arrive exactly and without U+FFFD (tensorrtllm_backend #192/#606,
TensorRT-LLM #2488).
"""
from __future__ import annotations

import concurrent.futures as cf

import numpy as np
import pytest

from glmtrt.errors import GlmtrtError

pytestmark = [pytest.mark.triton, pytest.mark.slow]
MODELS = ("ensemble", "tensorrt_llm_bls")


def _gen(server, text, **kw):
    from glmtrt.client.stream import stream_generate

    kw.setdefault("temperature", 0.0)
    return list(stream_generate(server.grpc_url, text, **kw))


@pytest.mark.parametrize("model", MODELS)
def test_chinese_stream_equals_full_text(server, scripted, tok, answer, model):
    _, chain = scripted
    pieces = _gen(server, "你好", model=model, max_tokens=64)
    full = _gen(server, "你好", model=model, max_tokens=64, stream=False)
    assert "".join(pieces) == full[0] == answer == tok.decode(chain)
    assert len(pieces) > 5 and not any("\ufffd" in p for p in pieces)
    # every character spelled by byte-fallback pieces (<0xF0><0xA0><0xAE><0xB7> = 𠮷 with the real
    # tokenizer, 微 and 经 with the tiny one) arrives whole, as one streamed piece
    byte_chars = [c for c in answer if any(tok.id_to_token(i).startswith("<0x") for i in tok.encode(c))]
    assert byte_chars and all(c in pieces for c in byte_chars)


@pytest.mark.parametrize("model", MODELS)
def test_cumulative_mode(server, answer, model):
    pieces = _gen(server, "hi", model=model, max_tokens=64, output_mode="cumulative")
    assert pieces[-1] == answer
    assert all(answer.startswith(p) for p in pieces) and len(pieces) > 5


@pytest.mark.parametrize("model", MODELS)
def test_max_tokens_and_stop_words(server, scripted, tok, answer, model):
    _, chain = scripted
    assert "".join(_gen(server, "hi", model=model, max_tokens=3)) == tok.decode(chain[:3])
    # a stop word ends the answer after it (the engine emits the stop word, like TensorRT-LLM);
    # stop words are token sequences, and " Hello" encodes like "Hello" in both answers
    text = "".join(_gen(server, "hi", model=model, max_tokens=64, stop_words=["Hello"]))
    assert text == answer[:answer.index("Hello") + len("Hello")] != answer


@pytest.mark.parametrize("model", MODELS)
def test_random_sampling_streams_like_full_decode(server, model):
    """Plain prompts give random tokens over the whole vocab: the stream must equal the
    non-streamed text of the same seeded generation (no character split by streaming)."""
    kw = dict(model=model, max_tokens=40, chat=False, temperature=1.0, top_p=1.0, seed=1234)
    streamed = "".join(_gen(server, "Hello 世界", **kw))
    full = _gen(server, "Hello 世界", stream=False, **kw)
    assert streamed == full[0] and len(streamed) > 0


def test_32_concurrent_streams(server, scripted, tok):
    _, chain = scripted

    def one(i):
        model = MODELS[i % 2]
        n = 2 + i % 10
        return n, "".join(_gen(server, f"q{i}", model=model, max_tokens=n))

    with cf.ThreadPoolExecutor(32) as pool:
        results = list(pool.map(one, range(32)))
    for n, text in results:  # a character cut by max_tokens is dropped, never a U+FFFD
        assert text == tok.decode(chain[:n]).rstrip("\ufffd")


@pytest.mark.parametrize("model", MODELS)
def test_history_messages(server, answer, model):
    history = [{"role": "user", "content": "你是谁"}, {"role": "assistant", "content": "我是 GLM"}]
    assert "".join(_gen(server, "再说一次", model=model, max_tokens=64, history=history)) == answer


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("case", ["empty", "too_long", "unknown_param", "bad_output_mode"])
def test_bad_requests_get_clear_errors(server, model, case):
    kw = dict(model=model, max_tokens=8)
    text, match = "hi", ""
    if case == "empty":
        text, kw["chat"], match = "", False, "empty"
    elif case == "too_long":
        text, kw["chat"], match = "世界 " * 200, False, "max_input_len"
    elif case == "unknown_param":
        match = "unknown request parameter"
    else:
        kw["output_mode"], match = "sideways", "output_mode"
    with pytest.raises(GlmtrtError, match=match):
        if case == "unknown_param":
            _raw_request(server, model, parameters={"nonsense": 1})
        else:
            _gen(server, text, **kw)
    assert server.is_ready() and "".join(_gen(server, "hi", model=model, max_tokens=3))


def _raw_request(server, model, *, parameters=None, dtype_bad=False):
    """One streamed request built by hand (for malformed requests); returns the texts."""
    import queue

    import tritonclient.grpc as grpcclient

    from glmtrt.client.stream import build_inputs

    inputs = build_inputs("hi", max_tokens=4)
    if dtype_bad:
        bad = grpcclient.InferInput("max_tokens", [1, 1], "FP32")
        bad.set_data_from_numpy(np.array([[4.0]], dtype=np.float32))
        inputs[1] = bad
    q: queue.Queue = queue.Queue()
    client = grpcclient.InferenceServerClient(server.grpc_url)
    client.start_stream(callback=lambda result, error: q.put((result, error)))
    try:
        client.async_stream_infer(model, inputs, request_id="raw-1", parameters=parameters or {},
                                  enable_empty_final_response=True)
        texts = []
        while True:
            result, error = q.get(timeout=60)
            if error is not None:
                raise GlmtrtError(str(error))
            out = result.as_numpy("text_output")
            if out is not None:
                texts.append(out.reshape(-1)[0].decode())
            if result.get_response().parameters["triton_final_response"].bool_param:
                return texts
    finally:
        client.stop_stream()
        client.close()


@pytest.mark.parametrize("model", MODELS)
def test_wrong_dtype_is_rejected(server, model):
    with pytest.raises(GlmtrtError, match="max_tokens"):
        _raw_request(server, model, dtype_bad=True)
    assert server.is_ready()


def test_engine_contract_direct(server, scripted, tok):
    """tensorrt_llm (the CPU stand-in) with the engine's tensors: non-streaming output_ids
    with the prompt excluded, sequence_length, log probs on request."""
    import tritonclient.grpc as grpcclient

    _, chain = scripted
    prompt = tok.build_chat_ids([{"role": "user", "content": "hi"}])

    def inp(name, arr, dt):
        t = grpcclient.InferInput(name, list(arr.shape), dt)
        t.set_data_from_numpy(arr)
        return t

    inputs = [inp("input_ids", np.array([prompt], np.int32), "INT32"),
              inp("input_lengths", np.array([[len(prompt)]], np.int32), "INT32"),
              inp("request_output_len", np.array([[5]], np.int32), "INT32"),
              inp("end_id", np.array([[tok.eos_id]], np.int32), "INT32"),
              inp("return_log_probs", np.array([[True]]), "BOOL")]
    import queue

    q: queue.Queue = queue.Queue()
    client = grpcclient.InferenceServerClient(server.grpc_url)
    client.start_stream(callback=lambda result, error: q.put((result, error)))
    client.async_stream_infer("tensorrt_llm", inputs, request_id="direct")
    result, error = q.get(timeout=60)
    client.stop_stream()
    client.close()
    assert error is None
    assert result.as_numpy("output_ids").tolist() == [[chain[:5]]]
    assert result.as_numpy("sequence_length").tolist() == [[5]]
    lp = result.as_numpy("output_log_probs")
    assert lp.shape == (1, 1, 5) and np.all(lp <= 0)
    assert np.isclose(result.as_numpy("cum_log_probs")[0, 0], lp.sum(), atol=1e-4)


def test_cli_generate_and_chat(server, answer):
    from click.testing import CliRunner

    from glmtrt.cli import main

    runner = CliRunner()
    res = runner.invoke(main, ["generate", server.grpc_url, "你好", "--temperature", "0", "--max-tokens", "32"])
    assert res.exit_code == 0, res.output
    assert answer in res.output
    res = runner.invoke(main, ["chat", server.grpc_url, "--model", "tensorrt_llm_bls", "--temperature", "0", "--max-tokens", "32"],
                        input="你好\n再来\n\n")
    assert res.exit_code == 0, res.output
    assert res.output.count(answer) == 2


def test_cli_generate_reports_server_errors(server):
    from click.testing import CliRunner

    from glmtrt.cli import main

    res = CliRunner().invoke(main, ["generate", server.grpc_url, "", "--raw"])
    assert res.exit_code == 2 and "empty" in res.output
