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
}
_WEIGHT_ONLY_KEYS = {"W8A16": "int8-wo", "W4A16": "int4-wo"}
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
            lines.append(f"{i:>6} {p.positions:>6} {p.max_abs:>11.3e} {p.cosine:>10.7f} {p.top1_agreement:>7.2%}")
        lines += [
            f"{'all':>6} {sum(p.positions for p in self.prompts):>6} {self.max_abs:>11.3e} "
            f"{self.cosine:>10.7f} {self.top1_agreement:>7.2%}",
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


def _compare(ref, hf) -> PromptResult:
    import torch

    diff = (ref - hf).abs().max().item()
    cos = torch.nn.functional.cosine_similarity(ref.double(), hf.double(), dim=-1).min().item()
    top1 = (ref.argmax(-1) == hf.argmax(-1)).double().mean().item()
    return PromptResult(int(ref.shape[0]), diff, cos, top1)


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
    return ckpt_dtype, compute, key, tolerance or tol


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
                      compute_dtype: str | None = "auto", tolerance: Tolerance | None = None) -> VerifyReport:
    """Compare the reference on `ckpt_dir` with transformers on `hf_dir` (see module docstring).

    prompts: token-id lists or strings (strings need a tokenizer in hf_dir); None = `default_prompts`.
    compute_dtype: "auto" = the checkpoint's dtype (like the engine); None/"float32" = float32 math.
    tolerance: overrides the `TOLERANCES` entry (the report still names the dtype key).
    """
    import torch

    from glmtrt.models.chatglm.hf_glm import load_hf_glm, read_hf_config, source_format
    from glmtrt.reference.model import ReferenceModel

    ckpt_dir, hf_dir = Path(ckpt_dir), Path(hf_dir)
    fmt = source_format(read_hf_config(hf_dir))
    ref_model = ReferenceModel.from_checkpoint(ckpt_dir, device=device, dtype=compute_dtype)
    ckpt_dtype, compute, key, tol = resolve_tolerance(ref_model, tolerance)
    hf_model = load_hf_glm(hf_dir, dtype=torch.float32, device=device)
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
        results.append(_compare(ref, torch.cat([hf, hf], dim=0)))
    max_abs, cosine, top1, passed = summarize(results, scale, tol)
    return VerifyReport(
        checkpoint_dir=str(ckpt_dir), hf_dir=str(hf_dir), source_format=fmt, checkpoint_dtype=ckpt_dtype,
        compute_dtype=compute, tp_size=ref_model.geometry.tp_size, max_abs=max_abs, logits_scale=scale,
        cosine=cosine, top1_agreement=top1, tolerance_key=key, tolerance=tol, passed=passed,
        prompts=tuple(results))
