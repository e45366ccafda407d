"""The Triton side of the OpenAI endpoint: asyncio gRPC calls to a glmtrt repository.

- generation streams from `ensemble` or `tensorrt_llm_bls` (client tensors of TensorRT-LLM 1.2.x
  .../inflight_batcher_llm/ensemble/config.pbtxt) with `return_log_probs`, so every response's
  `output_log_probs` row tells how many tokens the engine produced (real completion counts);
- the prompt's token count comes from the repository's `preprocessing` model (the same chat
  template and tokenizer the engine is fed with), so `usage.prompt_tokens` is real too;
- closing a stream cancels its gRPC call, which Triton turns into a cancelled request
  (the engine stops generating: `response_sender.is_cancelled()`).
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from dataclasses import dataclass, field
from typing import AsyncIterator

import numpy as np

from glmtrt.client.stream import build_inputs

log = logging.getLogger(__name__)

PREPROCESSING = "preprocessing"
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
    """Map a tritonclient / gRPC error to an HTTP status: bad request 400, unavailable 503, timeout 504."""
    msg = str(exc)
    status = getattr(exc, "status", lambda: None)()
    status = str(status or "")
    if "DEADLINE_EXCEEDED" in status or "Deadline Exceeded" in msg:
        return BackendError(f"Triton at {url} did not answer in time: {msg}", 504, "timeout")
    if "UNAVAILABLE" in status or "failed to connect" in msg.lower() or "connection refused" in msg.lower():
        return BackendError(f"Triton at {url} is unreachable: {msg}", 503, "triton_unavailable")
    if "NOT_FOUND" in status or "is not ready" in msg or "unknown model" in msg.lower():
        return BackendError(f"Triton at {url}: {msg}", 503, "model_not_ready")
    m = _OVER_LIMIT.search(msg)
    if m:
        return BackendError(f"This model's maximum input length is {m.group(2)} tokens; the prompt has "
                            f"{m.group(1)} tokens.", 400, "context_length_exceeded")
    return BackendError(msg, 400, None)


class TritonBackend:
    """Async access to one Triton server (gRPC `url`, host:port) serving a glmtrt repository."""

    def __init__(self, url: str, *, model: str = "ensemble", timeout: float = 300.0):
        self.url = url
        self.model = model
        self.timeout = timeout
        self._client = None
        self.active = 0        # streams to Triton open right now
        self.cancelled = 0     # streams closed before their final response (request cancelled)

    def client(self):
        """The asyncio gRPC client (created on first use, inside the running event loop)."""
        if self._client is None:
            import tritonclient.grpc.aio as grpcaio

            self._client = grpcaio.InferenceServerClient(self.url)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def ready(self, model: str | None = None) -> tuple[bool, str]:
        """(ready, why): the server and both the generation and preprocessing models are ready."""
        try:
            c = self.client()
            if not await c.is_server_ready(client_timeout=5):
                return False, f"Triton at {self.url} is not ready"
            for name in (model or self.model, PREPROCESSING):
                if not await c.is_model_ready(name, client_timeout=5):
                    return False, f"model {name} is not ready on Triton at {self.url}"
        except Exception as exc:  # unreachable server, broken channel
            return False, f"Triton at {self.url} is unreachable ({type(exc).__name__}: {str(exc)[:200]})"
        return True, "ready"

    async def max_input_len(self) -> int | None:
        """The prompt limit the preprocessing model enforces (config parameter max_input_len)."""
        try:
            cfg = await self.client().get_model_config(PREPROCESSING, as_json=True, client_timeout=5)
        except Exception:
            return None
        val = (cfg.get("config", {}).get("parameters", {}).get("max_input_len", {}) or {}).get("string_value", "")
        return int(val) if val.isdigit() else None

    @staticmethod
    def parameters(messages: list[dict] | None) -> dict:
        """Request parameters glmtrt's models understand (glmtrt.triton.pymodels.common.REQUEST_PARAMETERS)."""
        params: dict = {"output_mode": "delta"}
        if messages is not None:
            params["apply_chat_template"] = True
            params["messages"] = json.dumps(messages, ensure_ascii=False)
        return params

    async def count_prompt_tokens(self, prompt: str, messages: list[dict] | None) -> int:
        """Prompt tokens as the engine will see them (preprocessing's REQUEST_INPUT_LEN).

        A prompt over the model's limit still gets its real count (parsed from the error).
        """
        import tritonclient.grpc as grpcclient

        q = grpcclient.InferInput("QUERY", [1, 1], "BYTES")
        q.set_data_from_numpy(np.array([[prompt.encode("utf-8")]], dtype=object))
        n = grpcclient.InferInput("REQUEST_OUTPUT_LEN", [1, 1], "INT32")
        n.set_data_from_numpy(np.array([[1]], dtype=np.int32))
        try:
            res = await self.client().infer(PREPROCESSING, [q, n], parameters=self.parameters(messages),
                                            outputs=[grpcclient.InferRequestedOutput("REQUEST_INPUT_LEN")],
                                            client_timeout=self.timeout)
        except Exception as exc:
            m = _OVER_LIMIT.search(str(exc))
            if m:
                return int(m.group(1))
            raise classify(exc, self.url) from exc
        return int(res.as_numpy("REQUEST_INPUT_LEN").reshape(-1)[0])

    async def stream(self, prompt: str, messages: list[dict] | None, sampling: Sampling,
                     request_id: str | None = None, model: str | None = None) -> AsyncIterator[Chunk]:
        """Stream one generation. Closing the iterator early cancels the Triton request."""
        inputs = build_inputs(prompt, max_tokens=sampling.max_tokens, temperature=sampling.temperature,
                              top_k=sampling.top_k, top_p=sampling.top_p, seed=sampling.seed,
                              stop_words=sampling.stop or None, stream=True)
        inputs += _penalties(sampling)
        inputs.append(_bool_input("return_log_probs", True))
        params = self.parameters(messages)
        # asks Triton for the empty final response (what tritonclient's sync
        # async_stream_infer(enable_empty_final_response=True) sets); consumed by Triton's frontend
        params["triton_enable_empty_final_response"] = True
        rid = request_id or uuid.uuid4().hex

        async def requests():
            yield {"model_name": model or self.model, "inputs": inputs, "request_id": rid, "parameters": params}

        try:
            responses = self.client().stream_infer(requests(), stream_timeout=self.timeout)
        except Exception as exc:
            raise classify(exc, self.url) from exc
        self.active += 1
        done = False
        try:
            async for result, error in responses:
                if error is not None:
                    raise classify(error, self.url)
                text = "".join(_texts(result.as_numpy("text_output")))
                lp = result.as_numpy("output_log_probs")
                tokens = int(lp.shape[-1]) if lp is not None and lp.size else 0
                final = result.get_response().parameters.get("triton_final_response")
                is_final = bool(final is not None and final.bool_param)
                yield Chunk(text, tokens, is_final)
                if is_final:
                    done = True
                    return
        except BackendError:
            raise
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise classify(exc, self.url) from exc
        finally:
            self.active -= 1
            if not done:
                self.cancelled += 1
                responses.cancel()  # the gRPC call's cancel: Triton cancels the request


def _texts(arr) -> list[str]:
    if arr is None:
        return []
    return [x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in arr.reshape(-1)]


def _bool_input(name: str, value: bool):
    import tritonclient.grpc as grpcclient

    t = grpcclient.InferInput(name, [1, 1], "BOOL")
    t.set_data_from_numpy(np.array([[value]], dtype=bool))
    return t


def _penalties(sampling: Sampling) -> list:
    import tritonclient.grpc as grpcclient

    out = []
    for name in ("presence_penalty", "frequency_penalty"):
        val = getattr(sampling, name)
        if val is not None:
            t = grpcclient.InferInput(name, [1, 1], "FP32")
            t.set_data_from_numpy(np.array([[val]], dtype=np.float32))
            out.append(t)
    return out
