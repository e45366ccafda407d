"""`glmtrt openai` end to end with clients nobody here wrote: the `openai` package and LangChain's
ChatOpenAI, against a real CPU Triton serving a scripted reasoning model.

The scripted greedy chat answer is THINK_ANSWER; the same text must come back from a direct
Triton call (glmtrt.client.stream), from the API (stream and not) and through LangChain.
"""
from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

from tests.api.fronts import CONTENT, REASONING, THINK_ANSWER, make_repo, start_server

pytestmark = [pytest.mark.triton, pytest.mark.slow]
openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

MODEL = "glm"
HELLO = [{"role": "user", "content": "你好"}]


class ApiServer:
    """uvicorn serving glmtrt's app in a thread on a free loopback port."""

    def __init__(self, triton_url: str, **kwargs):
        from glmtrt.api.app import create_app
        from glmtrt.api.backend import TritonBackend
        from glmtrt.triton.server import free_port

        self.backend = TritonBackend(triton_url, timeout=kwargs.pop("timeout", 120.0))
        self.port = free_port()
        app = create_app(self.backend, served_model_name=MODEL, **kwargs)
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 60
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return make_repo(tmp_path_factory.mktemp("api"))


@pytest.fixture(scope="module")
def triton(built):
    with start_server(built[0]) as srv:
        yield srv


@pytest.fixture(scope="module")
def api(triton):
    with ApiServer(triton.grpc_url) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(api):
    return openai.OpenAI(base_url=api.base_url, api_key="EMPTY", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def tok(built):
    from glmtrt.tokenizer import load_tokenizer

    return load_tokenizer(built[1])


def test_models_and_health(api, client):
    assert [m.id for m in client.models.list().data] == [MODEL]
    import httpx

    r = httpx.get(f"http://127.0.0.1:{api.port}/health", timeout=30)
    assert r.status_code == 200 and r.json()["status"] == "ready"


def test_chat_matches_direct_triton_call(triton, client, tok, built):
    from glmtrt.client.stream import generate

    direct = generate(triton.grpc_url, "你好", max_tokens=64, temperature=0.0)
    assert direct == THINK_ANSWER
    r = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=64, temperature=0)
    assert r.choices[0].message.content == direct
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens == len(tok.build_chat_ids(HELLO))
    assert r.usage.completion_tokens == len(built[2])      # the engine's tokens (end id not counted)
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens

    stream = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=64, temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == direct
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 3   # really streamed
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.completion_tokens == r.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == r.usage.prompt_tokens


def test_completion_tokens_are_the_engines(client):
    r = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=3, temperature=0)
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 3
    assert THINK_ANSWER.startswith(r.choices[0].message.content)


def test_reasoning_split_like_vllm(client):
    extra = {"enable_thinking": True, "return_reasoning": True}
    r = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=64, temperature=0, extra_body=extra)
    msg = r.choices[0].message
    assert msg.content == CONTENT
    assert msg.model_extra["reasoning_content"] == REASONING
    chunks = list(client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=64, temperature=0,
                                                 stream=True, extra_body=extra))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert "".join(d.content or "" for d in deltas) == CONTENT
    assert "".join((d.model_extra or {}).get("reasoning_content") or "" for d in deltas) == REASONING


def test_completions_endpoint_raw_prompt(triton, client, tok):
    from glmtrt.client.stream import generate

    direct = generate(triton.grpc_url, "你好", max_tokens=8, temperature=0.0, chat=False)
    r = client.completions.create(model=MODEL, prompt="你好", max_tokens=8, temperature=0)
    assert r.choices[0].text == direct
    assert r.usage.prompt_tokens == len(tok.prefix_ids) + len(tok.encode("你好"))
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model=MODEL, prompt="你好", max_tokens=8, temperature=0, stream=True) if c.choices)
    assert streamed == direct


@pytest.mark.parametrize("kwargs, status, param", [
    ({"n": 2}, 400, "n"),
    ({"temperature": 5}, 400, "temperature"),
    ({"model": "gpt-4"}, 404, "model"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}]},
     400, "messages[0].content"),
    ({"messages": [{"role": "user", "content": "很长的问题" * 200}]}, 400, None),
])
def test_errors_are_openai_json(client, kwargs, status, param):
    args = {"model": MODEL, "messages": HELLO, "max_tokens": 4, **kwargs}
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(**args)
    err = info.value
    assert err.status_code == status
    assert err.body["message"] and err.body["type"]
    if param:
        assert err.body["param"] == param
    if "很长" in json.dumps(kwargs, ensure_ascii=False):
        assert err.body["code"] == "context_length_exceeded" and "maximum input length is 96" in err.body["message"]


def test_api_key(triton):
    with ApiServer(triton.grpc_url, api_key="sekret") as srv:
        bad = openai.OpenAI(base_url=srv.base_url, api_key="EMPTY", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()
        good = openai.OpenAI(base_url=srv.base_url, api_key="sekret", max_retries=0)
        assert good.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=64,
                                            temperature=0).choices[0].message.content == THINK_ANSWER


def test_unreachable_triton_is_503_and_timeout_504(triton):
    import httpx

    from glmtrt.triton.server import free_port

    with ApiServer(f"127.0.0.1:{free_port()}") as srv:
        assert httpx.get(f"http://127.0.0.1:{srv.port}/health", timeout=30).status_code == 503
        c = openai.OpenAI(base_url=srv.base_url, api_key="EMPTY", max_retries=0)
        with pytest.raises(openai.APIStatusError) as info:
            c.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=4)
        assert info.value.status_code == 503
    with ApiServer(triton.grpc_url, timeout=0.001) as srv:
        c = openai.OpenAI(base_url=srv.base_url, api_key="EMPTY", max_retries=0)
        with pytest.raises(openai.APIStatusError) as info:
            c.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=64)
        assert info.value.status_code == 504


def test_disconnect_cancels_the_triton_request(api):
    import httpx

    body = {"model": MODEL, "messages": [{"role": "user", "content": "随便说点什么"}], "max_tokens": 60,
            "temperature": 1.0, "seed": 3, "stream": True}
    before = api.backend.cancelled
    with httpx.Client(timeout=60) as h:
        with h.stream("POST", f"{api.base_url}/chat/completions", json=body) as resp:
            assert resp.status_code == 200
            lines = resp.iter_lines()
            first = next(line for line in lines if line.startswith("data: "))
            assert json.loads(first[6:])["object"] == "chat.completion.chunk"
    deadline = time.time() + 30
    while time.time() < deadline and (api.backend.active or api.backend.cancelled == before):
        time.sleep(0.05)
    assert api.backend.active == 0
    assert api.backend.cancelled == before + 1


def test_langchain_chat_openai_as_the_seed_calls_it(api):
    chat_models = pytest.importorskip("langchain_openai")
    llm = chat_models.ChatOpenAI(model=MODEL, base_url=api.base_url, api_key="EMPTY", streaming=True,
                                 temperature=0, max_tokens=64,
                                 extra_body={"enable_thinking": True, "return_reasoning": True})
    text = "".join(chunk.content for chunk in llm.stream("你好"))
    assert text == CONTENT
    assert llm.invoke("你好").content == CONTENT


def test_64_concurrent_sse_streams(api):
    async def main():
        c = openai.AsyncOpenAI(base_url=api.base_url, api_key="EMPTY", max_retries=0, timeout=300)

        async def one(i):
            stream = await c.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=64, temperature=0,
                                                     stream=True)
            parts = [ch.choices[0].delta.content or "" async for ch in stream if ch.choices]
            return "".join(parts), len(parts)

        try:
            return await asyncio.gather(*(one(i) for i in range(64)))
        finally:
            await c.close()

    t0 = time.perf_counter()
    results = asyncio.run(main())
    assert [r[0] for r in results] == [THINK_ANSWER] * 64
    assert all(n > 3 for _, n in results)
    assert time.perf_counter() - t0 < 240
