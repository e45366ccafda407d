"""Request tensors and parameters for glmtrt's Triton models — one builder for every client.

Both the thread-based client (`glmtrt.client.stream`) and the asyncio client
(`glmtrt.client.aio`) build their requests here, so a tensor name or dtype is decided once.

Client-facing names differ between release lines: TensorRT-LLM 1.2.x repositories (our
templates/request_io.pbtxt) take `min_tokens` and `seed`; the tensorrtllm_backend v0.13.0 ensemble
and BLS (`all_models/inflight_batcher_llm/{ensemble,tensorrt_llm_bls}/config.pbtxt`, the T4 line)
take `min_length` and `random_seed` for the same values. `resolve_names(model_inputs)` picks the
name the served model declares, so one call works against either repository.
"""
from __future__ import annotations

import json
from typing import Iterable, Mapping, Sequence

import numpy as np

#: canonical input name -> names it has on other release lines (v0.13.0 ensemble / BLS).
ALIASES = {"min_tokens": ("min_length",), "seed": ("random_seed",)}
#: inputs only some repositories declare (1.2 with `glmtrt repo --guided-decoding xgrammar`).
GUIDED_INPUTS = ("guided_decoding_guide_type", "guided_decoding_guide")

#: canonical optional scalar inputs: name -> (numpy dtype, Triton dtype)
_SCALARS = {
    "temperature": (np.float32, "FP32"),
    "top_k": (np.int32, "INT32"),
    "top_p": (np.float32, "FP32"),
    "seed": (np.uint64, "UINT64"),
    "min_tokens": (np.int32, "INT32"),
    "presence_penalty": (np.float32, "FP32"),
    "frequency_penalty": (np.float32, "FP32"),
    "repetition_penalty": (np.float32, "FP32"),
    "length_penalty": (np.float32, "FP32"),
    "end_id": (np.int32, "INT32"),
    "pad_id": (np.int32, "INT32"),
    "beam_width": (np.int32, "INT32"),
    "return_log_probs": (bool, "BOOL"),
}


def resolve_names(model_inputs: Iterable[str]) -> dict[str, str]:
    """{canonical name: the name the served model uses} for the names that differ."""
    have = set(model_inputs)
    out = {}
    for canon, others in ALIASES.items():
        if canon not in have:
            for other in others:
                if other in have:
                    out[canon] = other
                    break
    return out


def request_names(model_config: Mapping) -> dict[str, str]:
    """Canonical input name -> the name the model declares, from its config as JSON (`{"input": [...]}`
    or the `{"config": {...}}` of tritonclient's get_model_config(as_json=True)). The renamed inputs
    (`resolve_names`) and the guided-decoding inputs appear only where the model declares them."""
    cfg = model_config.get("config", model_config)
    declared = {t.get("name") for t in cfg.get("input", [])}
    out = {c: c for c in (*ALIASES, *GUIDED_INPUTS) if c in declared}
    out.update(resolve_names(declared))
    return out


def _guided_arrays(guided_decoding, names: Mapping[str, str] | None) -> list[tuple[str, np.ndarray, str]]:
    from glmtrt.errors import GlmtrtError
    from glmtrt.triton.contract import GUIDE_TYPES

    guide_type, guide = guided_decoding
    if guide_type not in GUIDE_TYPES:
        raise GlmtrtError(f"guided decoding guide type {guide_type!r}", expected=" | ".join(GUIDE_TYPES))
    if guide_type != "json" and not guide:
        raise GlmtrtError(f"guide type {guide_type!r} needs a guide (schema, regex or grammar text)")
    if names is not None and not set(GUIDED_INPUTS) <= set(names):
        raise GlmtrtError("the model has no guided_decoding_guide_type input", expected="a repository that declares it",
                          fix="regenerate the repository (glmtrt repo --guided-decoding xgrammar) or drop the option")
    out = [(GUIDED_INPUTS[0], np.array([[guide_type.encode("utf-8")]], dtype=object), "BYTES")]
    if guide:
        out.append((GUIDED_INPUTS[1], np.array([[guide.encode("utf-8")]], dtype=object), "BYTES"))
    return out


def request_arrays(text: str, *, max_tokens: int, stream: bool = True, stop_words: Sequence[str] | None = None,
                   bad_words: Sequence[str] | None = None, names: Mapping[str, str] | None = None,
                   guided_decoding: tuple[str, str | None] | None = None,
                   images: Sequence[bytes] | None = None,
                   **optional) -> list[tuple[str, np.ndarray, str]]:
    """[(tensor name, array [1, n], Triton dtype)] for one request; `optional` values of None are left out.

    `optional` keys are the canonical scalar names (temperature, top_k, top_p, seed, min_tokens,
    presence_penalty, frequency_penalty, repetition_penalty, length_penalty, end_id, pad_id,
    beam_width, return_log_probs); `names` renames them for the served release line.
    `guided_decoding=(guide type, guide)`: JSON / schema / regex / grammar-constrained output
    (1.2 repositories made with `--guided-decoding xgrammar`).
    `images`: encoded image files (PNG / JPEG bytes, validated by glmtrt.client.images) for the
    multimodal repository's `images` input (TYPE_STRING, dims [-1]: one element per image).
    """
    names = names or {}
    unknown = set(optional) - set(_SCALARS)
    if unknown:
        raise TypeError(f"unknown request inputs {sorted(unknown)}; known: {sorted(_SCALARS)}")
    out = [("text_input", np.array([[text.encode("utf-8")]], dtype=object), "BYTES"),
           ("max_tokens", np.array([[max_tokens]], dtype=np.int32), "INT32"),
           ("stream", np.array([[stream]], dtype=bool), "BOOL")]
    for key, value in optional.items():
        if value is None:
            continue
        np_dtype, tr_dtype = _SCALARS[key]
        out.append((names.get(key, key), np.array([[value]], dtype=np_dtype), tr_dtype))
    for key, words in (("stop_words", stop_words), ("bad_words", bad_words)):
        if words:
            out.append((key, np.array([[w.encode("utf-8") for w in words]], dtype=object), "BYTES"))
    if guided_decoding is not None:
        out += _guided_arrays(guided_decoding, names)
    if images:
        arr = np.empty((1, len(images)), dtype=object)
        arr[0, :] = [bytes(b) for b in images]
        out.append(("images", arr, "BYTES"))
    return out


def build_inputs(text: str, **kwargs):
    """tritonclient.grpc InferInputs (also what tritonclient.grpc.aio takes) for `request_arrays`."""
    import tritonclient.grpc as grpcclient

    inputs = []
    for name, arr, dtype in request_arrays(text, **kwargs):
        t = grpcclient.InferInput(name, list(arr.shape), dtype)
        t.set_data_from_numpy(arr)
        inputs.append(t)
    return inputs


def split_messages(messages: Sequence[dict]) -> tuple[str, list[dict]]:
    """OpenAI-style messages -> (text of the last user turn, earlier turns for the `messages` parameter)."""
    msgs = list(messages)
    if not msgs or msgs[-1].get("role") != "user":
        from glmtrt.errors import GlmtrtError

        raise GlmtrtError("messages must end with a user turn",
                          expected='[..., {"role": "user", "content": "..."}]')
    return str(msgs[-1].get("content", "")), msgs[:-1]


def request_parameters(*, chat: bool, history: Sequence[dict] | None = None,
                       output_mode: str = "delta") -> dict:
    """Triton request parameters our preprocessing / BLS understand (pymodels.common.REQUEST_PARAMETERS)."""
    params: dict = {"output_mode": output_mode}
    if chat or history:
        params["apply_chat_template"] = True
    if history:
        params["messages"] = json.dumps(list(history), ensure_ascii=False)
    return params
