"""Small pure tensor transforms used by the weight maps (each unit-tested).

Each numerical quirk cites TensorRT-LLM 1.2.x tensorrt_llm/models/chatglm/convert.py.
"""
from __future__ import annotations

from typing import Sequence

import torch

from glmtrt.errors import GlmtrtError


def concat_rows(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate along dim 0 (q, k, v projections -> one fused qkv)."""
    return torch.cat(list(tensors), dim=0)


def swap_gate_up(t: torch.Tensor) -> torch.Tensor:
    """[gate; up] -> [up; gate] along dim 0.

    HF ChatGLM `dense_h_to_4h` and transformers `gate_up_proj` put the SiLU-gated half first;
    TensorRT-LLM's swiglu gates the SECOND half, so convert.py `swap_and_split_mlp` swaps them.
    """
    if t.shape[0] % 2:
        raise GlmtrtError(f"gate/up tensor has an odd first dimension {tuple(t.shape)}",
                          expected="2 * intermediate_size rows")
    gate, up = torch.chunk(t, 2, dim=0)
    return torch.cat([up, gate], dim=0)


def _check_divisible(n: int, tp: int, what: str) -> None:
    if n % tp:
        raise GlmtrtError(f"{what} = {n} is not divisible by tp_size {tp}",
                          expected=f"a tp_size that divides {what}", fix="choose another --tp-size")


def split_dim(t: torch.Tensor, rank: int, tp: int, dim: int) -> torch.Tensor:
    """Rank `rank`'s contiguous 1/tp slice along `dim` (column/row parallel linears)."""
    if tp == 1:
        return t
    _check_divisible(t.shape[dim], tp, f"dimension {dim} of shape {tuple(t.shape)}")
    return torch.chunk(t, tp, dim=dim)[rank].contiguous()


def split_halves(t: torch.Tensor, rank: int, tp: int) -> torch.Tensor:
    """Split each half of a fused [a; b] tensor by rank and re-fuse: [a_r; b_r].

    This is how convert.py shards the fused gate/up `mlp.fc` (swap_and_split_mlp).
    """
    if tp == 1:
        return t
    a, b = torch.chunk(t, 2, dim=0)
    return torch.cat([split_dim(a, rank, tp, 0), split_dim(b, rank, tp, 0)], dim=0).contiguous()


def tile_kv_heads(t: torch.Tensor, num_kv_heads: int, tp: int) -> torch.Tensor:
    """Replicate each kv head tp/num_kv_heads times so every rank owns one (convert.py tile_kv_weight_bias)."""
    if tp % num_kv_heads:
        raise GlmtrtError(f"tp_size {tp} is not a multiple of the {num_kv_heads} kv heads",
                          expected="tp_size dividing or divided by num_key_value_heads",
                          fix="choose another --tp-size")
    reps = tp // num_kv_heads
    head = t.shape[0] // num_kv_heads
    rest = t.shape[1:]
    v = t.reshape(num_kv_heads, 1, head, *rest).expand(num_kv_heads, reps, head, *rest)
    return v.reshape(num_kv_heads * reps * head, *rest).clone()


def split_qkv(t: torch.Tensor, rank: int, tp: int, *, num_heads: int, num_kv_heads: int,
              head_size: int) -> torch.Tensor:
    """Rank slice of a fused [q; k; v] weight or bias: [q_r; k_r; v_r] (convert.py split_qkv)."""
    if tp == 1:
        return t
    q_size, kv_size = num_heads * head_size, num_kv_heads * head_size
    if t.shape[0] != q_size + 2 * kv_size:
        raise GlmtrtError(f"fused qkv has {t.shape[0]} rows", expected=f"{q_size + 2 * kv_size}")
    _check_divisible(num_heads, tp, "num_attention_heads")
    q, k, v = t[:q_size], t[q_size:q_size + kv_size], t[q_size + kv_size:]
    if num_kv_heads < tp:
        k, v = tile_kv_heads(k, num_kv_heads, tp), tile_kv_heads(v, num_kv_heads, tp)
    else:
        _check_divisible(num_kv_heads, tp, "num_key_value_heads")
    return torch.cat([split_dim(q, rank, tp, 0), split_dim(k, rank, tp, 0), split_dim(v, rank, tp, 0)],
                     dim=0).contiguous()


def pad_rows(t: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad dim 0 up to a multiple (lm_head rows for TP: TRT-LLM pads vocab with pad_vocab_size)."""
    extra = (-t.shape[0]) % multiple
    if not extra:
        return t
    return torch.nn.functional.pad(t, (0, 0) * (t.dim() - 1) + (0, extra))


# name -> function of one tensor (after the sources are combined), used by the weight maps.
COMBINE = {"single": lambda ts: ts[0], "concat_rows": concat_rows}
PREPARE = {"none": lambda t: t, "swap_gate_up": swap_gate_up}
