"""The Triton side of the OpenAI endpoint: asyncio gRPC calls to a glmtrt repository.

- generation streams from `ensemble` or `tensorrt_llm_bls` through glmtrt.client.aio.AsyncTritonClient
  with `return_log_probs`, so every response's `output_log_probs` row tells how many tokens the
  engine produced (real completion counts; client tensors of TensorRT-LLM 1.2.x
  .../inflight_batcher_llm/ensemble/config.pbtxt);
- the prompt's token count comes from the repository's `preprocessing` model (the same chat
  template and tokenizer the engine is fed with), so `usage.prompt_tokens` is real too;
- closing a stream cancels its gRPC call, which Triton turns into a cancelled request
  (the engine stops generating: `response_sender.is_cancelled()`).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import AsyncIterator

import numpy as np

from glmtrt.client.request import request_parameters
from glmtrt.errors import GlmtrtError

log = logging.getLogger(__name__)

PREPROCESSING = "preprocessing"
IMAGES = "images"      # the multimodal ensemble / BLS input (glmtrt.client.images.IMAGE_INPUT)
_OVER_LIMIT = re.compile(r"prompt has (\d+) tokens, over max_input_len=(\d+)")


class BackendError(Exception):
    """A Triton failure with the HTTP status the API should answer with."""

    def __init__(self, message: str, status: int = 500, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass
class Sampling:
    """Engine sampling inputs of one request (None: the engine's default)."""

    max_tokens: int
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    stop: list[str] = field(default_factory=list)


@dataclass
class Chunk:
    """One streamed response: new text, how many tokens it carried, whether it is the last."""

    text: str
    tokens: int
    final: bool


def classify(exc: Exception, url: str) -> BackendError:
    """Map a tritonclient / gRPC / glmtrt client error to an HTTP status: 400 bad request,
    503 unreachable or not ready, 504 no answer in time."""
    msg = str(exc)
    status = getattr(exc, "status", None)
    status = str((status() if callable(status) else status) or "")
    if ("DEADLINE_EXCEEDED" in status or "Deadline Exceeded" in msg or "DEADLINE_EXCEEDED" in msg
            or re.search(r"no response from .* within", msg)):
        return BackendError(f"Triton at {url} did not answer in time: {msg}", 504, "timeout")
    if ("UNAVAILABLE" in status or "UNAVAILABLE" in msg or "failed to connect" in msg.lower()
            or "connection refused" in msg.lower()):
        return BackendError(f"Triton at {url} is unreachable: {msg}", 503, "triton_unavailable")
    if "NOT_FOUND" in status or "is not ready" in msg or "unknown model" in msg.lower():
        return BackendError(f"Triton at {url}: {msg}", 503, "model_not_ready")
    m = _OVER_LIMIT.search(msg)
    if m:
        return BackendError(f"This model's maximum input length is {m.group(2)} tokens; the prompt has "
                            f"{m.group(1)} tokens.", 400, "context_length_exceeded")
    return BackendError(msg, 400, None)


class TritonBackend:
    """Async access to one Triton server (gRPC `url`, host:port) serving a glmtrt repository.

    Clients are created on first use, inside the event loop that then owns their channels.
    """

    def __init__(self, url: str, *, model: str = "ensemble", timeout: float = 300.0):
        self.url = url
        self.model = model
        self.timeout = timeout
        self._aio = None       # glmtrt.client.aio.AsyncTritonClient: streams, readiness, configs
        self._raw = None       # tritonclient.grpc.aio client: the non-streaming preprocessing call
        self.active = 0        # streams to Triton open right now
        self.cancelled = 0     # streams closed before their final response (request cancelled)
        self._pre_images: str | None = None   # preprocessing's image input name ("" = none)
        self._images_ok: bool | None = None   # the generating model declares `images`

    def client(self):
        """The shared AsyncTritonClient."""
        if self._aio is None:
            from glmtrt.client.aio import AsyncTritonClient

            self._aio = AsyncTritonClient(self.url, model=self.model, timeout=self.timeout)
        return self._aio

    async def close(self) -> None:
        for c in (self._aio, self._raw):
            if c is not None:
                await c.close()
        self._aio = self._raw = None

    async def ready(self, model: str | None = None) -> tuple[bool, str]:
        """(ready, why): the server and both the generating and the preprocessing model are ready."""
        for name in (model or self.model, PREPROCESSING):
            if not await self.client().ready(name):
                return False, f"Triton at {self.url} is unreachable or model {name} is not ready"
        return True, "ready"

    async def max_input_len(self) -> int | None:
        """The prompt limit the preprocessing model enforces (config parameter max_input_len)."""
        try:
            cfg = await self.client().model_config(PREPROCESSING)
        except GlmtrtError:
            return None
        val = ((cfg.get("parameters") or {}).get("max_input_len") or {}).get("string_value", "")
        return int(val) if val.isdigit() else None

    async def accepts_images(self) -> bool:
        """True when the generating model declares the multimodal `images` input (asked once; an
        unreachable server is asked again next time)."""
        if self._images_ok is None:
            try:
                meta = await self.client().model_metadata(self.model)
            except GlmtrtError:
                return False
            self._images_ok = any(i.get("name") == IMAGES for i in meta.get("inputs", []))
        return self._images_ok

    async def _preprocessing_image_input(self) -> str | None:
        """The preprocessing model's image input name (multimodal repositories), else None."""
        if self._pre_images is None:
            try:
                meta = await self.client().model_metadata(PREPROCESSING)
                names = [i.get("name", "") for i in meta.get("inputs", [])]
            except GlmtrtError:
                names = []
            self._pre_images = next((n for n in names if n.lower() == IMAGES), "")
        return self._pre_images or None

    async def count_prompt_tokens(self, prompt: str, messages: list[dict] | None,
                                  images: list[bytes] | None = None) -> int:
        """Prompt tokens as the engine will see them (preprocessing's REQUEST_INPUT_LEN).

        Chat requests send every message in the `messages` parameter with an empty prompt (the
        preprocessing model appends a non-empty prompt as the last user turn). A prompt over the
        model's limit still gets its real count (parsed from the refusal).
        """
        import tritonclient.grpc as grpcclient
        import tritonclient.grpc.aio as grpcaio

        if self._raw is None:
            self._raw = grpcaio.InferenceServerClient(self.url)
        q = grpcclient.InferInput("QUERY", [1, 1], "BYTES")
        q.set_data_from_numpy(np.array([[prompt.encode("utf-8")]], dtype=object))
        n = grpcclient.InferInput("REQUEST_OUTPUT_LEN", [1, 1], "INT32")
        n.set_data_from_numpy(np.array([[1]], dtype=np.int32))
        inputs = [q, n]
        name = await self._preprocessing_image_input() if images else None
        if name:       # image placeholder tokens count as prompt tokens, as the engine sees them
            im = grpcclient.InferInput(name, [1, len(images)], "BYTES")
            arr = np.empty((1, len(images)), dtype=object)
            arr[0, :] = list(images)
            im.set_data_from_numpy(arr)
            inputs.append(im)
        params = request_parameters(chat=messages is not None, history=messages)
        try:
            res = await self._raw.infer(PREPROCESSING, inputs, parameters=params,
                                        outputs=[grpcclient.InferRequestedOutput("REQUEST_INPUT_LEN")],
                                        client_timeout=self.timeout)
        except Exception as exc:
            m = _OVER_LIMIT.search(str(exc))
            if m:
                return int(m.group(1))
            raise classify(exc, self.url) from exc
        return int(res.as_numpy("REQUEST_INPUT_LEN").reshape(-1)[0])

    async def stream(self, prompt: str, messages: list[dict] | None, sampling: Sampling,
                     model: str | None = None, images: list[bytes] | None = None) -> AsyncIterator[Chunk]:
        """Stream one generation (`messages`: a chat, else the raw `prompt`).

        Closing the iterator early cancels the Triton request (AsyncTritonClient cancels its call).
        """
        kwargs = dict(max_tokens=sampling.max_tokens, temperature=sampling.temperature, top_p=sampling.top_p,
                      top_k=sampling.top_k, seed=sampling.seed, stop=sampling.stop or None,
                      presence_penalty=sampling.presence_penalty, frequency_penalty=sampling.frequency_penalty,
                      return_log_probs=True, model=model or self.model, images=images or None)
        if messages is not None:
            gen = self.client().stream(messages=messages, **kwargs)
        else:
            gen = self.client().stream(prompt, chat=False, **kwargs)
        self.active += 1
        done = False
        try:
            async for c in gen:
                done = c.final
                yield Chunk(c.text, len(c.log_probs or ()), c.final)
                if done:
                    return
        except GlmtrtError as exc:
            raise classify(exc, self.url) from exc
        finally:
            self.active -= 1
            if not done:
                self.cancelled += 1
            await gen.aclose()       # cancels the gRPC call when the stream did not end
