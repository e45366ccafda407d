"""generate(): greedy equals transformers, stop rules, seeded sampling, thread safety."""
from __future__ import annotations

import threading

import pytest
import torch

from glmtrt.errors import GlmtrtError
from glmtrt.reference import sampling
from glmtrt.reference.model import ReferenceModel

PROMPT = [5, 77, 3, 120, 9, 64, 31, 2, 100, 45, 11]


@pytest.fixture(scope="module")
def ref(tiny):
    return ReferenceModel.from_checkpoint(tiny.checkpoint(tp=2, rope_ratio=500.0))


def test_greedy_matches_transformers_generate(tiny, ref):
    hf = tiny.hf_model(rope_ratio=500.0)
    with torch.inference_mode():
        out = hf.generate(torch.tensor([PROMPT]), max_new_tokens=24, do_sample=False,
                          eos_token_id=None, pad_token_id=0)
    want = out[0, len(PROMPT):].tolist()
    got = list(ref.generate(PROMPT, 24, end_id=-1, temperature=0))
    assert got == want and len(got) == 24
    assert list(ref.generate(PROMPT, 24, end_id=-1, top_k=1, temperature=0.7, seed=3)) == want


def test_end_id_is_not_yielded_and_stop_id_is(ref):
    greedy = list(ref.generate(PROMPT, 12, end_id=-1, temperature=0))
    third = greedy[2]
    first_at = greedy.index(third)
    assert list(ref.generate(PROMPT, 12, end_id=third, temperature=0)) == greedy[:first_at]
    assert list(ref.generate(PROMPT, 12, end_id=-1, stop_ids=[third], temperature=0)) == greedy[:first_at + 1]
    assert list(ref.generate(PROMPT, 0, end_id=-1, temperature=0)) == []
    assert list(ref.generate(PROMPT, 1, end_id=-1, temperature=0)) == greedy[:1]
    assert list(ref.generate(PROMPT, 3, end_id=None, temperature=0)) == greedy[:3]


def test_seeded_sampling_is_reproducible(ref):
    kw = dict(max_new_tokens=20, end_id=-1, temperature=1.5, top_k=50, top_p=0.95)
    a = list(ref.generate(PROMPT, seed=11, **kw))
    assert a == list(ref.generate(PROMPT, seed=11, **kw))
    assert a != list(ref.generate(PROMPT, seed=12, **kw))
    assert a != list(ref.generate(PROMPT, 20, end_id=-1, temperature=0))


def test_concurrent_generate_calls_do_not_interfere(ref):
    jobs = [dict(seed=s, temperature=1.0, top_p=0.9) for s in range(3)] + [dict(temperature=0)]
    expected = [list(ref.generate(PROMPT[: 4 + i], 16, end_id=-1, **kw)) for i, kw in enumerate(jobs)]
    results = [None] * len(jobs)

    def run(i):
        results[i] = list(ref.generate(PROMPT[: 4 + i], 16, end_id=-1, **jobs[i]))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == expected


def test_bad_generate_arguments(ref):
    with pytest.raises(GlmtrtError, match="empty prompt"):
        ref.generate([], 3, end_id=2)
    with pytest.raises(GlmtrtError, match="top_p"):
        ref.generate(PROMPT, 3, end_id=2, top_p=1.5)
    with pytest.raises(GlmtrtError, match="temperature"):
        ref.generate(PROMPT, 3, end_id=2, temperature=-1)
    with pytest.raises(GlmtrtError, match="out of range"):
        ref.forward(torch.tensor([[0, 128]]))


def test_filter_probs_top_k_and_top_p():
    logits = torch.log(torch.tensor([0.05, 0.4, 0.3, 0.15, 0.1]))
    assert torch.count_nonzero(sampling.filter_probs(logits, 1.0, 2, 1.0)) == 2
    p = sampling.filter_probs(logits, 1.0, 0, 0.7)          # 0.4 + 0.3 reaches 0.7
    assert torch.nonzero(p).flatten().tolist() == [1, 2]
    assert p.sum().item() == pytest.approx(1.0)
    p = sampling.filter_probs(logits, 1.0, 0, 0.71)         # needs the third token
    assert torch.nonzero(p).flatten().tolist() == [1, 2, 3]
    p = sampling.filter_probs(logits, 1.0, 3, 0.99)         # top-k first, then top-p inside it
    assert torch.nonzero(p).flatten().tolist() == [1, 2, 3]
    sharp = sampling.filter_probs(logits, 0.1, 0, 1.0)
    assert sharp[1] > 0.9


def test_sampling_follows_the_distribution():
    logits = torch.log(torch.tensor([0.7, 0.2, 0.1]))
    g = sampling.make_generator(0)
    draws = [sampling.sample_token(logits, 1.0, 0, 1.0, g) for _ in range(3000)]
    freq = [draws.count(i) / 3000 for i in range(3)]
    assert freq == pytest.approx([0.7, 0.2, 0.1], abs=0.03)
    assert sampling.sample_token(logits, 0.0, 0, 1.0) == 0
