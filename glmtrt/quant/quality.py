"""Quantization quality table: each precision's reference executor vs the FP16 checkpoint's.

For a trained HF model (glmtrt.quant.tiny_trained) every precision is converted with glmtrt's own
pipeline and run by the reference executor (which emulates the engine's quantized kernels) on
held-out text (first half of each sequence as the prompt, second half decoded through the KV cache);
the FP16 checkpoint run the same way is the baseline. Reported per precision:
perplexity on the held-out text, top-1 agreement with FP16 and mean KL(FP16 || precision).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: (label, precision, convert_calibrated keyword arguments or None for the float pipeline)
CONFIGS = (
    ("fp16", "fp16", None),
    ("int8-wo", "int8-wo", None),
    ("int4-wo", "int4-wo", None),
    ("int8-sq a=0.5", "int8-sq", {"alpha": 0.5}),
    ("int8-sq a=0", "int8-sq", {"alpha": 0.0}),       # s = 1/max|W|: NOT unsmoothed (SmoothQuant eq. 4)
    ("int8-sq no smoothing (plain W8A8)", "int8-sq", {"smooth": False}),
    ("int8-sq a=0.5 + INT8 KV", "int8-sq", {"alpha": 0.5, "int8_kv_cache": True}),
    ("int8-sq a=0.5 static per-tensor", "int8-sq", {"alpha": 0.5, "sq_variant": "per-tensor"}),
    ("int4-awq g64", "int4-awq", {"group_size": 64}),
    ("int4 RTN g64", "int4-awq", {"group_size": 64, "awq_search": False}),
    ("int4-awq g128", "int4-awq", {"group_size": 128}),
    ("int4 RTN g128", "int4-awq", {"group_size": 128, "awq_search": False}),
    ("fp8", "fp8", {}),
    ("fp8 + FP8 KV", "fp8", {"fp8_kv_cache": True}),
)


@dataclass(frozen=True)
class QualityRow:
    label: str
    perplexity: float
    top1_vs_fp16: float
    kl_vs_fp16: float


def held_out_ids(hf_dir: Path, seq_len: int = 64, n: int = 8):
    """[n, seq_len] ids of the held-out lines (tokenizer of hf_dir)."""
    import torch

    from glmtrt.quant.tiny_trained import text_lines
    from glmtrt.tokenizer import load_tokenizer

    tok = load_tokenizer(hf_dir)
    stream = [t for ln in text_lines()[1] for t in tok.encode(ln) + [2]]
    n = min(n, len(stream) // seq_len)
    return torch.tensor([stream[k * seq_len:(k + 1) * seq_len] for k in range(n)])


def _logits(ckpt: Path, ids):
    """Logits [n * T, V] of each held-out sequence as the engine produces them: the first half is
    the prompt (context phase: attention on the qkv GEMM output), the second half is decoded one
    token at a time, teacher-forced, reading the KV cache (quantized for INT8 / FP8 KV)."""
    import torch

    from glmtrt.reference.model import ReferenceModel

    model = ReferenceModel.from_checkpoint(ckpt, dtype="auto")
    n, t = ids.shape
    p = t // 2
    caches = [model.new_cache(t) for _ in range(n)]
    rows = [[model.prefill(ids[k, :p].tolist(), caches[k]).float()] for k in range(n)]
    for j in range(p, t):
        step = model.decode(ids[:, j].tolist(), caches).float()
        for k in range(n):
            rows[k].append(step[k:k + 1])
    return torch.cat([torch.cat(r) for r in rows])


def quality_table(hf_dir: str | Path, work: str | Path, calib_samples: int = 16, calib_seq_len: int = 64,
                  configs=CONFIGS) -> list[QualityRow]:
    """Convert `hf_dir` at every config into `work` and compare each with FP16 on held-out text."""
    import shutil

    import torch

    from glmtrt.convert.pipeline import convert_checkpoint
    from glmtrt.models.chatglm.smoothing import smoothing_groups
    from glmtrt.quant.calibrate import CalibOptions
    from glmtrt.quant.convert_calibrated import convert_calibrated

    hf_dir, work = Path(hf_dir), Path(work)
    ids = held_out_ids(hf_dir)
    targets = ids[:, 1:].reshape(-1)
    calib = CalibOptions(calib_samples, calib_seq_len, 0)
    base = None
    rows = []
    for label, precision, kw in configs:
        out = work / label.replace(" ", "_").replace("=", "").replace("(", "").replace(")", "")
        shutil.rmtree(out, ignore_errors=True)
        if kw is None:
            quant = None if precision == "fp16" else precision
            convert_checkpoint(hf_dir, out, dtype="float16", quant=quant, progress=False)
        else:
            convert_calibrated(hf_dir, out, smoothing_groups=smoothing_groups, precision=precision, calib=calib,
                               progress=False, **kw)
        logits = _logits(out, ids)
        shutil.rmtree(out, ignore_errors=True)
        lp = torch.log_softmax(logits.double(), -1)
        per_seq = lp.reshape(ids.shape[0], ids.shape[1], -1)[:, :-1].reshape(-1, lp.shape[-1])
        ppl = math.exp(-per_seq.gather(1, targets[:, None]).mean().item())
        if base is None:
            base = lp
        top1 = (lp.argmax(-1) == base.argmax(-1)).double().mean().item()
        kl = (base.exp() * (base - lp)).sum(-1).mean().item()
        rows.append(QualityRow(label, ppl, top1, kl))
        log.info("%s: ppl %.3f top1 %.4f kl %.2e", label, ppl, top1, kl)
    return rows


def markdown(rows: list[QualityRow]) -> str:
    """The docs/QUANTIZATION.md table."""
    lines = ["| precision | perplexity | top-1 agreement vs FP16 | KL(FP16 ‖ precision) |", "|---|---|---|---|"]
    lines += [f"| {r.label} | {r.perplexity:.3f} | {r.top1_vs_fp16:.2%} | {r.kl_vs_fp16:.2e} |" for r in rows]
    return "\n".join(lines)
