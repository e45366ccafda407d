"""The decoding state of one request in the CPU reference engine.

`Sequence` holds what the engine keeps per request in its in-flight batch: the KV cache, the
random generator, penalty counts, stop rules, log probs. The engine loop (`engine_loop.py`)
prefills new sequences, then advances all active ones with one batched forward per step
(`ReferenceModel.decode`). Semantics follow TensorRT-LLM 1.2.x (see `glmtrt.reference.sampling`
for the sampling sources):

- logits processing order (`cpp/tensorrt_llm/kernels/penaltyKernels.cu` `batchApplyPenalty`):
  + embedding_bias, * 1/(temperature + 1e-6), then for every token already in the sequence
  (prompt included) repetition (divide positive / multiply negative), presence (subtract) and
  frequency (subtract count * penalty); then end_id masked while fewer than min_tokens tokens
  were generated (min length only masks end_id);
- bad words (`to_word_list_format` [2, L] lists) mask the last token of a word whose prefix just
  appeared; stop words end generation after the word, which is emitted;
- end_id ends generation and is not emitted; `request_output_len` caps the output;
- log probs are log-softmax of the processed logits (`topKStage2Sampling` with probabilities).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from glmtrt.reference import sampling as S


@dataclass
class GenRequest:
    """One request's generation settings (defaults = the engine's unset values)."""

    input_ids: list[int]
    max_new_tokens: int
    end_id: int = -1
    stop_words: list[list[int]] = field(default_factory=list)
    bad_words: list[list[int]] = field(default_factory=list)
    temperature: float = S.DEFAULT_TEMPERATURE
    top_k: int = S.DEFAULT_TOP_K
    top_p: float = S.DEFAULT_TOP_P
    seed: int | None = None            # None: the engine's default seed 0
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
    #: extra context-phase inputs of the model's prefill (Glm4v: prompt_table, mrope_rotary_cos_sin, rope_delta)
    model_inputs: dict = field(default_factory=dict)

    def validate(self) -> None:
        """Raise ValueError for a value outside the engine's domain (samplingConfig.cpp checks)."""
        from glmtrt.errors import GlmtrtError

        try:
            S.validate_sampling(self.temperature, self.top_k, self.top_p, self.seed)
        except GlmtrtError as exc:
            raise ValueError(str(exc).split("\n")[0]) from None
        if not self.repetition_penalty > 0:
            raise ValueError(f"repetition_penalty={self.repetition_penalty}: must be > 0")
        if self.min_tokens < 0:
            raise ValueError(f"min_tokens={self.min_tokens}: must be >= 0")
        for name in ("temperature", "presence_penalty", "frequency_penalty", "repetition_penalty"):
            if not np.isfinite(getattr(self, name)):
                raise ValueError(f"{name}={getattr(self, name)}: must be finite")


@dataclass
class Step:
    """One generated token."""

    token: int
    log_prob: float
    cum_log_prob: float
    logits: np.ndarray | None = None          # [V] when generation logits were asked for
    context_logits: np.ndarray | None = None  # [T, V] on the first step when asked for


class Sequence:
    """Decoding state of one request: prefill once, then `select` a token per step."""

    def __init__(self, model, req: GenRequest):
        import torch

        self.req = req
        self.model = model
        self.greedy = S.is_greedy(req.temperature, req.top_k, req.top_p)
        self.gen = None if self.greedy else S.make_generator(req.seed)
        self.generated: list[int] = []
        self.cum = 0.0
        self.done = False
        self.row = None                     # logits of the next position [V]
        self.context = None
        self.cache = model.new_cache(len(req.input_ids) + req.max_new_tokens)
        self._penalties = (req.repetition_penalty != 1.0 or req.presence_penalty != 0.0
                           or req.frequency_penalty != 0.0)
        self.counts = None
        if self._penalties:  # occurrences over the whole sequence, prompt included
            self.counts = torch.zeros(model.vocab_size, dtype=torch.float32)
            ids = torch.tensor([i for i in req.input_ids if i < model.vocab_size], dtype=torch.long)  # not table rows
            self.counts.index_add_(0, ids, torch.ones(len(ids)))
        self.bias = None if req.embedding_bias is None else torch.from_numpy(req.embedding_bias)

    def prefill(self) -> None:
        """Run the prompt through the model into this sequence's cache."""
        logits = self.model.prefill(self.req.input_ids, self.cache, **self.req.model_inputs)
        self.context = logits.numpy() if self.req.return_context_logits else None
        self.row = logits[-1]

    def _processed(self):
        import torch

        req, row = self.req, self.row.float()
        if self.bias is not None and self.bias.shape[0] == row.shape[0]:
            row = row + self.bias
        row = S.scale_temperature(row, req.temperature)
        if self.counts is not None:
            seen = self.counts > 0
            if req.repetition_penalty != 1.0:
                rep = torch.where(row < 0, row * req.repetition_penalty, row / req.repetition_penalty)
                row = torch.where(seen, rep, row)
            row = row - seen.float() * req.presence_penalty - self.counts * req.frequency_penalty
        banned = self._banned()
        if banned:
            row = row.clone()
            row[torch.tensor(banned, dtype=torch.long)] = float("-inf")
        return row

    def _banned(self) -> list[int]:
        """Bad words whose prefix just appeared; end_id before min_tokens."""
        seq = self.req.input_ids + self.generated
        out = [w[-1] for w in self.req.bad_words if len(w) == 1 or seq[len(seq) - len(w) + 1:] == w[:-1]]
        if len(self.generated) < self.req.min_tokens and self.req.end_id >= 0:
            out.append(self.req.end_id)
        return out

    def select(self) -> Step | None:
        """Pick the next token from `row`; None when generation ended at end_id. Sets `done`."""
        import torch

        req = self.req
        row = self._processed()
        tok = S.sample_token(row, 0.0 if self.greedy else S.DEFAULT_TEMPERATURE, req.top_k, req.top_p, self.gen)
        if tok == req.end_id:
            self.done = True
            return None
        lp = float(torch.log_softmax(row, dim=-1)[tok]) if req.return_log_probs else 0.0
        self.cum += lp
        self.generated.append(tok)
        if self.counts is not None:
            self.counts[tok] += 1
        step = Step(tok, lp, self.cum, self.row.numpy().copy() if req.return_generation_logits else None,
                    self.context if len(self.generated) == 1 else None)
        if _hits_stop(self.generated, req.stop_words) or len(self.generated) >= req.max_new_tokens:
            self.done = True
        return step


def _hits_stop(generated: list[int], stop_words: list[list[int]]) -> bool:
    return any(len(generated) >= len(w) and generated[-len(w):] == w for w in stop_words)


def generate_tokens(model, req: GenRequest, cancelled: Callable[[], bool] | None = None) -> Iterator[Step]:
    """One request alone (batch 1): yield Steps until end_id, a stop word, max_new_tokens or cancel."""
    req.validate()
    seq = Sequence(model, req)
    seq.prefill()
    while not seq.done:
        if cancelled is not None and cancelled():
            return
        step = seq.select()
        if step is None:
            return
        yield step
        if not seq.done:
            seq.row = model.decode([step.token], [seq.cache])[0]
