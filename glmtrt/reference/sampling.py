"""Token selection for the reference executor: greedy, temperature, top-k, top-p.

Semantics follow TensorRT-LLM's sampling config as the Triton backend exposes it
(`runtime_top_k` 0 = off, `runtime_top_p` 1.0 = off, temperature scales the logits):
top-k is applied first, then top-p inside the surviving set, then one draw from the
renormalised distribution. Each generate() call owns its `torch.Generator`, so concurrent
requests never share random state.
"""
from __future__ import annotations

import os

from glmtrt.errors import GlmtrtError


def validate_sampling(temperature: float, top_k: int, top_p: float) -> None:
    """Reject impossible sampling settings with a message naming the parameter."""
    if temperature < 0:
        raise GlmtrtError(f"temperature={temperature}", expected="temperature >= 0 (0 = greedy)")
    if top_k < 0:
        raise GlmtrtError(f"top_k={top_k}", expected="top_k >= 0 (0 = off, 1 = greedy)")
    if not 0.0 < top_p <= 1.0:
        raise GlmtrtError(f"top_p={top_p}", expected="0 < top_p <= 1 (1 = off)")


def is_greedy(temperature: float, top_k: int) -> bool:
    """Greedy decoding when temperature == 0 or top_k == 1 (docs/INTERFACES.md section 3)."""
    return temperature == 0 or top_k == 1


def make_generator(seed: int | None, device="cpu"):
    """A private generator; seed None draws a fresh seed from the OS."""
    import torch

    gen = torch.Generator(device=device)
    gen.manual_seed(int.from_bytes(os.urandom(8), "little") >> 1 if seed is None else int(seed))
    return gen


def filter_probs(logits, temperature: float, top_k: int, top_p: float):
    """Probabilities over the vocab after temperature, top-k and top-p (float32, sums to 1)."""
    import torch

    logits = logits.float() / float(temperature)
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if top_p < 1.0:
        sorted_p, order = torch.sort(probs, descending=True)
        before = torch.cumsum(sorted_p, dim=-1) - sorted_p
        # keep the smallest prefix whose mass reaches top_p (the first token always survives)
        drop_sorted = before >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(0, order, drop_sorted)
        probs = probs.masked_fill(drop, 0.0)
        probs = probs / probs.sum()
    return probs


def sample_token(logits, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                 generator=None) -> int:
    """Pick the next token id from a 1-D logits row."""
    import torch

    if is_greedy(temperature, top_k):
        return int(torch.argmax(logits).item())
    probs = filter_probs(logits, temperature, top_k, top_p)
    return int(torch.multinomial(probs, 1, generator=generator).item())
