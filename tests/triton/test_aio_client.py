"""glmtrt.client.aio.AsyncTritonClient against a real Triton on CPU (ensemble and BLS)."""
from __future__ import annotations

import asyncio
import contextlib

import pytest

from glmtrt.errors import GlmtrtError

pytestmark = [pytest.mark.triton, pytest.mark.slow]
MODELS = ("ensemble", "tensorrt_llm_bls")


def _run(coro):
    return asyncio.run(coro)


@pytest.mark.parametrize("model", MODELS)
def test_stream_chinese_equals_sync_client(server, answer, model):
    from glmtrt.client.aio import AsyncTritonClient
    from glmtrt.client.stream import generate

    async def main():
        async with AsyncTritonClient(server.grpc_url, model=model) as c:
            assert await c.ready()
            chunks = [ch async for ch in c.stream("你好", max_tokens=64, temperature=0.0)]
            done = await c.generate(messages=[{"role": "user", "content": "你好"}], max_tokens=64, temperature=0.0)
            return chunks, done

    chunks, done = _run(main())
    text = "".join(ch.text for ch in chunks)
    assert text == answer == done.text == generate(server.grpc_url, "你好", model=model, max_tokens=64,
                                                   temperature=0.0)
    assert chunks[-1].final and not any(ch.final for ch in chunks[:-1])
    assert [ch.index for ch in chunks] == list(range(len(chunks)))
    assert all(b.time >= a.time for a, b in zip(chunks, chunks[1:]))
    assert len([ch for ch in chunks if ch.text]) > 5


def test_many_concurrent_streams_and_metadata(server, answer):
    from glmtrt.client.aio import AsyncTritonClient

    async def main():
        async with AsyncTritonClient(server.grpc_url) as c:
            outs = await asyncio.gather(*[c.generate("hi", max_tokens=64, temperature=0.0) for _ in range(24)])
            cfg = await c.model_config("tensorrt_llm")
            meta = await c.model_metadata()
            smeta = await c.server_metadata()
            stats = await c.statistics()
            return outs, cfg, meta, smeta, stats

    outs, cfg, meta, smeta, stats = _run(main())
    assert all(o.text == answer for o in outs) and len({o.request_id for o in outs}) == 24
    assert cfg["name"] == "tensorrt_llm" and "max_batch_size" in cfg
    assert any(i["name"] == "text_input" for i in meta["inputs"])
    assert smeta["name"] == "triton" and smeta["version"]
    assert {m["name"] for m in stats["model_stats"]} >= {"ensemble", "preprocessing", "tensorrt_llm"}


def test_early_close_cancels_and_server_stays_healthy(server, answer):
    from glmtrt.client.aio import AsyncTritonClient

    async def main():
        async with AsyncTritonClient(server.grpc_url) as c:
            gen = c.stream("hi", max_tokens=64, temperature=0.0)
            async with contextlib.aclosing(gen):
                async for ch in gen:
                    if ch.text:
                        break
            # a task cancelled mid-stream
            task = asyncio.create_task(c.generate("hi", max_tokens=64, temperature=0.0))
            await asyncio.sleep(0.05)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return (await c.generate("hi", max_tokens=64, temperature=0.0)).text, await c.ready()

    text, ready = _run(main())
    assert text == answer and ready


def test_errors_are_glmtrt_errors(server):
    from glmtrt.client.aio import AsyncTritonClient

    async def main():
        async with AsyncTritonClient(server.grpc_url) as c:
            with pytest.raises(GlmtrtError, match="server error"):
                await c.generate("hi", max_tokens=64, top_p=0.5, model="no_such_model")
            with pytest.raises(GlmtrtError, match="prompt or messages"):
                await c.generate(max_tokens=4)
            with pytest.raises(GlmtrtError, match="user turn"):
                await c.generate(messages=[{"role": "assistant", "content": "x"}])
        async with AsyncTritonClient("127.0.0.1:1") as dead:
            assert not await dead.ready()
            with pytest.raises(GlmtrtError):
                await dead.generate("hi", max_tokens=4, timeout=20)

    _run(main())
