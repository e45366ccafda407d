"""`glmtrt eval`: answers of a (quantized) engine vs a baseline run, greedy, on a fixed prompt set.

Per prompt (matched on its text / conversation): exact match, position of the first divergence
(in tokens of our tokenizer; characters without one), ROUGE-L F1 over tokens, top-1 agreement
(share of the baseline's token positions where the candidate emits the same token), and where
log-probs came back: before the first divergence (identical contexts, so comparable) the mean
|Δ log p| of the chosen token (Triton `return_log_probs`) and KL(baseline || candidate) over the
union of the returned top-k (OpenAI `top_logprobs`; tokens missing on one side get that side's
smallest listed probability). The run fails `--max-divergence F` when more than F of the prompts
are not exact matches.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

from glmtrt.client.metrics import RequestRecord, stats
from glmtrt.errors import GlmtrtError


def prompt_key(r: RequestRecord) -> str:
    """What makes two requests the same question: the conversation so far."""
    if r.messages:
        return json.dumps(r.messages, ensure_ascii=False, sort_keys=True)
    return json.dumps([{"role": "user", "content": r.prompt}], ensure_ascii=False, sort_keys=True)


def load_records(path: Path) -> list[RequestRecord]:
    """Records of an eval folder (requests.jsonl) or of every level of a bench folder (*/requests.jsonl)."""
    files = [path / "requests.jsonl"] if (path / "requests.jsonl").is_file() else sorted(path.glob("*/requests.jsonl"))
    if not files:
        raise GlmtrtError(f"{path}: no requests.jsonl", expected="a folder written by glmtrt bench or glmtrt eval")
    out = []
    for f in files:
        out += [RequestRecord.from_json(json.loads(line)) for line in f.read_text("utf-8").splitlines() if line.strip()]
    return out


def lcs(a: Sequence, b: Sequence) -> int:
    """Length of the longest common subsequence (O(len(a) * len(b)) time, O(len(b)) memory)."""
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(ref: Sequence, cand: Sequence) -> float:
    """ROUGE-L F1 (beta = 1) of two token sequences; 1.0 for two empty ones."""
    if not ref and not cand:
        return 1.0
    n = lcs(ref, cand)
    if n == 0:
        return 0.0
    p, r = n / len(cand), n / len(ref)
    return 2 * p * r / (p + r)


def first_divergence(a: Sequence, b: Sequence) -> int | None:
    """Index of the first differing element (the shorter length when one is a prefix); None when equal."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def kl_topk(p: dict, q: dict) -> float:
    """KL(p || q) in nats over the union of two top-k {token: log-prob} maps (renormalized)."""
    keys = set(p) | set(q)
    fp, fq = min(p.values()), min(q.values())
    pp = {k: math.exp(p.get(k, fp)) for k in keys}
    qq = {k: math.exp(q.get(k, fq)) for k in keys}
    zp, zq = sum(pp.values()), sum(qq.values())
    return sum((pp[k] / zp) * math.log((pp[k] / zp) / (qq[k] / zq)) for k in keys)


def compare(base: RequestRecord, cand: RequestRecord, tok=None) -> dict:
    """Per-prompt comparison (see the module docstring)."""
    ta, tb = (tok.encode(base.text), tok.encode(cand.text)) if tok is not None else (list(base.text), list(cand.text))
    div = first_divergence(ta, tb)
    same = sum(1 for x, y in zip(ta, tb) if x == y)
    row = {"key": prompt_key(base), "exact": base.text == cand.text, "first_divergence": div,
           "unit": "token" if tok is not None else "char", "rouge_l": rouge_l(ta, tb),
           "top1_agreement": same / len(ta) if ta else float(not tb), "baseline_len": len(ta), "len": len(tb)}
    upto = len(ta) if div is None else div
    if base.log_probs and cand.log_probs:
        n = min(upto, len(base.log_probs), len(cand.log_probs))
        if n:
            row["logprob_abs_diff"] = sum(abs(float(_lp(base.log_probs[i])) - float(_lp(cand.log_probs[i])))
                                          for i in range(n)) / n
    tops_a, tops_b = _tops(base), _tops(cand)
    if tops_a and tops_b:
        n = min(upto, len(tops_a), len(tops_b))
        kls = [kl_topk(tops_a[i], tops_b[i]) for i in range(n) if tops_a[i] and tops_b[i]]
        if kls:
            row["kl"] = sum(kls) / len(kls)
    return row


def _lp(v):
    return v[0] if isinstance(v, (list, tuple)) else v


def _tops(r: RequestRecord) -> list | None:
    return r.top_log_probs or None


def evaluate(baseline: Sequence[RequestRecord], candidate: Sequence[RequestRecord], tok=None,
             max_divergence: float | None = None) -> dict:
    """Compare every candidate answer with the baseline's answer to the same prompt."""
    base = {}
    for r in baseline:
        if r.ok:
            base.setdefault(prompt_key(r), r)
    rows, missing = [], 0
    for r in candidate:
        b = base.get(prompt_key(r))
        if b is None or not r.ok:
            missing += 1
            continue
        rows.append(compare(b, r, tok))
    if not rows:
        raise GlmtrtError("no prompt of this run is in the baseline (or every request failed)",
                          fix="run the baseline with the same --dataset (glmtrt eval URL --out DIR)")
    exact = sum(r["exact"] for r in rows) / len(rows)
    summary = {"prompts": len(rows), "unmatched_or_failed": missing, "exact_match_rate": exact,
               "divergence_rate": 1.0 - exact,
               "first_divergence": stats(r["first_divergence"] for r in rows if r["first_divergence"] is not None),
               "rouge_l": stats(r["rouge_l"] for r in rows), "top1_agreement": stats(r["top1_agreement"] for r in rows),
               "logprob_abs_diff": stats(r.get("logprob_abs_diff") for r in rows if "logprob_abs_diff" in r),
               "kl": stats(r.get("kl") for r in rows if "kl" in r), "unit": rows[0]["unit"],
               "max_divergence": max_divergence}
    summary["passed"] = None if max_divergence is None else summary["divergence_rate"] <= max_divergence
    return {"summary": summary, "rows": rows}
