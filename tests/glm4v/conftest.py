"""Tiny random Glm4vForConditionalGeneration checkpoints built with transformers' own classes."""
from __future__ import annotations

import pytest

VOCAB, IMAGE, BOI, EOI = 160, 150, 151, 152


def tiny_glm4v_config(**text_overrides):
    from transformers import Glm4vConfig

    text = dict(vocab_size=VOCAB, hidden_size=128, intermediate_size=96, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                 "partial_rotary_factor": 0.5, "mrope_section": [2, 3, 3]},
                eos_token_id=[VOCAB - 1])
    text.update(text_overrides)
    vision = dict(depth=2, hidden_size=32, num_heads=2, out_hidden_size=128, intermediate_size=48,
                  image_size=56, patch_size=14, spatial_merge_size=2, temporal_patch_size=2)
    return Glm4vConfig(text_config=text, vision_config=vision, image_token_id=IMAGE,
                       image_start_token_id=BOI, image_end_token_id=EOI, video_token_id=153,
                       video_start_token_id=154, video_end_token_id=155)


def make_tiny_glm4v(path, seed: int = 0):
    """Save a tiny random Glm4v model (float32) at `path`; returns the transformers model."""
    import torch
    from transformers import Glm4vForConditionalGeneration

    torch.manual_seed(seed)
    model = Glm4vForConditionalGeneration(tiny_glm4v_config()).eval()
    with torch.no_grad():   # non-trivial norm weights so every norm matters
        for name, p in model.named_parameters():
            if p.dim() == 1 and "norm" in name:
                p.add_(torch.randn_like(p) * 0.2)
            # the default init (std 0.02) makes the merger's SwiGLU output ~1e-3: scale it so image
            # features are O(1) and a vision-side bug moves the logits
            if "visual.merger." in name and name.endswith(("gate_proj.weight", "up_proj.weight", "down_proj.weight")):
                p.mul_(10.0)
    model.save_pretrained(path)
    return model


@pytest.fixture(scope="session")
def tiny_glm4v(tmp_path_factory):
    """(hf_dir, transformers model) of a tiny Glm4v checkpoint."""
    path = tmp_path_factory.mktemp("glm4v") / "hf"
    model = make_tiny_glm4v(path)
    return path, model


@pytest.fixture(scope="session")
def tiny_glm4v_converted(tiny_glm4v, tmp_path_factory):
    """A float32 glmtrt conversion (llm/ + vision/) of the tiny Glm4v checkpoint."""
    from glmtrt.convert.pipeline import convert_checkpoint

    out = tmp_path_factory.mktemp("glm4v-conv") / "fp32"
    convert_checkpoint(tiny_glm4v[0], out, dtype="float32", progress=False)
    return out
