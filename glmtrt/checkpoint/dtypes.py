"""One table of tensor dtypes: safetensors codes, canonical names, sizes, numpy dtypes.

Canonical names are what numpy/ml_dtypes and torch call the type (`str(torch.float16)` is
"torch.float16", `np.dtype(ml_dtypes.bfloat16).name` is "bfloat16"), so a dtype from either library
maps without importing torch. Safetensors codes: huggingface/safetensors `Dtype` (safetensors/src/tensor.rs).
"""
from __future__ import annotations

from typing import Any

from glmtrt.errors import GlmtrtError

#: canonical name -> (safetensors code, bytes per element)
DTYPES: dict[str, tuple[str, int]] = {
    "bool": ("BOOL", 1), "uint8": ("U8", 1), "int8": ("I8", 1), "int16": ("I16", 2), "uint16": ("U16", 2),
    "int32": ("I32", 4), "uint32": ("U32", 4), "int64": ("I64", 8), "uint64": ("U64", 8),
    "float16": ("F16", 2), "bfloat16": ("BF16", 2), "float32": ("F32", 4), "float64": ("F64", 8),
    "float8_e4m3fn": ("F8_E4M3", 1), "float8_e5m2": ("F8_E5M2", 1),
}
_BY_CODE = {code: name for name, (code, _) in DTYPES.items()}


def dtype_name(dtype: Any) -> str:
    """Canonical name of a torch dtype, numpy/ml_dtypes dtype, safetensors code or name."""
    text = str(dtype).removeprefix("torch.")
    if text in DTYPES:
        return text
    if text in _BY_CODE:
        return _BY_CODE[text]
    try:
        import numpy as np

        name = np.dtype(dtype).name
    except TypeError:
        name = None
    if name in DTYPES:
        return name
    raise GlmtrtError(f"unsupported tensor dtype {dtype!r}", expected=", ".join(DTYPES))


def st_code(dtype: Any) -> str:
    """Safetensors dtype code ("F16", "BF16", "I8", ...)."""
    return DTYPES[dtype_name(dtype)][0]


def itemsize(dtype: Any) -> int:
    """Bytes per element."""
    return DTYPES[dtype_name(dtype)][1]


def numpy_dtype(dtype: Any):
    """The numpy dtype of a name/code (bfloat16 and float8 through ml_dtypes)."""
    import numpy as np

    name = dtype_name(dtype)
    if name in ("bfloat16", "float8_e4m3fn", "float8_e5m2"):
        import ml_dtypes

        return np.dtype(getattr(ml_dtypes, name))
    return np.dtype(name)


def as_bytes(tensor: Any) -> memoryview:
    """A flat byte view of a C-contiguous numpy array, torch CPU tensor or bytes-like (no copy
    where the data is already contiguous)."""
    if type(tensor).__module__.startswith("torch"):
        import torch

        t = tensor.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        t = t.contiguous().reshape(-1)
        return memoryview(t.view(torch.uint8).numpy())
    if hasattr(tensor, "__array_interface__") and hasattr(tensor, "reshape"):
        import numpy as np

        arr = np.ascontiguousarray(tensor)
        return memoryview(arr.reshape(-1).view(np.uint8))
    return memoryview(tensor).cast("B")


def numpy_to_torch(arr):
    """A numpy array as a torch tensor sharing its memory, bit-exact (bfloat16 / float8 arrays of
    ml_dtypes go through a same-size integer view). Imports torch."""
    import torch

    if arr.dtype.name in ("bfloat16", "float8_e4m3fn", "float8_e5m2"):
        return torch.from_numpy(arr.view(f"int{8 * arr.dtype.itemsize}")).view(getattr(torch, arr.dtype.name))
    return torch.from_numpy(arr)
