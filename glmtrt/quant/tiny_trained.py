"""A tiny GLM TRAINED here, for quantization-quality evidence (random weights have no outliers).

`train_tiny_glm(out_dir, steps)` trains transformers' GlmForCausalLM (2 layers, hidden 128, GQA
4/2 heads, vocab 1024 of the tiny ChatGLM3 tokenizer) on the project's own bilingual text: the
tokenizer corpus (glmtrt/tokenizer/tiny_corpus.txt + its template sentences) and the built-in
calibration prompts. Every 10th line is held out for evaluation. CPU, fixed seed, single thread
count set by the caller; the result is an HF folder (config.json, model.safetensors,
tokenizer.model) that `glmtrt convert` reads like any GlmForCausalLM checkpoint.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

DIMS = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=32)


def text_lines() -> tuple[list[str], list[str]]:
    """(training lines, held-out lines) of the project's bilingual text."""
    from glmtrt.quant.calib_data import builtin_prompts
    from glmtrt.tokenizer.tiny import corpus_lines

    lines = list(dict.fromkeys(ln for ln in corpus_lines() + builtin_prompts() if ln.strip()))   # no repeats
    held = lines[::10]
    return [ln for k, ln in enumerate(lines) if k % 10], held


def train_tiny_glm(out_dir: str | Path, steps: int = 600, seq_len: int = 64, batch: int = 16, seed: int = 0,
                   lr: float = 3e-3, threads: int = 1) -> dict:
    """Train and save the tiny GLM (the step with the best held-out perplexity is kept); returns
    {"steps", "kept_step", "first_loss", "last_loss", "held_out_ppl", "unigram_held_out_ppl", ...}.

    threads: torch threads while training. 1 by default: on a shared 2-core machine two threads made
    a step of this 0.56M-parameter model 15x slower (4 s instead of 0.22 s, measured under load)."""
    import torch

    prev = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        return _train(Path(out_dir), steps, seq_len, batch, seed, lr)
    finally:
        torch.set_num_threads(prev)


def _train(out: Path, steps: int, seq_len: int, batch: int, seed: int, lr: float, eval_every: int = 25) -> dict:
    import math

    import torch
    from safetensors.torch import save_file
    from transformers import GlmConfig, GlmForCausalLM

    from glmtrt.tokenizer import load_tokenizer
    from glmtrt.tokenizer.tiny import TINY_VOCAB_PADDED, make_tiny_chatglm3_tokenizer

    out.mkdir(parents=True, exist_ok=True)
    make_tiny_chatglm3_tokenizer(out)
    tok = load_tokenizer(out)
    train, held = text_lines()
    stream = torch.tensor([t for ln in train for t in tok.encode(ln) + [2]], dtype=torch.long)
    held_stream = torch.tensor([t for ln in held for t in tok.encode(ln) + [2]], dtype=torch.long)
    n_eval = len(held_stream) // seq_len
    held_ids = held_stream[: n_eval * seq_len].reshape(n_eval, seq_len)
    torch.manual_seed(seed)
    cfg = GlmConfig(vocab_size=TINY_VOCAB_PADDED, max_position_embeddings=512, rms_norm_eps=1e-5,
                    partial_rotary_factor=0.5, attention_bias=True, tie_word_embeddings=False,
                    pad_token_id=0, eos_token_id=2, **DIMS)
    model = GlmForCausalLM(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(seed)

    def held_out_ppl() -> float:
        model.eval()
        with torch.no_grad():
            nll = model(input_ids=held_ids, labels=held_ids).loss.item()
        model.train()
        return math.exp(nll)

    first = last = None
    best = (float("inf"), 0, None)          # early stopping on the held-out perplexity: the text is small
    model.train()
    for step in range(steps):
        starts = torch.randint(0, len(stream) - seq_len - 1, (batch,), generator=g)
        x = torch.stack([stream[s:s + seq_len] for s in starts])
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        first = loss.item() if first is None else first
        last = loss.item()
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            ppl = held_out_ppl()
            log.info("step %d loss %.3f held-out ppl %.1f", step + 1, last, ppl)
            if ppl < best[0]:
                best = (ppl, step + 1, {k: v.detach().clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best[2])
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    hf_cfg = cfg.to_dict()
    hf_cfg["architectures"] = ["GlmForCausalLM"]
    (out / "config.json").write_text(json.dumps(hf_cfg, indent=2) + "\n", encoding="utf-8")
    info = {"steps": steps, "kept_step": best[1], "first_loss": first, "last_loss": last,
            "held_out_ppl": best[0], "held_out_tokens": int(held_ids.numel()),
            "unigram_held_out_ppl": unigram_ppl(stream, held_ids, TINY_VOCAB_PADDED)}
    (out / "training.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info


def unigram_ppl(train_ids, held_ids, vocab: int) -> float:
    """Perplexity of held_ids under the add-one-smoothed unigram distribution of train_ids (the
    baseline a model must beat to have learnt more than token frequencies)."""
    import math

    import torch

    counts = torch.bincount(train_ids.reshape(-1), minlength=vocab).double() + 1.0
    logp = (counts / counts.sum()).log()
    return math.exp(-logp[held_ids.reshape(-1)].mean().item())
