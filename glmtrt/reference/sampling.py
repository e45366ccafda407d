"""Token selection for the reference executor, with TensorRT-LLM's sampling semantics.

Sources (TensorRT-LLM 1.2.x; the Triton backend passes request tensors straight to the executor):
- `triton_backend/inflight_batcher_llm/src/utils.cc` `getSamplingConfigFromTensors`: a
  `runtime_top_p` <= 0 is treated as not sent;
- `cpp/tensorrt_llm/executor/samplingConfig.cpp` checks: beam_width > 0, top_k >= 0,
  0 < top_p <= 1, temperature >= 0, min_tokens >= 0, repetition_penalty > 0 (presence and
  frequency penalties unchecked);
- `cpp/tensorrt_llm/layers/defaultDecodingParams.h`: unset values are temperature 1,
  top_k 0, top_p 0, seed 0, penalties 1 / 0 / 0;
- `cpp/tensorrt_llm/kernels/samplingTopKKernels.cu` `setupTopKRuntimeArgs`: top_k 0 with top_p 0
  becomes top_k 1 (greedy), top_k > 0 with top_p 0 becomes top_p 1; `invokeBatchTopKSampling`
  supports k <= 1024; `topKStage2Sampling` draws u * top_p * (mass of the top k) and walks the
  top-k tokens in descending order, so token i gets probability
  (min(c_i, p) - min(c_{i-1}, p)) / p over the cumulative masses c (the same walk as the top-p
  kernel when top_k is 0);
- `cpp/tensorrt_llm/kernels/penaltyKernels.cu` `batchApplyPenalty`: logits + bias, then
  * 1 / (temperature + 1e-6), then penalties over every token of the sequence (prompt included).

Each request owns its `torch.Generator` (seeded with the request's seed, 0 when unset), so
concurrent requests never share random state; the draws differ from the engine's curand ones,
the distribution is the same.
"""
from __future__ import annotations

from glmtrt.errors import GlmtrtError

#: largest top_k of the engine's top-k kernel (samplingTopKKernels.cu invokeBatchTopKSampling)
TOP_K_MAX = 1024
#: unset values (defaultDecodingParams.h)
DEFAULT_TEMPERATURE, DEFAULT_TOP_K, DEFAULT_TOP_P, DEFAULT_SEED = 1.0, 0, 0.0, 0
SEED_MAX = 2 ** 64 - 1  # RandomSeedType is uint64


def validate_sampling(temperature: float, top_k: int, top_p: float, seed: int | None = None) -> None:
    """Reject what the engine rejects, with a message naming the parameter and its range."""
    if not temperature >= 0:
        raise GlmtrtError(f"temperature={temperature}", expected="temperature >= 0 (0 = greedy)")
    if not 0 <= top_k <= TOP_K_MAX:
        raise GlmtrtError(f"top_k={top_k}", expected=f"0 <= top_k <= {TOP_K_MAX} (0 = off, 1 = greedy)")
    if not top_p <= 1.0:
        raise GlmtrtError(f"top_p={top_p}", expected="top_p <= 1 (<= 0 = not set, 1 = whole distribution)")
    if seed is not None and not 0 <= seed <= SEED_MAX:
        raise GlmtrtError(f"seed={seed}", expected=f"0 <= seed <= {SEED_MAX}")


def effective_top_k_p(top_k: int, top_p: float) -> tuple[int, float]:
    """The (top_k, top_p) the engine's kernels use (setupTopKRuntimeArgs)."""
    top_p = 0.0 if top_p <= 0 else float(top_p)  # utils.cc: top_p <= 0 = not sent = default 0
    if top_k == 0 and top_p == 0.0:
        return 1, 1.0  # "equivalent to greedy search, so we set the topk = 1"
    if top_k > 0 and top_p == 0.0:
        return int(top_k), 1.0
    return int(top_k), top_p


def is_greedy(temperature: float, top_k: int, top_p: float = DEFAULT_TOP_P) -> bool:
    """Argmax decoding: effective top_k 1, or temperature 0 (logits * 1e6: the top token takes
    all the mass). No sampling inputs at all (top_k 0, top_p 0) is greedy, as in the engine."""
    return temperature == 0 or effective_top_k_p(top_k, top_p)[0] == 1


def make_generator(seed: int | None, device="cpu"):
    """A private generator; seed None is the engine's unset seed, 0."""
    import torch

    gen = torch.Generator(device=device)
    gen.manual_seed(DEFAULT_SEED if seed is None else int(seed))
    return gen


def scale_temperature(logits, temperature: float):
    """logits * 1 / (temperature + 1e-6), skipped at temperature 1 (penaltyKernels.cu)."""
    if temperature == DEFAULT_TEMPERATURE:
        return logits
    return logits * (1.0 / (float(temperature) + 1e-6))


def filter_probs(logits, temperature: float, top_k: int, top_p: float):
    """The engine's sampling distribution over the vocab (float32, sums to 1), see module doc.

    top_k/top_p are the request's values (the engine's rules turn them into effective ones).
    """
    import torch

    k, p = effective_top_k_p(top_k, top_p)
    logits = scale_temperature(logits.float(), temperature)
    k = logits.shape[-1] if k == 0 else min(k, logits.shape[-1])
    if p >= 1.0 and k == logits.shape[-1]:          # the whole distribution: no sort needed
        return torch.softmax(logits, dim=-1)
    vals, order = torch.topk(logits, k)              # descending
    probs = torch.softmax(vals, dim=-1)              # mass inside the top k
    cum = torch.cumsum(probs, dim=-1)
    # token i is drawn when c_{i-1} < u * p <= c_i: weight min(c_i, p) - min(c_{i-1}, p)
    upper = torch.clamp(cum, max=p)
    lower = torch.clamp(cum - probs, max=p)
    weights = torch.clamp(upper - lower, min=0.0)
    out = torch.zeros_like(logits)
    out[order] = weights / weights.sum()
    return out


def sample_token(logits, temperature: float = DEFAULT_TEMPERATURE, top_k: int = DEFAULT_TOP_K,
                 top_p: float = DEFAULT_TOP_P, generator=None) -> int:
    """Pick the next token id from a 1-D logits row (greedy for the engine's greedy cases)."""
    import torch

    if is_greedy(temperature, top_k, top_p):
        return int(torch.argmax(logits).item())
    probs = filter_probs(logits, temperature, top_k, top_p)
    return int(torch.multinomial(probs, 1, generator=generator).item())


def generate_loop(first, step, max_new_tokens: int, end_id: int, stop, temperature: float, top_k: int,
                  top_p: float, generator):
    """The batch-1 generation loop of the reference models: `first()` gives the logits [V] of the first new
    token, `step(tok)` those after `tok`. Yields token ids: end_id ends (not yielded), a stop id is yielded
    and ends, at most max_new_tokens (TensorRT-LLM's end_id / stop-word rules)."""
    if max_new_tokens == 0:
        return
    row = first()
    for i in range(max_new_tokens):
        tok = sample_token(row, temperature, top_k, top_p, generator)
        if tok == end_id:
            return
        yield tok
        if tok in stop or i + 1 == max_new_tokens:
            return
        row = step(tok)
