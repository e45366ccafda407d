"""The CPU stand-in samples like the engine (issue 7 item 2) and batches like it (issue 13 item 2).

Engine facts, TensorRT-LLM 1.2.x:
- cpp/tensorrt_llm/kernels/samplingTopKKernels.cu `setupTopKRuntimeArgs`: top_k 0 & top_p 0 ->
  top_k 1 (greedy); top_k > 0 & top_p 0 -> top_p 1; `topKStage2Sampling` walks u * top_p * mass;
- cpp/tensorrt_llm/layers/defaultDecodingParams.h: unset top_k 0, top_p 0, temperature 1, seed 0;
- triton_backend/inflight_batcher_llm/src/utils.cc `getSamplingConfigFromTensors`: top_p <= 0 = unset;
- cpp/tensorrt_llm/executor/samplingConfig.cpp: the checks of each parameter's domain;
- cpp/tensorrt_llm/kernels/penaltyKernels.cu: bias, temperature, then penalties over the whole
  sequence (prompt included); min length masks end_id only.
"""
from __future__ import annotations

import pytest
import torch

from glmtrt.errors import GlmtrtError
from glmtrt.reference import sampling
from glmtrt.reference.model import ReferenceModel
from glmtrt.triton.pymodels.generation import GenRequest, Sequence, generate_tokens

PROMPTS = [[5, 77, 3, 120, 9, 64, 31, 2, 100, 45, 11], [7, 8], [99, 1, 4, 4, 4, 60, 61, 62, 63, 1, 2, 3, 4, 5],
           [17], [33, 34, 35, 36, 37, 38, 39]]


@pytest.fixture(scope="module")
def ref(tiny):
    return ReferenceModel.from_checkpoint(tiny.checkpoint(num_layers=2))


def _tokens(ref, **kw):
    return [s.token for s in generate_tokens(ref, GenRequest(input_ids=PROMPTS[0], max_new_tokens=24, **kw))]


@pytest.mark.parametrize("top_k, top_p, want", [
    (0, 0.0, (1, 1.0)),      # neither sent: greedy
    (0, -0.5, (1, 1.0)),     # top_p <= 0 counts as not sent (utils.cc)
    (40, 0.0, (40, 1.0)),    # top-k alone: top_p 1
    (0, 0.9, (0, 0.9)),      # top-p alone
    (40, 0.9, (40, 0.9)),
    (1, 0.5, (1, 0.5)),
])
def test_engine_top_k_top_p_rules(top_k, top_p, want):
    assert sampling.effective_top_k_p(top_k, top_p) == want


def test_domain_is_the_engines():
    for kw in (dict(temperature=-0.1), dict(top_k=-1), dict(top_k=sampling.TOP_K_MAX + 1), dict(top_p=1.01),
               dict(seed=-1), dict(seed=2 ** 64)):
        args = dict(temperature=1.0, top_k=0, top_p=0.0) | kw
        seed = args.pop("seed", None)
        with pytest.raises(GlmtrtError):
            sampling.validate_sampling(**args, seed=seed)
    sampling.validate_sampling(0.0, sampling.TOP_K_MAX, 0.0, 2 ** 64 - 1)  # all accepted
    for kw, match in ((dict(repetition_penalty=0.0), "repetition_penalty"), (dict(min_tokens=-1), "min_tokens"),
                      (dict(top_p=2.0), "top_p")):
        with pytest.raises(ValueError, match=match):
            GenRequest(input_ids=[1], max_new_tokens=1, **kw).validate()
    GenRequest(input_ids=[1], max_new_tokens=1, presence_penalty=-2.0, frequency_penalty=3.0).validate()


def test_kernel_distribution_top_p():
    """Token i gets (min(c_i, p) - min(c_{i-1}, p)) / p: the last token only its share up to p."""
    logits = torch.log(torch.tensor([0.05, 0.4, 0.3, 0.15, 0.1]))
    p = sampling.filter_probs(logits, 1.0, 0, 0.7)
    assert p.tolist() == pytest.approx([0, 0.4 / 0.7, 0.3 / 0.7, 0, 0], abs=1e-6)
    p = sampling.filter_probs(logits, 1.0, 0, 0.71)
    assert p.tolist() == pytest.approx([0, 0.4 / 0.71, 0.3 / 0.71, 0.01 / 0.71, 0], abs=1e-6)
    p = sampling.filter_probs(logits, 1.0, 2, 0.0)      # top-k 2, top_p unset -> 1 inside the top 2
    assert p.tolist() == pytest.approx([0, 0.4 / 0.7, 0.3 / 0.7, 0, 0], abs=1e-6)


def test_no_sampling_inputs_is_greedy_and_repeatable(ref):
    greedy = _tokens(ref, temperature=0.0)
    assert _tokens(ref) == _tokens(ref) == greedy            # defaults: top_k 0, top_p 0
    assert _tokens(ref, temperature=1.3, top_p=0.0) == greedy  # top_p 0 accepted: still greedy
    assert _tokens(ref, top_k=1, top_p=0.9, temperature=2.0) == greedy


def test_top_k_alone_samples_and_default_seed_is_zero(ref):
    greedy = _tokens(ref, temperature=0.0)
    a = _tokens(ref, top_k=50, temperature=1.5)               # top_p 0 -> 1: sampling
    assert a != greedy
    assert a == _tokens(ref, top_k=50, temperature=1.5) == _tokens(ref, top_k=50, temperature=1.5, seed=0)
    assert a != _tokens(ref, top_k=50, temperature=1.5, seed=1)


def test_penalties_count_the_prompt_and_min_tokens_masks_end_only(ref):
    seq = Sequence(ref, GenRequest(input_ids=[5, 5, 9], max_new_tokens=4, repetition_penalty=2.0,
                                   frequency_penalty=0.5, presence_penalty=0.25))
    seq.prefill()
    raw = seq.row.clone()
    out = seq._processed()
    for tok, count in ((5, 2), (9, 1)):
        rep = raw[tok] / 2.0 if raw[tok] > 0 else raw[tok] * 2.0
        assert out[tok].item() == pytest.approx((rep - 0.25 - 0.5 * count).item(), abs=1e-5)
    assert out[6].item() == pytest.approx(raw[6].item(), abs=1e-6)
    greedy = _tokens(ref, temperature=0.0)
    end = greedy[0]
    assert _tokens(ref, end_id=end) == []                      # end_id first: nothing emitted
    got = _tokens(ref, end_id=end, min_tokens=3)
    assert len(got) >= 3 and end not in got[:3]
    stop = [[greedy[0]]]                                        # a stop word is not blocked by min_tokens
    assert _tokens(ref, stop_words=stop, min_tokens=5) == greedy[:1]


def test_batched_decode_is_identical_to_alone(ref):
    """Sequences joining and leaving a batch decode exactly as they do alone (same logits bits)."""
    reqs = [GenRequest(input_ids=p, max_new_tokens=6 + 3 * i, temperature=0.0 if i % 2 else 1.0,
                       top_k=0 if i % 2 else 20, seed=i) for i, p in enumerate(PROMPTS)]
    alone = []
    for r in reqs:
        seq, rows = Sequence(ref, r), []
        seq.prefill()
        while not seq.done:
            rows.append(seq.row.clone())
            step = seq.select()
            if step is None:
                break
            if not seq.done:
                seq.row = ref.decode([step.token], [seq.cache])[0]
        alone.append((seq.generated, rows))
    active, waiting, done, rows = [], list(range(len(reqs))), {}, {i: [] for i in range(len(reqs))}
    step_no = 0
    while waiting or active:
        if waiting and step_no % 2 == 0:                        # one joins every other step
            i = waiting.pop(0)
            s = Sequence(ref, reqs[i])
            s.prefill()
            active.append((i, s))
        for i, s in active:
            rows[i].append(s.row.clone())
            s.select()
        for i, s in [a for a in active if a[1].done]:
            done[i] = s.generated
        active = [a for a in active if not a[1].done]
        if active:
            out = ref.decode([s.generated[-1] for _, s in active], [s.cache for _, s in active])
            for (i, s), row in zip(active, out):
                s.row = row
        step_no += 1
    for i, (tokens, want_rows) in enumerate(alone):
        assert done[i] == tokens
        assert all(torch.equal(a, b) for a, b in zip(rows[i], want_rows))


def test_cache_path_matches_forward(ref):
    logits, past = ref.forward(torch.tensor([PROMPTS[0]]))
    cache = ref.new_cache(len(PROMPTS[0]) + 2)
    pre = ref.prefill(PROMPTS[0], cache)
    assert torch.allclose(pre, logits[0], atol=1e-5)
    nxt, _ = ref.forward(torch.tensor([[7]]), past)
    assert torch.allclose(ref.decode([7], [cache])[0], nxt[0, -1], atol=1e-5)
    ref.decode([1], [cache])                                    # fills the last slot
    with pytest.raises(GlmtrtError, match="outgrew"):
        ref.decode([1], [cache])
