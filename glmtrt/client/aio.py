"""Asyncio streaming client for glmtrt's Triton service — shared by `bench`, `eval` and the OpenAI endpoint.

Interface (stable; other modules build on it)::

    async with AsyncTritonClient("127.0.0.1:8001", model="ensemble") as client:
        await client.ready()                              # bool: server ready and the model ready
        async for chunk in client.stream("你好", max_tokens=64, temperature=0.0):
            chunk.text, chunk.time, chunk.final           # Chunk (below)
        done = await client.generate(messages=[{"role": "user", "content": "hi"}], max_tokens=16)
        done.text, done.chunks, done.request_id           # Completion
        await client.model_config("tensorrt_llm")         # dict (Triton's JSON model config)
        await client.model_metadata("ensemble")           # dict (inputs / outputs / versions)
        await client.server_metadata()                    # dict (name, version, extensions)
        await client.statistics()                         # dict (Triton statistics API, all models)

- `stream(prompt=None, *, messages=None, chat=True, max_tokens=256, temperature=None, top_p=None,
  top_k=None, seed=None, stop=None, bad_words=None, min_tokens=None, presence_penalty=None,
  frequency_penalty=None, repetition_penalty=None, return_log_probs=False, request_id=None,
  model=None, timeout=None, images=None)` is an async generator of `Chunk`s. Pass either `prompt` (one user turn;
  `chat=False` sends it raw, without the chat template) or OpenAI-style `messages` (the last must
  be the user's; earlier turns go to the server's chat template as the `messages` request parameter).
  `images` (encoded PNG / JPEG bytes) go to the multimodal repository's `images` input with the
  last user turn.
- Every response of the stream becomes one Chunk, including empty ones (the postprocessing holds
  back incomplete UTF-8) and the empty final marker (`final=True`, text ""). `time` is
  `time.perf_counter()` when the response arrived.
- Cancellation: leaving the loop early and closing the generator (`aclose()`, or
  `contextlib.aclosing`, or the task being cancelled) cancels the gRPC call, which cancels the
  request in Triton. A stream ends with GlmtrtError on a server error or on `timeout` seconds
  without a response.
- One gRPC channel carries all streams (HTTP/2 multiplexing), so 128 concurrent streams cost no
  threads. Input names that differ between release lines (`min_tokens`/`min_length`,
  `seed`/`random_seed`) are resolved from the model's metadata once per model.

Request tensors come from `glmtrt.client.request`, shared with the thread-based `glmtrt.client.stream`.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import AsyncIterator, Sequence

from glmtrt.client.request import build_inputs, request_parameters, resolve_names, split_messages
from glmtrt.errors import GlmtrtError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Chunk:
    """One streamed response."""

    text: str                      #: new text (delta); "" for held-back bytes and the final marker
    time: float                    #: time.perf_counter() at arrival
    index: int                     #: response number in this stream, from 0
    final: bool = False            #: the last response of the stream
    finish_reason: str | None = None   #: "stop" | "length" where the server says so, else None
    num_tokens: int | None = None  #: tokens in this response where the server reports them
    token_ids: tuple[int, ...] | None = None  #: token ids where the server returns them
    log_probs: tuple[float, ...] | None = None  #: log-prob of each new token (return_log_probs)
    top_log_probs: tuple[dict, ...] | None = None  #: per new token {token text: log-prob} where the server gives them
    parameters: dict | None = None  #: server stage info: tensorrt_llm_bls `image_info` JSON (+ response parameters)


@dataclass
class Completion:
    """A whole answer: concatenated text and every chunk."""

    text: str
    request_id: str
    chunks: list[Chunk] = field(default_factory=list)

    @property
    def finish_reason(self) -> str | None:
        return self.chunks[-1].finish_reason if self.chunks else None


def _final_flag(result) -> bool:
    param = result.get_response().parameters.get("triton_final_response")
    return bool(param is not None and param.bool_param)


def _parameters(result) -> dict | None:
    """What the server says about the request besides text: the multimodal `tensorrt_llm_bls` first
    response's `image_info` output (a JSON object, docs/INTERFACES.md) and any response parameters
    (bool / int64 / double / string; Triton's reserved `triton_*` left out)."""
    out = {}
    try:
        info = result.as_numpy("image_info")
    except Exception:  # pragma: no cover - output absent from this response
        info = None
    if info is not None and info.size:
        raw = info.reshape(-1)[0]
        try:
            got = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else str(raw))
            out.update(got if isinstance(got, dict) else {})
        except ValueError:
            log.debug("image_info is not JSON: %r", raw)
    for key, p in result.get_response().parameters.items():
        if key.startswith("triton_"):
            continue
        kind = p.WhichOneof("parameter_choice")
        if kind is not None:
            out[key] = getattr(p, kind)
    return out or None


def _texts(result) -> str:
    out = result.as_numpy("text_output")
    if out is None:
        return ""
    return "".join(x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in out.reshape(-1))


def _log_probs(result) -> tuple[float, ...] | None:
    try:
        arr = result.as_numpy("output_log_probs")
    except Exception:  # pragma: no cover - output absent from this response
        return None
    return None if arr is None or arr.size == 0 else tuple(float(x) for x in arr.reshape(-1))


class StreamingClient:
    """What every glmtrt streaming client shares: `async with`, and `generate()` over `stream()`."""

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def stream(self, prompt=None, **kwargs) -> AsyncIterator[Chunk]:  # pragma: no cover - overridden
        raise NotImplementedError

    async def generate(self, prompt: str | None = None, **kwargs) -> Completion:
        """The whole answer (streams underneath); same arguments as `stream`."""
        rid = kwargs.pop("request_id", None) or uuid.uuid4().hex
        chunks = []
        gen = self.stream(prompt, request_id=rid, **kwargs)
        try:
            async for chunk in gen:
                chunks.append(chunk)
        finally:
            await gen.aclose()
        return Completion(text="".join(c.text for c in chunks), request_id=rid, chunks=chunks)


class AsyncTritonClient(StreamingClient):
    """Asyncio gRPC client of one Triton server (`url` = host:port of its gRPC endpoint)."""

    def __init__(self, url: str, *, model: str = "ensemble", timeout: float = 300.0, verbose: bool = False):
        import tritonclient.grpc.aio as grpcaio

        self.url = url
        self.model = model
        self.timeout = timeout
        self._client = grpcaio.InferenceServerClient(url, verbose=verbose)
        self._names: dict[str, dict[str, str]] = {}

    async def close(self) -> None:
        """Close the channel (open streams end)."""
        await self._client.close()

    async def ready(self, model: str | None = None) -> bool:
        """True when the server answers ready and `model` (default: this client's) is ready."""
        try:
            return bool(await self._client.is_server_ready()
                        and await self._client.is_model_ready(model or self.model))
        except Exception as exc:  # any transport error means "not ready"
            log.debug("ready(%s): %s", self.url, exc)
            return False

    async def _call(self, what: str, coro):
        from tritonclient.utils import InferenceServerException

        try:
            return await coro
        except InferenceServerException as exc:
            raise GlmtrtError(f"Triton at {self.url}: {what}: {exc}",
                              fix="is the server running? (glmtrt serve REPO)") from None

    async def model_config(self, name: str | None = None) -> dict:
        """The model's configuration as Triton's JSON (`max_batch_size`, `input`, `parameters`, ...)."""
        got = await self._call("model config", self._client.get_model_config(name or self.model, as_json=True))
        return got.get("config", got)

    async def model_metadata(self, name: str | None = None) -> dict:
        """Model metadata (name, versions, platform, inputs, outputs)."""
        return await self._call("model metadata", self._client.get_model_metadata(name or self.model, as_json=True))

    async def server_metadata(self) -> dict:
        """Server metadata (name, version, extensions)."""
        return await self._call("server metadata", self._client.get_server_metadata(as_json=True))

    async def statistics(self, name: str = "") -> dict:
        """Triton's inference statistics (all models when `name` is empty), as JSON."""
        return await self._call("statistics", self._client.get_inference_statistics(model_name=name, as_json=True))

    async def _input_names(self, model: str) -> dict[str, str]:
        if model not in self._names:
            meta = await self.model_metadata(model)
            self._names[model] = resolve_names(i["name"] for i in meta.get("inputs", []))
        return self._names[model]

    async def stream(self, prompt: str | None = None, *, messages: Sequence[dict] | None = None, chat: bool = True,
                     max_tokens: int = 256, temperature: float | None = None, top_p: float | None = None,
                     top_k: int | None = None, seed: int | None = None, stop: Sequence[str] | None = None,
                     bad_words: Sequence[str] | None = None, min_tokens: int | None = None,
                     presence_penalty: float | None = None, frequency_penalty: float | None = None,
                     repetition_penalty: float | None = None, return_log_probs: bool = False,
                     request_id: str | None = None, model: str | None = None,
                     timeout: float | None = None, images: Sequence[bytes] | None = None) -> AsyncIterator[Chunk]:
        """Stream one answer as Chunks (see the module docstring); closing the generator cancels the request."""
        from tritonclient.grpc import InferResult
        from tritonclient.grpc._utils import _get_inference_request
        from tritonclient.utils import InferenceServerException
        import grpc

        if (prompt is None) == (messages is None):
            raise GlmtrtError("stream() takes a prompt or messages, not both and not neither")
        history: list[dict] = []
        if messages is not None:
            prompt, history = split_messages(messages)
            chat = True
        model = model or self.model
        timeout = self.timeout if timeout is None else timeout
        rid = request_id or uuid.uuid4().hex
        try:
            names = await self._input_names(model)
        except GlmtrtError:
            names = {}
        inputs = build_inputs(prompt, max_tokens=max_tokens, stream=True, stop_words=stop, bad_words=bad_words,
                              names=names, temperature=temperature, top_p=top_p, top_k=top_k, seed=seed,
                              min_tokens=min_tokens, presence_penalty=presence_penalty,
                              frequency_penalty=frequency_penalty, repetition_penalty=repetition_penalty,
                              return_log_probs=True if return_log_probs else None, images=images)
        request = _get_inference_request(
            model_name=model, inputs=inputs, model_version="", request_id=rid, outputs=None, sequence_id=0,
            sequence_start=False, sequence_end=False, priority=0, timeout=None,
            parameters=request_parameters(chat=chat, history=history))
        # tritonclient.grpc.aio has no enable_empty_final_response: set the reserved parameter the sync
        # client's async_stream_infer sets (tritonclient/grpc/_client.py), so the end is explicit.
        request.parameters["triton_enable_empty_final_response"].bool_param = True
        done = asyncio.Event()

        async def requests():
            yield request
            await done.wait()  # keep the request side open until the responses end

        call = self._client._client_stub.ModelStreamInfer(requests())
        index, finished = 0, False
        try:
            while True:
                try:
                    response = await asyncio.wait_for(call.read(), timeout)
                except asyncio.TimeoutError:
                    raise GlmtrtError(f"no response from {self.url} within {timeout:.0f} s (request {rid})",
                                      fix="check the server log; raise the timeout for slow models") from None
                except grpc.aio.AioRpcError as exc:
                    raise GlmtrtError(f"Triton at {self.url}: request {rid}: {exc.code().name}: {exc.details()}",
                                      fix="is the server running? (glmtrt serve REPO)") from None
                if response is grpc.aio.EOF:
                    raise GlmtrtError(f"Triton at {self.url} closed the stream of request {rid} before its end")
                now = time.perf_counter()
                if response.error_message:
                    raise GlmtrtError(f"server error for request {rid}: {response.error_message}")
                result = InferResult(response.infer_response)
                final = _final_flag(result)
                yield Chunk(text=_texts(result), time=now, index=index, final=final,
                            log_probs=_log_probs(result) if return_log_probs else None,
                            parameters=_parameters(result))
                index += 1
                if final:
                    finished = True
                    return
        except InferenceServerException as exc:
            raise GlmtrtError(f"Triton at {self.url}: {exc}") from None
        finally:
            done.set()  # half-close: the server ends the call
            if not finished and not call.done():
                call.cancel()  # early exit / error / task cancelled: Triton cancels the request
