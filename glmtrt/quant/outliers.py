"""A function-preserving reparametrization that gives a trained GLM LLM-like activation outliers.

Real LLMs have a few hidden channels whose activations are 10-100x the others after the norms
(the outliers SmoothQuant and AWQ are designed for: SmoothQuant paper, Xiao et al. 2023, section
3; "massive activations"); a 2-layer model trained for a minute on a few hundred lines has none
(its norm gains are all alike). `add_outlier_channels` multiplies the gain of `channels` hidden
channels of input_layernorm and post_attention_layernorm by `factor` and divides the matching
input columns of the linears those norms feed (q/k/v_proj, gate_up_proj) by `factor`.
The float model computes the same function (checked: the max logit difference is returned), but
the inputs of qkv and fc now carry outlier channels whose weight columns are small - exactly the
structure that SmoothQuant migrates and AWQ protects. It is a constructed structure, not a
learned one: results on it show that the quantizers handle outliers as designed, not what a real
model's outliers look like.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

#: HF GlmForCausalLM norm -> the linears whose input it produces
FED_BY = {"input_layernorm": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
          "post_attention_layernorm": ("mlp.gate_up_proj",)}


def add_outlier_channels(src: str | Path, dst: str | Path, channels: int = 3, factor: float = 30.0,
                         seed: int = 0, check_ids=None) -> dict:
    """Write the reparametrized copy of the HF folder `src` to `dst`; returns {"channels",
    "factor", "max_logit_diff", "max_abs_logit"} (the diff is measured in float32 on check_ids)."""
    import torch
    from safetensors.torch import load_file, save_file

    src, dst = Path(src), Path(dst)
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    state = load_file(str(src / "model.safetensors"))
    hidden = int(json.loads((src / "config.json").read_text())["hidden_size"])
    picked = torch.randperm(hidden, generator=torch.Generator().manual_seed(seed))[:channels].sort().values
    layers = sorted({k.split(".")[2] for k in state if k.startswith("model.layers.")}, key=int)
    for i in layers:
        for norm, linears in FED_BY.items():
            state[f"model.layers.{i}.{norm}.weight"][picked] *= factor
            for lin in linears:
                state[f"model.layers.{i}.{lin}.weight"][:, picked] /= factor
    save_file(state, str(dst / "model.safetensors"), metadata={"format": "pt"})
    info = {"channels": picked.tolist(), "factor": factor}
    if check_ids is not None:
        from transformers import AutoModelForCausalLM

        with torch.no_grad():
            a, b = (AutoModelForCausalLM.from_pretrained(str(p), dtype=torch.float32)(input_ids=check_ids).logits
                    for p in (src, dst))
        info.update(max_logit_diff=(a - b).abs().max().item(), max_abs_logit=a.abs().max().item())
    (dst / "outliers.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info
