"""Streaming Triton gRPC client for glmtrt repositories (`ensemble` or `tensorrt_llm_bls`).

`stream_generate(url, text, ...)` yields text as the server streams it. The request carries a
unique request id (the ensemble's postprocessing keys its UTF-8-safe detokenizer on it) and
asks for the empty final response (`enable_empty_final_response=True`) so the end of a stream
is explicit. Request parameters `apply_chat_template`, `messages`, `output_mode` are glmtrt's
additions (glmtrt.triton.pymodels.common.REQUEST_PARAMETERS).

Input names follow the repository the client talks to, read from the server's model config
(`request_names`): a 0.13-toolchain (T4) repository calls `seed` / `min_tokens` `random_seed` /
`min_length`, as tensorrtllm_backend v0.13.0's ensemble and tensorrt_llm_bls do; 1.2.x uses
`seed` / `min_tokens`. `guided_decoding=(guide_type, guide)` needs a repository generated with
`glmtrt repo --guided-decoding xgrammar` (inputs `guided_decoding_guide_type` / `_guide`).
"""
from __future__ import annotations

import logging
import queue
import uuid
from typing import Iterator, Sequence

from glmtrt.client.request import build_inputs, request_names, request_parameters  # noqa: F401 (re-exported)
from glmtrt.errors import GlmtrtError

log = logging.getLogger(__name__)


def stream_generate(url: str, text: str, *, model: str = "ensemble", max_tokens: int = 256, chat: bool = True,
                    history: Sequence[dict] | None = None, temperature: float | None = None,
                    top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                    stop_words: Sequence[str] | None = None, bad_words: Sequence[str] | None = None,
                    output_mode: str = "delta", stream: bool = True, timeout: float = 300.0,
                    request_id: str | None = None, min_tokens: int | None = None,
                    guided_decoding: tuple[str, str | None] | None = None,
                    images: Sequence[bytes] | None = None) -> Iterator[str]:
    """Yield the answer to `text` from the Triton server at `url` (host:port of gRPC).

    `chat` applies the model's chat template server-side (`history`: earlier turns as
    [{"role", "content"}]). `output_mode` "delta" yields new text per response, "cumulative" the
    whole text so far. With `stream=False` one item (the full answer) is yielded. Input names
    come from the model's config on the server (`request_names`). `images`: encoded PNG / JPEG
    files for the multimodal repository (glmtrt.client.images.read_images validates them). Errors
    from the server raise GlmtrtError.
    """
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    params = request_parameters(chat=chat, history=history, output_mode=output_mode)
    rid = request_id or uuid.uuid4().hex
    results: queue.Queue = queue.Queue()
    client = grpcclient.InferenceServerClient(url)
    try:
        names = None
        if seed is not None or min_tokens is not None or guided_decoding is not None:
            names = request_names(client.get_model_config(model, as_json=True))
        inputs = build_inputs(text, max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                              seed=seed, min_tokens=min_tokens, stop_words=stop_words, bad_words=bad_words,
                              stream=stream, guided_decoding=guided_decoding, names=names, images=images)
        client.start_stream(callback=lambda result, error: results.put((result, error)))
        client.async_stream_infer(model, inputs, request_id=rid, parameters=params,
                                  enable_empty_final_response=True)
        while True:
            try:
                result, error = results.get(timeout=timeout)
            except queue.Empty:
                raise GlmtrtError(f"no response from {url} within {timeout:.0f} s (request {rid})",
                                  fix="check the server log; raise the timeout for slow models") from None
            if error is not None:
                raise GlmtrtError(f"server error for request {rid}: {error}")
            out = result.as_numpy("text_output")
            if out is not None:
                for item in out.reshape(-1):
                    piece = item.decode("utf-8") if isinstance(item, bytes) else str(item)
                    if piece:
                        yield piece
            final = result.get_response().parameters.get("triton_final_response")
            if final is not None and final.bool_param:
                return
    except InferenceServerException as exc:
        raise GlmtrtError(f"Triton at {url}: {exc}", fix="is the server running? (glmtrt serve REPO)") from exc
    finally:
        try:
            client.stop_stream(cancel_requests=True)
        except Exception:  # pragma: no cover - closing a broken stream
            pass
        client.close()


def generate(url: str, text: str, **kwargs) -> str:
    """The whole answer as one string (streams underneath, in delta mode)."""
    kwargs["output_mode"] = "delta"
    return "".join(stream_generate(url, text, **kwargs))
