"""Asyncio OpenAI-compatible streaming client (HTTP SSE) with AsyncTritonClient's `stream()` shape.

`AsyncOpenAIClient(base_url, model=..., api="chat"|"completions")` posts to
`{base_url}/chat/completions` (messages) or `{base_url}/completions` (prompt) with `stream: true`
and `stream_options: {"include_usage": true}`, and yields `glmtrt.client.aio.Chunk`s: one per SSE
`data:` event that carries a choice, plus a final `Chunk(final=True)` at `data: [DONE]` that
holds the server's `usage.completion_tokens` (`num_tokens`) and the finish reason. Works with
any OpenAI-compatible server (vLLM, SGLang, TensorRT-LLM's trtllm-serve, glmtrt's own endpoint).
`min_tokens` and `ignore_eos` are sent only when given (vLLM / SGLang extensions).
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from typing import AsyncIterator, Sequence

from glmtrt.client.aio import Chunk, StreamingClient
from glmtrt.errors import GlmtrtError

log = logging.getLogger(__name__)


class AsyncOpenAIClient(StreamingClient):
    """Streaming client of an OpenAI-compatible server (`base_url` ends in /v1)."""

    def __init__(self, base_url: str, *, model: str, api: str = "chat", timeout: float = 300.0,
                 api_key: str | None = None):
        import httpx

        if api not in ("chat", "completions"):
            raise GlmtrtError(f"api {api!r}", expected="chat | completions")
        self.url = base_url.rstrip("/")
        self.model = model
        self.api = api
        self.timeout = timeout
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=256)
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=30.0), limits=limits, headers=headers)

    async def close(self) -> None:
        await self._http.aclose()

    async def ready(self) -> bool:
        """True when GET {base_url}/models answers 200."""
        try:
            return (await self._http.get(f"{self.url}/models")).status_code == 200
        except Exception as exc:
            log.debug("ready(%s): %s", self.url, exc)
            return False

    async def server_metadata(self) -> dict:
        """{"models": [...]} from GET /models (what an OpenAI server says about itself)."""
        try:
            r = await self._http.get(f"{self.url}/models")
            return {"models": r.json().get("data", [])} if r.status_code == 200 else {}
        except Exception:
            return {}

    def _body(self, prompt, messages, *, max_tokens, temperature, top_p, top_k, seed, stop, min_tokens,
              presence_penalty, frequency_penalty, return_log_probs, ignore_eos) -> tuple[str, dict]:
        body: dict = {"model": self.model, "max_tokens": max_tokens, "stream": True,
                      "stream_options": {"include_usage": True}}
        if self.api == "chat":
            body["messages"] = list(messages) if messages is not None else [{"role": "user", "content": prompt}]
            path = "/chat/completions"
            if return_log_probs:
                body["logprobs"], body["top_logprobs"] = True, 5
        else:
            if messages is not None:
                raise GlmtrtError("the completions API takes a prompt, not messages", fix="use --api openai-chat")
            body["prompt"] = prompt
            path = "/completions"
            if return_log_probs:
                body["logprobs"] = 5
        for key, val in (("temperature", temperature), ("top_p", top_p), ("top_k", top_k), ("seed", seed),
                         ("stop", list(stop) if stop else None), ("min_tokens", min_tokens),
                         ("presence_penalty", presence_penalty), ("frequency_penalty", frequency_penalty),
                         ("ignore_eos", ignore_eos)):
            if val is not None:
                body[key] = val
        return path, body

    async def stream(self, prompt: str | None = None, *, messages: Sequence[dict] | None = None, chat: bool = True,
                     max_tokens: int = 256, temperature: float | None = None, top_p: float | None = None,
                     top_k: int | None = None, seed: int | None = None, stop: Sequence[str] | None = None,
                     min_tokens: int | None = None, presence_penalty: float | None = None,
                     frequency_penalty: float | None = None, return_log_probs: bool = False,
                     ignore_eos: bool | None = None, request_id: str | None = None,
                     images: Sequence[bytes] | None = None, **_ignored) -> AsyncIterator[Chunk]:
        """Stream one answer as Chunks; closing the generator closes the HTTP response (the server cancels).
        `images` (encoded PNG / JPEG) go with the last user turn as `image_url` data-URL parts (chat API)."""
        import httpx

        if (prompt is None) == (messages is None):
            raise GlmtrtError("stream() takes a prompt or messages, not both and not neither")
        if images:
            if self.api != "chat":
                raise GlmtrtError("images need the chat API", fix="use --api openai-chat")
            from glmtrt.client.images import data_url

            messages = list(messages) if messages is not None else [{"role": "user", "content": prompt}]
            prompt = None
            last = dict(messages[-1])
            last["content"] = ([{"type": "image_url", "image_url": {"url": data_url(b)}} for b in images]
                               + [{"type": "text", "text": str(last.get("content") or "")}])
            messages[-1] = last
        path, body = self._body(prompt, messages, max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                                top_k=top_k, seed=seed, stop=stop, min_tokens=min_tokens,
                                presence_penalty=presence_penalty, frequency_penalty=frequency_penalty,
                                return_log_probs=return_log_probs, ignore_eos=ignore_eos)
        rid = request_id or uuid.uuid4().hex
        index, finish, usage = 0, None, None
        try:
            async with self._http.stream("POST", self.url + path, json=body,
                                         headers={"X-Request-Id": rid}) as resp:
                if resp.status_code != 200:
                    detail = (await resp.aread()).decode("utf-8", "replace")[:500]
                    raise GlmtrtError(f"{self.url}{path} answered HTTP {resp.status_code} (request {rid}): {detail}")
                async for line in resp.aiter_lines():
                    now = time.perf_counter()
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    event = json.loads(data)
                    if event.get("usage"):
                        usage = event["usage"]
                    if event.get("error"):
                        raise GlmtrtError(f"server error for request {rid}: {event['error']}")
                    for choice in event.get("choices") or []:
                        text = (choice.get("delta") or {}).get("content") if self.api == "chat" else choice.get("text")
                        finish = choice.get("finish_reason") or finish
                        lp = _log_probs(choice.get("logprobs")) if return_log_probs else None
                        yield Chunk(text=text or "", time=now, index=index,
                                    log_probs=tuple(v for v, _ in lp) if lp else None,
                                    top_log_probs=tuple(t for _, t in lp) if lp else None)
                        index += 1
        except httpx.HTTPError as exc:
            raise GlmtrtError(f"{self.url}{path}: {type(exc).__name__}: {exc} (request {rid})",
                              fix="is the server running and the URL its /v1 base?") from None
        except json.JSONDecodeError as exc:
            raise GlmtrtError(f"{self.url}{path}: an SSE event is not JSON: {exc}") from None
        yield Chunk(text="", time=time.perf_counter(), index=index, final=True, finish_reason=finish,
                    num_tokens=(usage or {}).get("completion_tokens"))


def _log_probs(lp) -> tuple | None:
    """Per-token log-probs of an OpenAI choice: chat `{"content": [{"logprob", "top_logprobs"}]}` or
    completions `{"token_logprobs": [...], "top_logprobs": [{tok: lp}]}` -> tuple of (logprob, {tok: lp})."""
    if not lp:
        return None
    if "content" in lp:
        return tuple((e.get("logprob"), {t["token"]: t["logprob"] for t in e.get("top_logprobs") or []})
                     for e in lp["content"] or [])
    tops = lp.get("top_logprobs") or [None] * len(lp.get("token_logprobs") or [])
    return tuple((v, t or {}) for v, t in zip(lp.get("token_logprobs") or [], tops))
