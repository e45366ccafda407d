"""OpenAI request bodies, their validation and translation to glmtrt's Triton request.

Field names and ranges follow OpenAI's API reference (chat/completions, completions);
`top_k`, `enable_thinking`, `return_reasoning`, `chat_template_kwargs` are the extensions vLLM
accepts in the body (the `openai` package sends them through `extra_body`). Unknown fields are
ignored, as OpenAI-compatible servers do; values out of range are a 400 naming the field.
"""
from __future__ import annotations

import time
import uuid
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from glmtrt.api.backend import Sampling

#: chat roles -> GLM roles (glmtrt.tokenizer chat template: system, user, assistant, observation)
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant",
         "tool": "observation", "function": "observation", "observation": "observation"}
DEFAULT_MAX_TOKENS = 256


class RequestError(ValueError):
    """A request the API refuses: 400 with OpenAI's error JSON (`param` names the field)."""

    def __init__(self, message: str, param: str | None = None, status: int = 400, code: str | None = None):
        super().__init__(message)
        self.param = param
        self.status = status
        self.code = code


class StreamOptions(BaseModel):
    include_usage: bool = False


class _Common(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    max_tokens: Optional[int] = Field(None, ge=1)
    temperature: Optional[float] = Field(None, ge=0.0, le=2.0)
    top_p: Optional[float] = Field(None, gt=0.0, le=1.0)
    top_k: Optional[int] = Field(None, ge=0)
    stop: Optional[Union[str, list[str]]] = None
    seed: Optional[int] = Field(None, ge=0, lt=2**64)
    presence_penalty: Optional[float] = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: Optional[float] = Field(None, ge=-2.0, le=2.0)
    n: Optional[int] = 1
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    user: Optional[str] = None


class ChatRequest(_Common):
    messages: list[dict[str, Any]] = Field(min_length=1)
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    enable_thinking: Optional[bool] = None
    return_reasoning: Optional[bool] = None
    chat_template_kwargs: Optional[dict[str, Any]] = None
    logprobs: Optional[bool] = None
    tools: Optional[list] = None


class CompletionRequest(_Common):
    prompt: Union[str, list[str]]
    echo: Optional[bool] = None
    logprobs: Optional[int] = None
    suffix: Optional[str] = None
    best_of: Optional[int] = None


def _stops(stop) -> list[str]:
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if len(stops) > 4:
        raise RequestError(f"stop has {len(stops)} entries; at most 4 are allowed", "stop")
    return [s for s in stops if s]


def sampling_of(req: _Common) -> Sampling:
    """Engine sampling inputs; n != 1 and unsupported options are refused."""
    if req.n not in (None, 1):
        raise RequestError(f"n={req.n}: this server returns one choice per request (n=1); "
                           "send n separate requests", "n")
    max_tokens = getattr(req, "max_completion_tokens", None) or req.max_tokens or DEFAULT_MAX_TOKENS
    return Sampling(max_tokens=max_tokens, temperature=req.temperature, top_p=req.top_p, top_k=req.top_k,
                    seed=req.seed, presence_penalty=req.presence_penalty,
                    frequency_penalty=req.frequency_penalty, stop=_stops(req.stop))


_IMAGE_PARTS = ("image_url", "input_image", "image")


def _image_of(part: dict, where: str):
    """One image content part -> a validated ImageFile. Only `data:image/...;base64,` URLs are
    taken: a remote http(s) URL is refused (this server fetches nothing on a client's behalf)."""
    from glmtrt.client.images import decode_data_url
    from glmtrt.errors import GlmtrtError

    ref = part.get("image_url", part.get("url", part.get("image")))
    url = ref.get("url") if isinstance(ref, dict) else ref
    if not isinstance(url, str) or not url:
        raise RequestError("image content part without a URL: expected "
                           '{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}', where)
    if url.startswith(("http://", "https://")):
        raise RequestError("remote image URLs are not fetched by this server; send the image inline as "
                           "a data:image/png;base64,... (or image/jpeg) URL", where, code="image_url_not_supported")
    try:
        return decode_data_url(url, "the image_url")
    except GlmtrtError as exc:
        raise RequestError(str(exc).splitlines()[0], where, code="invalid_image") from None


def _content_of(content, i: int) -> tuple[str, list]:
    """(text, images) of one message's content (a string or a list of text / image parts)."""
    where = f"messages[{i}].content"
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    if isinstance(content, list):
        parts, images = [], []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                parts.append(str(part.get("text", "")))
            elif kind in _IMAGE_PARTS:
                images.append(_image_of(part, where))
            else:
                raise RequestError(f"content part type {kind!r} is not supported (text and image_url)", where)
        return "".join(parts), images
    raise RequestError("content must be a string or a list of content parts", where)


def glm_chat(req: ChatRequest) -> tuple[list[dict], list]:
    """(GLM chat-template messages with text content, images of the last user turn).

    Images are taken from the last message, which must be the user's; an image in an earlier turn
    is refused (the repository attaches images to the turn being answered; Open-AutoGLM's agent
    strips earlier screenshots from its history the same way)."""
    out, images = [], []
    last = len(req.messages) - 1
    for i, m in enumerate(req.messages):
        role = m.get("role")
        if role not in ROLES:
            raise RequestError(f"role {role!r} is not supported; use one of {', '.join(ROLES)}",
                               f"messages[{i}].role")
        text, imgs = _content_of(m.get("content"), i)
        if imgs and (i != last or ROLES[role] != "user"):
            raise RequestError("images are accepted in the last user message only (send earlier turns as text)",
                               f"messages[{i}].content")
        images = imgs
        out.append({"role": ROLES[role], "content": text})
    if req.tools:
        raise RequestError("tools are not supported by this endpoint yet", "tools")
    if req.logprobs:
        raise RequestError("logprobs are not supported by this endpoint", "logprobs")
    return out, images


def glm_messages(req: ChatRequest) -> list[dict]:
    """The conversation as GLM chat-template messages (role mapped, text content)."""
    return glm_chat(req)[0]


def wants_reasoning(req: ChatRequest) -> bool:
    """Split `<think>` into reasoning_content when the request asks for thinking or reasoning."""
    kwargs = req.chat_template_kwargs or {}
    return bool(req.return_reasoning or req.enable_thinking or kwargs.get("enable_thinking"))


def completion_prompt(req: CompletionRequest) -> str:
    """The one prompt of a completions request (raw text, no chat template)."""
    prompt = req.prompt
    if isinstance(prompt, list):
        if len(prompt) != 1 or not isinstance(prompt[0], str):
            raise RequestError("send one text prompt per request (a list of exactly one string)", "prompt")
        prompt = prompt[0]
    for name in ("echo", "logprobs", "suffix"):
        if getattr(req, name):
            raise RequestError(f"{name} is not supported by this endpoint", name)
    if req.best_of not in (None, 1):
        raise RequestError(f"best_of={req.best_of}: only 1 is supported", "best_of")
    if not prompt:
        raise RequestError("prompt is empty", "prompt")
    return prompt


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def finish_reason(completion_tokens: int, max_tokens: int) -> Literal["stop", "length"]:
    """"length" when the engine produced max_tokens tokens, else "stop" (end id or a stop word).

    TensorRT-LLM's ensemble does not report why a request ended; a request that ends on a
    stop token exactly at max_tokens reads as "length".
    """
    return "length" if completion_tokens >= max_tokens else "stop"


def error_body(message: str, *, type_: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict:
    """OpenAI's error JSON."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error",
               500: "internal_error", 503: "service_unavailable", 504: "timeout"}
