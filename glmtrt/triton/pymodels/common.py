"""Shared helpers of glmtrt's Triton python models: config parameters, tensors, request errors,
TensorRT-LLM word lists, request parameters, tokenizer cache.

`triton_python_backend_utils` only exists inside the python-backend stub; `pb()` imports it
lazily so these modules also import in unit tests (which install `_pbfake`).
"""
from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: Request parameters (Triton request `parameters`, not tensors) our models understand. Triton
#: forwards a request's parameters to every step of an ensemble (verified on Triton 2.51), so
#: they need no config.pbtxt change. Unknown keys are rejected by preprocessing / BLS.
REQUEST_PARAMETERS = {
    "apply_chat_template": "bool: wrap text_input in the model's chat template (user turn + <|assistant|>)",
    "messages": 'str: JSON list of earlier turns [{"role": ..., "content": ...}]; implies the chat template',
    "output_mode": 'str: "delta" (each response holds new text, default) or "cumulative" (all text so far)',
}
OUTPUT_MODES = ("delta", "cumulative")


class RequestError(ValueError):
    """A bad request: becomes a TritonError response, the server stays healthy."""


def pb():
    """The python backend utils module (real inside Triton, `_pbfake` in unit tests)."""
    import triton_python_backend_utils as pb_utils  # provided by the python backend stub

    return pb_utils


def model_params(args: dict) -> dict[str, str]:
    """config.pbtxt `parameters` as {key: string_value}; unfilled `${...}` values are dropped."""
    cfg = json.loads(args["model_config"])
    out = {}
    for key, val in (cfg.get("parameters") or {}).items():
        s = val.get("string_value", "") if isinstance(val, dict) else str(val)
        if s and not s.startswith("${"):
            out[key] = s
    return out


def param_bool(params: dict[str, str], key: str, default: bool) -> bool:
    """A boolean model parameter ("true"/"false"/"1"/"0"/"yes"/"no")."""
    val = params.get(key)
    if val is None:
        return default
    return val.strip().lower() in ("1", "true", "yes", "on")


def repo_path(args: dict, value: str) -> Path:
    """A path parameter; relative paths are relative to the repository root."""
    p = Path(value)
    if not p.is_absolute():
        p = Path(args["model_repository"]).parent / p
    return p


_TOKENIZERS: dict[str, Any] = {}
_TOK_LOCK = threading.Lock()


def load_tokenizer_cached(path: Path):
    """One GLMTokenizer per directory per process."""
    from glmtrt.tokenizer import load_tokenizer

    key = str(Path(path).resolve())
    with _TOK_LOCK:
        if key not in _TOKENIZERS:
            _TOKENIZERS[key] = load_tokenizer(key)
        return _TOKENIZERS[key]


def tokenizer_from_args(args: dict, params: dict[str, str]):
    """The tokenizer named by the `tokenizer_dir` parameter (must be set)."""
    if "tokenizer_dir" not in params:
        raise RuntimeError(f"model {args.get('model_name')}: parameter tokenizer_dir is not set in config.pbtxt")
    return load_tokenizer_cached(repo_path(args, params["tokenizer_dir"]))


# ---- tensors ----------------------------------------------------------------------------
def get_array(request, name: str) -> np.ndarray | None:
    """The named input as numpy, or None when the request does not carry it."""
    t = pb().get_input_tensor_by_name(request, name)
    return None if t is None else t.as_numpy()


def get_scalar(request, name: str, default=None):
    """First element of an input (per-request scalars are [batch, 1]), as a python value."""
    arr = get_array(request, name)
    if arr is None or arr.size == 0:
        return default
    return arr.reshape(-1)[0].item()


def get_strings(request, name: str) -> list[str] | None:
    """A STRING input flattened to python str (UTF-8); None when absent."""
    arr = get_array(request, name)
    if arr is None:
        return None
    out = []
    for item in arr.reshape(-1):
        if isinstance(item, bytes):
            try:
                item = item.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise RequestError(f"input {name} is not valid UTF-8 ({exc})") from exc
        out.append(str(item))
    return out


def bytes_array(texts: list[str], shape: tuple[int, ...]) -> np.ndarray:
    """A numpy object array of UTF-8 bytes for a TYPE_STRING output."""
    return np.array([t.encode("utf-8") for t in texts], dtype=object).reshape(shape)


def error_response(message: str):
    """An InferenceResponse carrying a TritonError."""
    p = pb()
    return p.InferenceResponse(output_tensors=[], error=p.TritonError(message))


# ---- request parameters -----------------------------------------------------------------
def send(sender, response=None, flags: int = 0) -> None:
    """`sender.send(response, flags)`, holding a Python reference to every output tensor until it returns.

    Why (issue #13, the stub segfault in `_PyObject_Malloc`): python_backend's `ResponseSender::Send`
    (src/response_sender.cc, r24.10 = Triton 2.51) releases the GIL first, then drops the outputs the
    requester did not ask for (`InferResponse::PruneOutputTensors`). A dropped tensor whose last owner
    was the response is destroyed right there, and with it its numpy array: a Py_DECREF and a pymalloc
    free without the GIL, which corrupts the object heap when another thread (our engine loop) allocates
    at the same moment. With these references alive the prune only releases the response's share, and
    the tensors die after the call, under the GIL. Every decoupled send in our models goes through here.
    """
    held = response.output_tensors() if response is not None and hasattr(response, "output_tensors") else None
    try:
        if response is None:
            sender.send(flags=flags)
        else:
            sender.send(response, flags=flags)
    finally:
        del held


def request_parameters(request, *, strict: bool) -> dict[str, Any]:
    """The request's parameters (JSON object). With `strict`, unknown keys and bad values raise."""
    raw = request.parameters() if hasattr(request, "parameters") else "{}"
    try:
        params = json.loads(raw or "{}")
    except json.JSONDecodeError as exc:  # pragma: no cover - Triton always sends JSON
        raise RequestError(f"unreadable request parameters {raw!r}") from exc
    if not strict:
        return params
    unknown = sorted(set(params) - set(REQUEST_PARAMETERS))
    if unknown:
        raise RequestError(f"unknown request parameter(s) {', '.join(unknown)}; "
                           f"known: {', '.join(REQUEST_PARAMETERS)}")
    if "apply_chat_template" in params and not isinstance(params["apply_chat_template"], bool):
        raise RequestError(f"request parameter apply_chat_template={params['apply_chat_template']!r} must be a bool")
    if "messages" in params and not isinstance(params["messages"], str):
        raise RequestError("request parameter messages must be a JSON string")
    if params.get("output_mode", "delta") not in OUTPUT_MODES:
        raise RequestError(f"request parameter output_mode={params['output_mode']!r}; "
                           f"expected one of {', '.join(OUTPUT_MODES)}")
    return params


# ---- TensorRT-LLM word lists --------------------------------------------------------------
def to_words_list(words: list[list[int]]) -> np.ndarray:
    """TensorRT-LLM `[2, L]` stop/bad words format of one request.

    Row 0: all words' ids concatenated (padded with 0); row 1: the end offset of each word
    (padded with -1); at least one column, so "no words" is [[0], [-1]]. Format of
    TensorRT-LLM 1.2.x triton_backend/all_models/inflight_batcher_llm/preprocessing/1/model.py
    (`_to_word_list_format`) and tensorrt_llm/runtime/generation.py.
    """
    flat: list[int] = []
    offsets: list[int] = []
    for w in words:
        if not w:
            continue
        flat.extend(int(i) for i in w)
        offsets.append(len(flat))
    width = max(1, len(flat), len(offsets))
    out = np.zeros((2, width), dtype=np.int32)
    out[1, :] = -1
    out[0, :len(flat)] = flat
    out[1, :len(offsets)] = offsets
    return out


def from_words_list(arr: np.ndarray | None) -> list[list[int]]:
    """Inverse of `to_words_list` for one request ([2, L]); tolerant of -1 padding."""
    if arr is None:
        return []
    arr = np.asarray(arr).reshape(2, -1)
    words, start = [], 0
    for end in arr[1]:
        end = int(end)
        if end < 0:
            break
        if end > start:
            words.append([int(i) for i in arr[0, start:end]])
        start = end
    return words


def stack_words(lists: list[np.ndarray]) -> np.ndarray:
    """Batch several `[2, L_i]` lists into `[B, 2, max L]` (ids padded 0, offsets -1)."""
    width = max(a.shape[1] for a in lists)
    out = np.zeros((len(lists), 2, width), dtype=np.int32)
    out[:, 1, :] = -1
    for b, a in enumerate(lists):
        out[b, :, :a.shape[1]] = a
    return out


class RequestThreads:
    """One daemon thread per decoupled request; `join` waits for those still running (finalize)."""

    def __init__(self) -> None:
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()

    def start(self, target, *args) -> None:
        """Run target(*args) in a new thread that forgets itself when done."""
        def run():
            try:
                target(*args)
            finally:
                with self._lock:
                    self._threads.discard(threading.current_thread())

        t = threading.Thread(target=run, daemon=True)
        with self._lock:
            self._threads.add(t)
        t.start()

    def join(self, timeout: float = 5.0) -> None:
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join(timeout=timeout)
