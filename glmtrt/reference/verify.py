"""`verify_checkpoint`: the reference executor on a converted checkpoint vs transformers on the source.

transformers' GlmForCausalLM (loaded by `glmtrt.models.chatglm.hf_glm.load_hf_glm`, either source
format, float32) is the numerical truth. The reference runs the TensorRT-LLM checkpoint the way
the engine would (by default in the checkpoint's dtype: half-precision GEMMs, fp32 norms/softmax)
over fixed prompts, twice: one full-prompt forward (context phase) and an incremental decode
through the KV cache (generation phase). Both are compared with one full HF forward.

Tolerances (`TOLERANCES`) are keyed by the least precise of the checkpoint dtype and the compute
dtype. A check passes when max_abs <= atol + rtol * max|HF logits|, the worst per-position cosine
>= min_cosine and the top-1 agreement >= min_top1. Half-precision values were measured on the tiny
random checkpoints of `glmtrt.models.chatglm.tiny` (2 layers, seeds 0-4, both formats, tp 1/2,
rope_ratio 1/500, `compute_dtype` auto and float32): the worst observed errors are recorded next to
each entry; the bounds leave a margin of about 3.5x. Real 28/40-layer models accumulate more
rounding than 2-layer ones; pass `tolerance=` to override for them.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from glmtrt.errors import GlmtrtError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tolerance:
    """Pass criteria for one precision."""

    atol: float
    rtol: float
    min_cosine: float
    min_top1: float

    def bound(self, scale: float) -> float:
        """Allowed max-abs difference for logits whose largest magnitude is `scale`."""
        return self.atol + self.rtol * scale


TOLERANCES = {
    # same math up to summation order: the contract (FP32 <= 1e-4 max-abs). Measured worst
    # on the tiny models: max_abs 1.9e-6.
    "float32": Tolerance(atol=1e-4, rtol=0.0, min_cosine=0.99999, min_top1=1.0),
    # fp16 weights + fp16 GEMMs (unit roundoff 4.9e-4). Measured worst (compute in fp16):
    # max_abs / max|logits| 1.4e-3, cosine 0.9999985, top-1 100%  -> rtol 5e-3 (3.5x margin).
    "float16": Tolerance(atol=1e-3, rtol=5e-3, min_cosine=0.9999, min_top1=0.97),
    # bf16 (unit roundoff 3.9e-3, 8x coarser than fp16). Measured worst (compute in bf16):
    # max_abs / max|logits| 1.15e-2, cosine 0.99991, top-1 96.8%  -> rtol 4e-2 (3.5x margin).
    "bfloat16": Tolerance(atol=1e-2, rtol=4e-2, min_cosine=0.999, min_top1=0.90),
    # Weight-only checkpoints: the reference quantizes the linear weights as the engine does
    # (glmtrt.quant.weight_only), so the difference to the float HF model is the quantization
    # error itself. Measured worst over fp16/bf16, seeds 0-4, both formats, tp 1/2: int8
    # max_abs/scale 1.9e-2, cosine 0.99974, top-1 95.2%; int4 0.283, 0.9580, 74.2% (2-layer random
    # Gaussian models; real models differ: pass tolerance= to tighten or loosen).
    "int8-wo": Tolerance(atol=1e-2, rtol=7e-2, min_cosine=0.999, min_top1=0.85),
    "int4-wo": Tolerance(atol=1e-1, rtol=1.0, min_cosine=0.90, min_top1=0.50),
    # Calibrated precisions (glmtrt.reference.qlinear emulates the int8 x int8 SmoothQuant GEMMs,
    # the INT8 KV cache and the W4A16 AWQ GEMM with the checkpoint's scales). Measured worst on
    # the tiny random models (fp16, seeds 0-4, both formats, tp 1/2, alpha 0.5, 8 x 32 random-token
    # calibration, different verify prompts), bounds ~3x the worst:
    # per-token SQ (+/- INT8 KV): max_abs/scale 2.8e-2, cosine 0.99929, top-1 95.2%, KL 1.9e-4.
    "int8-sq": Tolerance(atol=1e-2, rtol=9e-2, min_cosine=0.997, min_top1=0.85),
    # static (per-tensor) activation scales clip what calibration did not see: 0.36, 0.921, 91.9%.
    "int8-sq-static": Tolerance(atol=1e-2, rtol=1.0, min_cosine=0.75, min_top1=0.75),
    # float16 weights + INT8 KV cache only: 9.0e-3, 0.99993, 99.2%, KL 6e-6.
    "int8-kv": Tolerance(atol=1e-2, rtol=3e-2, min_cosine=0.9997, min_top1=0.95),
    # INT4-AWQ group 16 on the tiny models (AWQ or RTN scales): cosine 0.967, top-1 79%; as int4-wo.
    "int4-awq": Tolerance(atol=1e-1, rtol=1.0, min_cosine=0.90, min_top1=0.50),
    # FP8 per-tensor W8A8 (+/- FP8 KV cache), fp16 and bf16, seeds 0-4, both formats, tp 1/2, 8 x 32
    # random-token calibration: e4m3 keeps 3 mantissa bits (relative rounding error up to 1/16 on
    # every weight and input), coarser than per-channel int8 on these Gaussian models. Worst:
    # max_abs/scale 0.166, cosine 0.9881, top-1 87.1%, KL 2.1e-3.
    "fp8": Tolerance(atol=1e-2, rtol=0.5, min_cosine=0.96, min_top1=0.70),
    # float weights (fp16 / bf16) + FP8 KV cache only: 3.0e-2, 0.99909, 97.6%, KL 8.8e-5.
    "fp8-kv": Tolerance(atol=1e-2, rtol=9e-2, min_cosine=0.997, min_top1=0.90),
}
_WEIGHT_ONLY_KEYS = {"W8A16": "int8-wo", "W4A16": "int4-wo",
                     "W8A8_SQ_PER_CHANNEL_PER_TOKEN_PLUGIN": "int8-sq",
                     "W8A8_SQ_PER_TENSOR_PER_TOKEN_PLUGIN": "int8-sq",
                     "W8A8_SQ_PER_CHANNEL_PER_TENSOR_PLUGIN": "int8-sq-static",
                     "W8A8_SQ_PER_TENSOR_PLUGIN": "int8-sq-static", "W4A16_AWQ": "int4-awq", "FP8": "fp8"}
_PRECISION_ORDER = ("float32", "float16", "bfloat16")


def tolerance_for(checkpoint_dtype: str, compute_dtype: str) -> tuple[str, Tolerance]:
    """The tolerance key (least precise of the two dtypes) and its entry."""
    for name in (checkpoint_dtype, compute_dtype):
        if name not in TOLERANCES:
            raise GlmtrtError(f"no verify tolerance for dtype {name!r}", expected=" | ".join(TOLERANCES))
    key = max(checkpoint_dtype, compute_dtype, key=_PRECISION_ORDER.index)
    return key, TOLERANCES[key]


@dataclass(frozen=True)
class PromptResult:
    """Comparison of one prompt (all positions, both context and KV-cache decode)."""

    positions: int          # compared logits rows: 2 x prompt length (context + KV-cache decode)
    max_abs: float
    cosine: float
    top1_agreement: float
    kl: float = 0.0          # mean KL(HF || reference) of the next-token distributions
    nll_ref: float = 0.0     # mean next-token NLL of the prompt under the reference (context phase)
    nll_hf: float = 0.0      # the same under transformers


@dataclass(frozen=True)
class VerifyReport:
    """Outcome of `verify_checkpoint`; `passed` decides the exit code of `glmtrt verify`."""

    checkpoint_dir: str
    hf_dir: str
    source_format: str
    checkpoint_dtype: str
    compute_dtype: str
    tp_size: int
    max_abs: float
    logits_scale: float
    cosine: float
    top1_agreement: float
    kl: float
    perplexity_ref: float
    perplexity_hf: float
    tolerance_key: str
    tolerance: Tolerance
    passed: bool
    prompts: tuple[PromptResult, ...] = field(default_factory=tuple)
    truth: str = "GlmForCausalLM"       # the transformers class compared with

    @property
    def bound(self) -> float:
        """The max-abs bound applied (atol + rtol * logits_scale)."""
        return self.tolerance.bound(self.logits_scale)

    def to_dict(self) -> dict:
        """JSON-ready dict (for --json output and manifests)."""
        d = asdict(self)
        d["bound"] = self.bound
        return d

    def format_table(self) -> str:
        """Human-readable table: one line per prompt, the totals and the verdict."""
        tol = self.tolerance
        lines = [
            f"checkpoint {self.checkpoint_dir} ({self.checkpoint_dtype}, tp={self.tp_size}, "
            f"reference computes in {self.compute_dtype})",
            f"source     {self.hf_dir} ({self.source_format}, transformers {self.truth} float32)",
            "",
            f"{'prompt':>6} {'rows':>6} {'max_abs':>11} {'cosine':>10} {'top1':>7}",
        ]
        for i, p in enumerate(self.prompts):
            lines.append(f"{i:>6} {p.positions:>6} {p.max_abs:>11.3e} {p.cosine:>10.7f} {p.top1_agreement:>7.2%}"
                         f" {p.kl:>9.2e}")
        lines[3] += f" {'KL':>9}"
        lines += [
            f"{'all':>6} {sum(p.positions for p in self.prompts):>6} {self.max_abs:>11.3e} "
            f"{self.cosine:>10.7f} {self.top1_agreement:>7.2%} {self.kl:>9.2e}",
            f"perplexity on the prompts: reference {self.perplexity_ref:.4g}, transformers {self.perplexity_hf:.4g}",
            "",
            f"tolerance ({self.tolerance_key}): max_abs <= {tol.atol:g} + {tol.rtol:g} * {self.logits_scale:.3g}"
            f" = {self.bound:.3e}, cosine >= {tol.min_cosine}, top1 >= {tol.min_top1:.0%}",
            "PASS" if self.passed else "FAIL",
        ]
        return "\n".join(lines)


def default_prompts(vocab_size: int, seed: int = 1234) -> list[list[int]]:
    """Fixed token-id prompts (lengths 5, 17, 40) drawn with a fixed seed from the vocabulary."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab_size, (n,), generator=g).tolist() for n in (5, 17, 40)]


def _prompt_ids(prompts, hf_dir: Path, vocab_size: int) -> list[list[int]]:
    if prompts is None:
        return default_prompts(vocab_size)
    out = []
    tokenizer = None
    for p in prompts:
        if isinstance(p, str):
            if tokenizer is None:
                from glmtrt.tokenizer import load_tokenizer

                tokenizer = load_tokenizer(hf_dir)
            p = tokenizer.encode(p)
        ids = [int(i) for i in p]
        if not ids or min(ids) < 0 or max(ids) >= vocab_size:
            raise GlmtrtError(f"prompt {ids[:8]}... is empty or has ids outside [0, {vocab_size})",
                              expected="non-empty token-id lists (or text with a tokenizer in the HF dir)")
        out.append(ids)
    return out


def _compare(ref, hf, ids=None) -> PromptResult:
    import torch

    diff = (ref - hf).abs().max().item()
    cos = torch.nn.functional.cosine_similarity(ref.double(), hf.double(), dim=-1).min().item()
    top1 = (ref.argmax(-1) == hf.argmax(-1)).double().mean().item()
    lr, lh = torch.log_softmax(ref.double(), -1), torch.log_softmax(hf.double(), -1)
    kl = (lh.exp() * (lh - lr)).sum(-1).mean().item()
    nll_ref = nll_hf = 0.0
    if ids is not None and len(ids) > 1:
        tgt = torch.tensor(list(ids[1:]))
        n = len(ids) - 1
        nll_ref = -lr[:n].gather(1, tgt[:, None]).mean().item()
        nll_hf = -lh[:n].gather(1, tgt[:, None]).mean().item()
    return PromptResult(int(ref.shape[0]), diff, cos, top1, kl, nll_ref, nll_hf)


def resolve_tolerance(ref_model, tolerance: Tolerance | None = None):
    """(checkpoint dtype, compute dtype, tolerance key, Tolerance) of a reference model: weight-only
    checkpoints use their own entry; `tolerance` overrides the entry."""
    ckpt_dtype = str(ref_model.config.get("dtype", "float32"))
    compute = str(ref_model.dtype).replace("torch.", "")
    key, tol = tolerance_for(ckpt_dtype, compute)
    quant_algo = (ref_model.config.get("quantization") or {}).get("quant_algo")
    if quant_algo in _WEIGHT_ONLY_KEYS:
        key = _WEIGHT_ONLY_KEYS[quant_algo]
        tol = TOLERANCES[key]
    elif (ref_model.config.get("quantization") or {}).get("kv_cache_quant_algo") in ("INT8", "FP8"):
        key = {"INT8": "int8-kv", "FP8": "fp8-kv"}[ref_model.config["quantization"]["kv_cache_quant_algo"]]
        tol = TOLERANCES[key]
    return ckpt_dtype, compute, key, tolerance or tol


def quality(results: Sequence[PromptResult]) -> tuple[float, float, float]:
    """(position-weighted mean KL, perplexity of the reference, perplexity of transformers) on the prompts."""
    import math

    n = sum(r.positions for r in results)
    kl = sum(r.kl * r.positions for r in results) / n
    toks = [max(r.positions // 2 - 1, 0) for r in results]
    ppl_ref = math.exp(sum(r.nll_ref * t for r, t in zip(results, toks)) / max(sum(toks), 1))
    ppl_hf = math.exp(sum(r.nll_hf * t for r, t in zip(results, toks)) / max(sum(toks), 1))
    return kl, ppl_ref, ppl_hf


def summarize(results: Sequence[PromptResult], scale: float, tol: Tolerance):
    """(max_abs, worst cosine, position-weighted top-1, passed) over all prompts."""
    n = sum(r.positions for r in results)
    max_abs = max(r.max_abs for r in results)
    cosine = min(r.cosine for r in results)
    top1 = sum(r.top1_agreement * r.positions for r in results) / n
    passed = max_abs <= tol.bound(scale) and cosine >= tol.min_cosine and top1 >= tol.min_top1
    return max_abs, cosine, top1, passed


def reference_logits(model, ids: Sequence[int]):
    """[2*T, V] float32: context-phase logits of the whole prompt, then the same positions decoded
    through the KV cache (first half as context, the rest one token at a time)."""
    import torch

    full, _ = model.forward(torch.tensor([list(ids)]))
    split = max(1, len(ids) // 2)
    parts, past = [], None
    first, past = model.forward(torch.tensor([list(ids[:split])]))
    parts.append(first[0])
    for tok in ids[split:]:
        step, past = model.forward(torch.tensor([[tok]]), past)
        parts.append(step[0])
    return torch.cat([full[0]] + parts, dim=0)


def verify_checkpoint(ckpt_dir: str | Path, hf_dir: str | Path, prompts=None, device: str = "cpu",
                      compute_dtype: str | None = "auto", tolerance: Tolerance | None = None,
                      allow_pickle: bool = False) -> VerifyReport:
    """Compare the reference on `ckpt_dir` with transformers on `hf_dir` (see module docstring).

    prompts: token-id lists or strings (strings need a tokenizer in hf_dir); None = `default_prompts`.
    compute_dtype: "auto" = the checkpoint's dtype (like the engine); None/"float32" = float32 math.
    tolerance: overrides the `TOLERANCES` entry (the report still names the dtype key).
    allow_pickle: read pickle `.bin` source weights (refused otherwise, as in convert).
    """
    import torch

    from glmtrt.models.chatglm.hf_glm import load_hf_glm, read_hf_config, source_format
    from glmtrt.reference.model import ReferenceModel

    ckpt_dir, hf_dir = Path(ckpt_dir), Path(hf_dir)
    fmt = source_format(read_hf_config(hf_dir))
    ref_model = ReferenceModel.from_checkpoint(ckpt_dir, device=device, dtype=compute_dtype)
    ckpt_dtype, compute, key, tol = resolve_tolerance(ref_model, tolerance)
    hf_model = load_hf_glm(hf_dir, dtype=torch.float32, device=device, allow_pickle=allow_pickle)
    hf_vocab = hf_model.config.vocab_size
    if hf_vocab != ref_model.vocab_size:
        raise GlmtrtError(f"vocab sizes differ: checkpoint {ref_model.vocab_size}, source {hf_vocab}",
                          expected="the checkpoint converted from this source", fix="check both paths")
    log.info("verify %s against %s (%s), compute %s, tolerance %s", ckpt_dir, hf_dir, fmt, compute, key)
    results, scale = [], 0.0
    for ids in _prompt_ids(prompts, hf_dir, hf_vocab):
        with torch.inference_mode():
            hf = hf_model(torch.tensor([ids], device=device)).logits[0].float()
        ref = reference_logits(ref_model, ids)
        scale = max(scale, hf.abs().max().item())
        results.append(_compare(ref, torch.cat([hf, hf], dim=0), ids))
    max_abs, cosine, top1, passed = summarize(results, scale, tol)
    kl, ppl_ref, ppl_hf = quality(results)
    return VerifyReport(
        checkpoint_dir=str(ckpt_dir), hf_dir=str(hf_dir), source_format=fmt, checkpoint_dtype=ckpt_dtype,
        compute_dtype=compute, tp_size=ref_model.geometry.tp_size, max_abs=max_abs, logits_scale=scale,
        cosine=cosine, top1_agreement=top1, kl=kl, perplexity_ref=ppl_ref, perplexity_hf=ppl_hf, tolerance_key=key, tolerance=tol, passed=passed,
        prompts=tuple(results))
