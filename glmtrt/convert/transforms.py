"""Small pure array transforms used by the weight maps (each unit-tested).

They take and return numpy arrays (views where the result is a plain slice) and use only row
selection, concatenation, repetition and padding, so the converter can also run them on an index
grid to learn where every output row comes from (glmtrt/convert/trace.py) and copy those rows
file to file without loading them.

Each numerical quirk cites TensorRT-LLM 1.2.x tensorrt_llm/models/chatglm/convert.py.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from glmtrt.errors import GlmtrtError


def concat_rows(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Concatenate along dim 0 (q, k, v projections -> one fused qkv)."""
    return np.concatenate(list(arrays), axis=0)


def swap_gate_up(t: np.ndarray) -> np.ndarray:
    """[gate; up] -> [up; gate] along dim 0.

    HF ChatGLM `dense_h_to_4h` and transformers `gate_up_proj` put the SiLU-gated half first;
    TensorRT-LLM's swiglu gates the SECOND half, so convert.py `swap_and_split_mlp` swaps them.
    """
    if t.shape[0] % 2:
        raise GlmtrtError(f"gate/up tensor has an odd first dimension {tuple(t.shape)}",
                          expected="2 * intermediate_size rows")
    half = t.shape[0] // 2
    return np.concatenate([t[half:], t[:half]], axis=0)


def check_divisible(n: int, tp: int, what: str) -> None:
    """Raise a GlmtrtError naming `what` unless tp divides n."""
    if n % tp:
        raise GlmtrtError(f"{what} = {n} is not divisible by tp_size {tp}",
                          expected=f"a tp_size that divides {what}", fix="choose another --tp-size")


def split_dim(t: np.ndarray, rank: int, tp: int, dim: int) -> np.ndarray:
    """Rank `rank`'s contiguous 1/tp slice along `dim` (column/row parallel linears); a view."""
    if tp == 1:
        return t
    check_divisible(t.shape[dim], tp, f"dimension {dim} of shape {tuple(t.shape)}")
    step = t.shape[dim] // tp
    index = [slice(None)] * t.ndim
    index[dim] = slice(rank * step, (rank + 1) * step)
    return t[tuple(index)]


def split_halves(t: np.ndarray, rank: int, tp: int) -> np.ndarray:
    """Split each half of a fused [a; b] tensor by rank and re-fuse: [a_r; b_r].

    This is how convert.py shards the fused gate/up `mlp.fc` (swap_and_split_mlp).
    """
    if tp == 1:
        return t
    half = t.shape[0] // 2
    return np.concatenate([split_dim(t[:half], rank, tp, 0), split_dim(t[half:], rank, tp, 0)], axis=0)


def tile_kv_heads(t: np.ndarray, num_kv_heads: int, tp: int) -> np.ndarray:
    """Replicate each kv head tp/num_kv_heads times so every rank owns one (convert.py tile_kv_weight_bias)."""
    if tp % num_kv_heads:
        raise GlmtrtError(f"tp_size {tp} is not a multiple of the {num_kv_heads} kv heads",
                          expected="tp_size dividing or divided by num_key_value_heads",
                          fix="choose another --tp-size")
    head = t.shape[0] // num_kv_heads
    heads = t.reshape((num_kv_heads, head) + t.shape[1:])
    return np.repeat(heads, tp // num_kv_heads, axis=0).reshape((-1,) + t.shape[1:])


def split_qkv(t: np.ndarray, rank: int, tp: int, *, num_heads: int, num_kv_heads: int,
              head_size: int) -> np.ndarray:
    """Rank slice of a fused [q; k; v] weight or bias: [q_r; k_r; v_r] (convert.py split_qkv)."""
    if tp == 1:
        return t
    q_size, kv_size = num_heads * head_size, num_kv_heads * head_size
    if t.shape[0] != q_size + 2 * kv_size:
        raise GlmtrtError(f"fused qkv has {t.shape[0]} rows", expected=f"{q_size + 2 * kv_size}")
    check_divisible(num_heads, tp, "num_attention_heads")
    q, k, v = t[:q_size], t[q_size:q_size + kv_size], t[q_size + kv_size:]
    if num_kv_heads < tp:
        k, v = tile_kv_heads(k, num_kv_heads, tp), tile_kv_heads(v, num_kv_heads, tp)
    else:
        check_divisible(num_kv_heads, tp, "num_key_value_heads")
    return np.concatenate([split_dim(q, rank, tp, 0), split_dim(k, rank, tp, 0), split_dim(v, rank, tp, 0)],
                          axis=0)


def pad_rows(t: np.ndarray, multiple: int) -> np.ndarray:
    """Zero-pad dim 0 up to a multiple (lm_head rows for TP: TRT-LLM pads vocab with pad_vocab_size)."""
    extra = (-t.shape[0]) % multiple
    if not extra:
        return t
    return np.concatenate([t, np.zeros((extra,) + t.shape[1:], dtype=t.dtype)], axis=0)


def _single(arrays: Sequence[np.ndarray]) -> np.ndarray:
    return arrays[0]


def _identity(t: np.ndarray) -> np.ndarray:
    return t


# name -> function, used by the weight maps. COMBINE joins a row's sources; PREPARE reshapes the
# combined tensor before it is sharded. Both must be layouts only (row selection/order/padding):
# glmtrt/convert/trace.py runs them on index grids.
COMBINE = {"single": _single, "concat_rows": concat_rows}
PREPARE = {"none": _identity, "swap_gate_up": swap_gate_up}
