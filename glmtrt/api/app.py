"""The FastAPI application of `glmtrt openai`: OpenAI's chat/completions and completions over Triton.

Streaming answers are server-sent events (`data: {chunk}` ... `data: [DONE]`, OpenAI's format);
an error before the first token is an HTTP error with OpenAI's error JSON, an error after it
is one `data: {"error": ...}` event before `[DONE]`. A client that goes away cancels its
Triton request (checked between responses, and the stream is closed on every exit path).
Imported only by `glmtrt openai` (FastAPI is the `api` extra).
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
from contextlib import asynccontextmanager
from typing import AsyncIterator

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse

from glmtrt.api import protocol as P
from glmtrt.api.backend import BackendError, TritonBackend
from glmtrt.api.textstream import ReasoningSplitter, StopTrimmer

log = logging.getLogger(__name__)


def _sse(obj) -> bytes:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n".encode("utf-8")


class Generation:
    """One request's stream from Triton, filtered to OpenAI deltas.

    `events()` yields ("reasoning"|"content", text) pairs; afterwards `completion_tokens`,
    `finish_reason` are set. The first Triton response is awaited by `start()` so that an
    error before the first token becomes an HTTP error.
    """

    def __init__(self, backend: TritonBackend, prompt: str, messages, sampling, *, reasoning: bool,
                 images: list[bytes] | None = None):
        self.backend, self.sampling = backend, sampling
        self._it = backend.stream(prompt, messages, sampling, images=images)
        self._count = asyncio.ensure_future(backend.count_prompt_tokens(prompt, messages, images=images))
        self._split = ReasoningSplitter() if reasoning else None
        self._stop = StopTrimmer(sampling.stop)
        self._first = None
        self.completion_tokens = 0
        self.finish_reason = "stop"

    async def start(self) -> None:
        try:
            self._first = await self._it.__anext__()
        except StopAsyncIteration:
            self._first = None
        except BaseException:
            await self.close()
            raise

    async def prompt_tokens(self) -> int:
        return await self._count

    async def close(self) -> None:
        await self._it.aclose()
        if not self._count.done():
            self._count.cancel()
        elif not self._count.cancelled() and self._count.exception() is not None:
            log.debug("prompt token count failed: %s", self._count.exception())

    def _pieces(self, text: str, final: bool):
        text = self._stop.push(text) + (self._stop.flush() if final else "")
        if self._split is None:
            if text:
                yield "content", text
            return
        r, c = self._split.push(text)
        if final:
            r2, c2 = self._split.flush()
            r, c = r + r2, c + c2
        if r:
            yield "reasoning", r
        if c:
            yield "content", c

    async def events(self) -> AsyncIterator[tuple[str, str]]:
        chunk = self._first
        while chunk is not None:
            self.completion_tokens += chunk.tokens
            for piece in self._pieces(chunk.text, chunk.final):
                yield piece
            if chunk.final:
                break
            try:
                chunk = await self._it.__anext__()
            except StopAsyncIteration:
                for piece in self._pieces("", True):
                    yield piece
                break
        self.finish_reason = P.finish_reason(self.completion_tokens, self.sampling.max_tokens)


def create_app(backend: TritonBackend, *, served_model_name: str, api_key: str | None = None):
    """The ASGI app. `backend` talks to Triton; `served_model_name` is the only model listed."""
    @asynccontextmanager
    async def lifespan(app):
        yield
        await backend.close()

    app = FastAPI(title="glmtrt OpenAI-compatible API", lifespan=lifespan)
    app.state.backend = backend

    def error(status: int, message: str, param=None, code=None):
        return JSONResponse(P.error_body(message, type_=P.ERROR_TYPES.get(status, "invalid_request_error"),
                                         param=param, code=code), status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc: RequestValidationError):
        errs = exc.errors()
        first = errs[0] if errs else {}
        loc = ".".join(str(x) for x in first.get("loc", ())[1:]) or None
        return error(400, f"{loc or 'body'}: {first.get('msg', 'invalid request')}", param=loc)

    @app.exception_handler(P.RequestError)
    async def _refused(request, exc: P.RequestError):
        return error(exc.status, str(exc), exc.param, exc.code)

    class _Unauthorized(Exception):
        pass

    @app.exception_handler(_Unauthorized)
    async def _unauthorized(request, exc):
        return error(401, "Incorrect or missing API key: send 'Authorization: Bearer <key>'", code="invalid_api_key")

    async def check_key(request: Request) -> None:
        """A dependency, not a middleware: Starlette's BaseHTTPMiddleware would wrap the SSE streams."""
        if api_key and not hmac.compare_digest(request.headers.get("authorization", ""), f"Bearer {api_key}"):
            raise _Unauthorized()

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(check_key)])

    @app.get("/health")
    async def health():
        ok, why = await backend.ready()
        if not ok:
            return error(503, why, code="not_ready")
        return {"status": "ready", "triton": backend.url, "model": backend.model}

    @v1.get("/models")
    async def models():
        return {"object": "list", "data": [{"id": served_model_name, "object": "model", "created": 0,
                                            "owned_by": "glmtrt"}]}

    def check_model(name: str):
        if name != served_model_name:
            return error(404, f"The model `{name}` does not exist; this server serves `{served_model_name}`",
                         param="model", code="model_not_found")
        return None

    async def run(req, prompt: str, messages, request, *, chat: bool, reasoning: bool, images=None):
        bad = check_model(req.model)
        if bad is not None:
            return bad
        if images and not await backend.accepts_images():
            return error(400, f"this repository's {backend.model} model takes no images (a text model); "
                              "image input needs the AutoGLM / GLM-4.1V repository",
                         param="messages", code="images_not_supported")
        gen = Generation(backend, prompt, messages, P.sampling_of(req), reasoning=reasoning,
                         images=[im.data for im in images] if images else None)
        try:
            await gen.start()
        except BackendError as exc:
            return error(exc.status, str(exc), code=exc.code)
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return StreamingResponse(_stream(gen, req, request, chat=chat, include_usage=include_usage),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        return await _whole(gen, req, chat=chat, error=error)

    async def _stream(gen: Generation, req, request, *, chat: bool, include_usage: bool):
        rid, created = P.new_id("chatcmpl" if chat else "cmpl"), P.now()
        obj = "chat.completion.chunk" if chat else "text_completion"

        def chunk(delta=None, finish=None, usage=None, choices=True):
            body = {"id": rid, "object": obj, "created": created, "model": req.model, "choices": []}
            if choices:
                c = {"index": 0, "logprobs": None, "finish_reason": finish}
                c.update({"delta": delta or {}} if chat else {"text": (delta or {}).get("content", "")})
                body["choices"] = [c]
            if include_usage:
                body["usage"] = usage
            return _sse(body)

        try:
            if chat:
                yield chunk({"role": "assistant", "content": ""})
            async for kind, text in gen.events():
                key = "reasoning_content" if kind == "reasoning" else "content"
                yield chunk({key: text})
                if await request.is_disconnected():
                    log.info("client went away: cancelling request")
                    return
            yield chunk({}, finish=gen.finish_reason)
            if include_usage:
                yield chunk(usage=P.usage(await gen.prompt_tokens(), gen.completion_tokens), choices=False)
        except BackendError as exc:
            yield _sse(P.error_body(str(exc), type_=P.ERROR_TYPES.get(exc.status, "internal_error"), code=exc.code))
        finally:
            await gen.close()
        yield b"data: [DONE]\n\n"

    async def _whole(gen: Generation, req, *, chat: bool, error):
        parts = {"reasoning": [], "content": []}
        try:
            async for kind, text in gen.events():
                parts[kind].append(text)
            prompt_tokens = await gen.prompt_tokens()
        except BackendError as exc:
            return error(exc.status, str(exc), code=exc.code)
        finally:
            await gen.close()
        content = "".join(parts["content"])
        base = {"id": P.new_id("chatcmpl" if chat else "cmpl"), "created": P.now(), "model": req.model,
                "usage": P.usage(prompt_tokens, gen.completion_tokens)}
        if chat:
            msg = {"role": "assistant", "content": content}
            if parts["reasoning"]:
                msg["reasoning_content"] = "".join(parts["reasoning"])
            choice = {"index": 0, "message": msg, "logprobs": None, "finish_reason": gen.finish_reason}
            return {**base, "object": "chat.completion", "choices": [choice]}
        choice = {"index": 0, "text": content, "logprobs": None, "finish_reason": gen.finish_reason}
        return {**base, "object": "text_completion", "choices": [choice]}

    @v1.post("/chat/completions")
    async def chat_completions(body: P.ChatRequest, request: Request):
        messages, images = P.glm_chat(body)
        return await run(body, "", messages, request, chat=True, reasoning=P.wants_reasoning(body), images=images)

    @v1.post("/completions")
    async def completions(body: P.CompletionRequest, request: Request):
        return await run(body, P.completion_prompt(body), None, request, chat=False, reasoning=False)

    app.include_router(v1)
    return app
