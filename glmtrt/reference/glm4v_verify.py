"""`verify_glm4v`: Glm4vReference on a glmtrt Glm4v conversion vs transformers' Glm4vForConditionalGeneration.

Like glmtrt.reference.verify (same report, same tolerance table): every prompt is compared twice,
once as one context-phase forward and once with the first part as context and the rest decoded
through the KV cache (positions = cache index + rope delta, as the engine does), both against one
float32 transformers forward of the whole prompt. Text prompts are the fixed random ones of
`default_prompts` (image-token ids removed); each `--image` adds a prompt
`[text] <|begin_of_image|> <|image|> <|end_of_image|> [text]` whose pixels go through glmtrt's
preprocessing for both sides (tested equal to transformers' Glm4vImageProcessorPil) and whose
image features come from our vision encoder (the ONNX graph) on the reference side and from
transformers' vision tower on the other.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from glmtrt.errors import GlmtrtError
from glmtrt.reference.verify import (Tolerance, VerifyReport, _compare, default_prompts, quality,
                                     resolve_tolerance, summarize)

log = logging.getLogger(__name__)


def load_hf_glm4v(hf_dir: str | Path, device: str = "cpu"):
    """transformers' Glm4vForConditionalGeneration in float32, eval mode."""
    import torch
    from transformers import Glm4vForConditionalGeneration

    return Glm4vForConditionalGeneration.from_pretrained(str(hf_dir), dtype=torch.float32).to(device).eval()


def _hf_logits(hf, prompt, images, device):
    import numpy as np
    import torch

    vocab = prompt_vocab(hf)
    types = [1 if t >= vocab else 0 for t in prompt.input_ids]          # prompt-table rows = image tokens
    ids = [hf.config.image_token_id if k else t for k, t in zip(types, prompt.input_ids)]
    kw = {"input_ids": torch.tensor([ids], device=device), "mm_token_type_ids": torch.tensor([types], device=device)}
    if images:
        kw["pixel_values"] = torch.tensor(np.concatenate([im.patches for im in images]), device=device)
        kw["image_grid_thw"] = torch.tensor([im.grid_thw for im in images], device=device)
    with torch.inference_mode():
        return hf(**kw).logits[0].float()


def prompt_vocab(hf) -> int:
    """The text vocabulary size of a transformers Glm4v model."""
    return int(hf.config.text_config.vocab_size)


def _reference_rows(ref, prompt, split: int):
    import torch

    full, _ = ref.prompt_forward(prompt)
    head = type(prompt)(prompt.input_ids[:split], prompt.prompt_table, prompt.positions[:, :split],
                        prompt.rope_delta, prompt.grids, prompt.notes)
    first, past = ref.prompt_forward(head)
    rows = [full[0], first[0]]
    for tok in prompt.input_ids[split:]:
        step, past = ref.forward([[tok]], past, rope_delta=prompt.rope_delta)
        rows.append(step[0])
    return torch.cat(rows, dim=0)


def verify_glm4v(ckpt_dir: str | Path, hf_dir: str | Path, images: Sequence = (), device: str = "cpu",
                 compute_dtype: str | None = "auto", tolerance: Tolerance | None = None,
                 max_pixels: int | None = None) -> VerifyReport:
    """Compare Glm4vReference on `ckpt_dir` with transformers on `hf_dir` (text prompts + one per image)."""
    import torch

    from glmtrt.models.glm4v.preprocess import MAX_PIXELS, preprocess_image
    from glmtrt.reference.glm4v import Glm4vReference

    ckpt_dir, hf_dir = Path(ckpt_dir), Path(hf_dir)
    ref = Glm4vReference.from_checkpoint(ckpt_dir, device=device, dtype=compute_dtype)
    ckpt_dtype, compute, key, tol = resolve_tolerance(ref, tolerance)
    hf = load_hf_glm4v(hf_dir, device)
    if prompt_vocab(hf) != ref.vocab_size:
        raise GlmtrtError(f"vocab sizes differ: checkpoint {ref.vocab_size}, source {prompt_vocab(hf)}",
                          expected="the checkpoint converted from this source", fix="check both paths")
    cfg = hf.config
    special = {cfg.image_token_id, cfg.image_start_token_id, cfg.image_end_token_id, cfg.video_token_id}
    texts = [[0 if t in special else t for t in p] for p in default_prompts(ref.vocab_size)]
    cases = [(p, []) for p in texts]
    for k, image in enumerate(images):
        pre, post = texts[1][:6 + k], texts[2][:9]
        cases.append((pre + [cfg.image_start_token_id, cfg.image_token_id, cfg.image_end_token_id] + post, [image]))
    results, scale = [], 0.0
    for ids, imgs in cases:
        prompt = ref.prepare(ids, imgs, max_pixels=max_pixels)
        inputs = [preprocess_image(i, max_pixels=max_pixels or MAX_PIXELS) for i in imgs]
        want = _hf_logits(hf, prompt, inputs, device)
        split = len(prompt.input_ids) - len(ids[-4:]) if imgs else max(1, len(ids) // 2)
        got = _reference_rows(ref, prompt, split)
        scale = max(scale, want.abs().max().item())
        results.append(_compare(got, torch.cat([want, want[:split], want[split:]], dim=0),
                                [cfg.image_token_id if t >= ref.vocab_size else t for t in prompt.input_ids]))
    max_abs, cosine, top1, passed = summarize(results, scale, tol)
    kl, ppl_ref, ppl_hf = quality(results)
    log.info("glm4v verify: %d prompt(s) (%d with an image), max_abs %.3e", len(cases), len(images), max_abs)
    return VerifyReport(
        checkpoint_dir=str(ckpt_dir), hf_dir=str(hf_dir), source_format="glm4v", checkpoint_dtype=ckpt_dtype,
        compute_dtype=compute, tp_size=ref.geometry.tp_size, max_abs=max_abs, logits_scale=scale,
        cosine=cosine, top1_agreement=top1, kl=kl, perplexity_ref=ppl_ref, perplexity_hf=ppl_hf,
        tolerance_key=key, tolerance=tol, passed=passed, prompts=tuple(results), truth="Glm4vForConditionalGeneration")
