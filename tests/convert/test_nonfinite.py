"""count_nonfinite (the NaN/Inf check on the hash lane) against numpy's own isnan/isinf."""
import numpy as np
import pytest

from glmtrt.checkpoint import file_sink
from glmtrt.checkpoint.file_sink import count_nonfinite


def _bf16_bytes(x: np.ndarray) -> bytes:
    return (x.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes()


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_counts_nan_and_inf_across_blocks(monkeypatch, dtype):
    monkeypatch.setattr(file_sink, "FINITE_STEP", 64)      # many blocks, a ragged last one
    rng = np.random.default_rng(0)
    np_dtype = np.float32 if dtype == "bfloat16" else np.dtype(dtype)
    x = (rng.standard_normal(1001) * 1e3).astype(np_dtype)
    x[[0, 31, 32, 500, 1000]] = [np.nan, np.inf, -np.inf, -np.nan, np.inf]
    x[7] = np.finfo(np.float16).max if dtype == "float16" else x[7]    # the largest finite value is finite
    data = _bf16_bytes(x) if dtype == "bfloat16" else x.tobytes()
    assert count_nonfinite(data, dtype) == 5
    assert count_nonfinite(data[: 8 * 2], dtype) >= 1              # the NaN at index 0
    clean = np.nan_to_num(x, nan=1.0, posinf=2.0, neginf=-2.0)
    assert count_nonfinite(_bf16_bytes(clean) if dtype == "bfloat16" else clean.tobytes(), dtype) == 0


def test_float8_e4m3fn_nan_patterns_only():
    # e4m3fn: no Inf; NaN is S.1111.111 (0x7F / 0xFF); 0x7E (448) and 0xFE (-448) are finite
    data = bytes([0x00, 0x7E, 0xFE, 0x7F, 0xFF, 0x78, 0x80])
    assert count_nonfinite(data, "float8_e4m3fn") == 2


def test_integer_and_empty():
    assert count_nonfinite(b"\xff" * 64, "int8") == 0
    assert count_nonfinite(b"", "float16") == 0
