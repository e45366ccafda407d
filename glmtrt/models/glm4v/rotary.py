"""The q/k rotary permutation that turns GLM-4.1V's interleaved rotary into NeoX (rotate-half) form.

transformers `modeling_glm4v.py`: `Glm4vTextRotaryEmbedding.recomposition_frequencies` picks the
M-RoPE section of each of the rotary_dim/2 frequency slots and then `repeat_interleave(2)`s it, and
`rotate_half_llm` pairs dims (2j, 2j+1): the rotary is GPT-J style (interleaved) on the first
rotary_dim = head_dim * partial_rotary_factor dims of each head.

TensorRT-LLM's attention plugin applies M-RoPE only in its NeoX (rotate-half) form, pairing dims
(j, j + rotary_dim/2) with frequency slot j. Permuting the first rotary_dim rows of every q and k
head to [0, 2, 4, ...] followed by [1, 3, 5, ...] (weight and bias alike) maps pair (2j, 2j+1) onto
(j, j + rotary_dim/2) with the same slot j, so the rotated q and k are the original ones under one
fixed permutation of each head's dims, and q.k (hence attention) is unchanged. v is not permuted.
"""
from __future__ import annotations

import torch


def rotary_permutation(head_dim: int, rotary_dim: int) -> torch.Tensor:
    """Index vector of one head: interleaved-rotary dims -> NeoX dims (the pass-through rest unchanged)."""
    if rotary_dim % 2 or rotary_dim > head_dim:
        raise ValueError(f"rotary_dim {rotary_dim} must be even and <= head_dim {head_dim}")
    rot = torch.arange(rotary_dim)
    return torch.cat([rot[0::2], rot[1::2], torch.arange(rotary_dim, head_dim)])


def permute_heads(t: torch.Tensor, head_dim: int, rotary_dim: int) -> torch.Tensor:
    """Apply `rotary_permutation` to every head of a q or k projection (weight [H*d, in] or bias [H*d])."""
    if t.shape[0] % head_dim:
        raise ValueError(f"{tuple(t.shape)} is not a whole number of heads of {head_dim}")
    perm = rotary_permutation(head_dim, rotary_dim)
    heads = t.reshape(t.shape[0] // head_dim, head_dim, *t.shape[1:])
    return heads[:, perm].reshape(t.shape).contiguous()
