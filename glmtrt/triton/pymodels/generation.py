"""The token loop of the CPU reference engine (one request, batch 1, KV cache).

Runs `ReferenceModel.forward` and selects tokens with `glmtrt.reference.sampling`, adding what
the engine's request options need on top of `ReferenceModel.generate`: multi-token stop words,
bad words, min_tokens, penalties, embedding bias, log probs and logits, cancellation.
Semantics follow TensorRT-LLM's executor as the tensorrtllm Triton backend exposes it
(tensorrt_llm/runtime `SamplingConfig`, `to_word_list_format` stop/bad words).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np


@dataclass
class GenRequest:
    """One request's generation settings (defaults = the engine's defaults)."""

    input_ids: list[int]
    max_new_tokens: int
    end_id: int = -1
    stop_words: list[list[int]] = field(default_factory=list)
    bad_words: list[list[int]] = field(default_factory=list)
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None
    min_tokens: int = 0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    embedding_bias: np.ndarray | None = None
    streaming: bool = False
    exclude_input: bool = False
    return_log_probs: bool = False
    return_context_logits: bool = False
    return_generation_logits: bool = False


@dataclass
class Step:
    """One generated token."""

    token: int
    log_prob: float
    cum_log_prob: float
    logits: np.ndarray | None = None          # [V] when generation logits were asked for
    context_logits: np.ndarray | None = None  # [T, V] on the first step when asked for


def _penalize(logits, req: GenRequest, generated: list[int]):
    """Repetition (divide positive / multiply negative), presence and frequency penalties."""
    import torch

    if not generated or (req.repetition_penalty == 1.0 and req.presence_penalty == 0.0
                         and req.frequency_penalty == 0.0):
        return logits
    ids, counts = torch.unique(torch.tensor(generated, dtype=torch.long), return_counts=True)
    sel = logits[ids]
    if req.repetition_penalty != 1.0:
        sel = torch.where(sel > 0, sel / req.repetition_penalty, sel * req.repetition_penalty)
    sel = sel - req.presence_penalty - req.frequency_penalty * counts.float()
    logits = logits.clone()
    logits[ids] = sel
    return logits


def _banned(req: GenRequest, generated: list[int], step: int) -> list[int]:
    """Token ids forbidden at this step: bad words whose prefix just appeared, ends before min_tokens."""
    seq = req.input_ids + generated
    out = []
    for w in req.bad_words:
        if len(w) == 1 or seq[len(seq) - len(w) + 1:] == w[:-1]:
            out.append(w[-1])
    if step < req.min_tokens:
        if req.end_id >= 0:
            out.append(req.end_id)
        out.extend(w[0] for w in req.stop_words if len(w) == 1)
    return out


def _hits_stop(generated: list[int], stop_words: list[list[int]]) -> bool:
    return any(len(generated) >= len(w) and generated[-len(w):] == w for w in stop_words)


def generate_tokens(model, req: GenRequest, cancelled: Callable[[], bool] | None = None) -> Iterator[Step]:
    """Yield Steps until end_id (not yielded), a stop word (yielded), max_new_tokens or cancel."""
    import torch

    from glmtrt.reference import sampling

    sampling.validate_sampling(req.temperature, req.top_k, req.top_p)
    gen = None if sampling.is_greedy(req.temperature, req.top_k) else sampling.make_generator(req.seed)
    logits, past = model.forward(torch.tensor([req.input_ids], dtype=torch.long))
    context = logits[0].numpy() if req.return_context_logits else None
    row = logits[0, -1]
    generated: list[int] = []
    cum = 0.0
    bias = None if req.embedding_bias is None else torch.from_numpy(req.embedding_bias)
    for step in range(req.max_new_tokens):
        if cancelled is not None and cancelled():
            return
        if bias is not None and bias.shape[0] == row.shape[0]:
            row = row + bias
        row = _penalize(row, req, generated)
        banned = _banned(req, generated, step)
        if banned:
            row = row.clone()
            row[torch.tensor(banned, dtype=torch.long)] = float("-inf")
        tok = sampling.sample_token(row, req.temperature, req.top_k, req.top_p, gen)
        if tok == req.end_id:
            return
        lp = float(torch.log_softmax(row.float(), dim=-1)[tok]) if req.return_log_probs else 0.0
        cum += lp
        generated.append(tok)
        yield Step(tok, lp, cum, row.numpy().copy() if req.return_generation_logits else None,
                   context if step == 0 else None)
        if _hits_stop(generated, req.stop_words) or step + 1 == req.max_new_tokens:
            return
        logits, past = model.forward(torch.tensor([[tok]], dtype=torch.long), past)
        row = logits[0, -1]
