"""Glm4v convert: registry row, spec, llm/ weight map (permuted q/k), TP shards, vision/, manifest."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from glmtrt.convert.pipeline import convert_checkpoint
from glmtrt.errors import GlmtrtError
from glmtrt.models.glm4v.rotary import permute_heads
from glmtrt.models.registry import load_model, resolve


def test_registry_and_spec(tiny_glm4v):
    hf, _ = tiny_glm4v
    entry, spec = load_model(hf)
    assert entry.family == "glm4v" and entry.architecture == "Glm4vForConditionalGeneration"
    assert (spec.num_layers, spec.hidden_size, spec.num_heads, spec.num_kv_heads, spec.head_size) == (2, 128, 4, 2, 32)
    assert spec.rotary_dim == 16 and spec.mrope_section == (2, 3, 3)
    assert spec.vision.patch_dim == 3 * 2 * 14 * 14 and spec.vision.head_dim == 16


def test_default_glm4v_config_facts():
    """The issue's numbers, read from transformers' own defaults (configuration_glm4v.py)."""
    from transformers import Glm4vConfig

    from glmtrt.models.glm4v.config import spec_from_glm4v_config

    spec = spec_from_glm4v_config({"architectures": ["Glm4vForConditionalGeneration"],
                                   **Glm4vConfig().to_dict()})
    assert (spec.num_layers, spec.hidden_size, spec.num_heads, spec.num_kv_heads, spec.head_size,
            spec.intermediate_size, spec.vocab_size) == (40, 4096, 32, 2, 128, 13696, 151552)
    assert spec.norm_eps == 1e-5 and spec.rotary_dim == 64 and spec.mrope_section == (8, 12, 12)
    v = spec.vision
    assert (v.depth, v.hidden_size, v.num_heads, v.patch_size, v.temporal_patch_size, v.spatial_merge_size,
            v.out_hidden_size, v.patch_dim, v.image_size // v.patch_size) == (24, 1536, 12, 14, 2, 2, 4096, 1176, 24)
    assert (spec.image_token_id, spec.image_start_token_id, spec.image_end_token_id) == (151343, 151339, 151340)
    assert 9.0e9 < spec.num_params() < 11e9 and 0.5e9 < v.num_params() < 1.0e9


def test_llm_and_vision_layout(tiny_glm4v, tiny_glm4v_converted):
    hf, model = tiny_glm4v
    out = tiny_glm4v_converted
    cfg = json.loads((out / "llm" / "config.json").read_text())
    assert cfg["architecture"] == "Glm4vForCausalLM" and "GLM" not in cfg["architecture"]
    assert cfg["position_embedding_type"] == "mrope" and cfg["mrope_section"] == [2, 3, 3]
    assert cfg["rotary_embedding_dim"] == 16 and cfg["head_size"] == 32
    w = load_file(str(out / "llm" / "rank0.safetensors"))
    sd = model.state_dict()
    p = "model.language_model.layers.1."
    q = permute_heads(sd[p + "self_attn.q_proj.weight"], 32, 16)
    k = permute_heads(sd[p + "self_attn.k_proj.weight"], 32, 16)
    assert torch.equal(w["transformer.layers.1.attention.qkv.weight"],
                       torch.cat([q, k, sd[p + "self_attn.v_proj.weight"]]))
    gate, up = sd[p + "mlp.gate_up_proj.weight"].chunk(2)
    assert torch.equal(w["transformer.layers.1.mlp.fc.weight"], torch.cat([up, gate]))
    assert torch.equal(w["transformer.layers.1.post_attention_layernorm.weight"], sd[p + "post_self_attn_layernorm.weight"])
    assert torch.equal(w["transformer.layers.1.pre_feedforward_layernorm.weight"], sd[p + "post_attention_layernorm.weight"])
    assert torch.equal(w["transformer.layers.1.post_feedforward_layernorm.weight"], sd[p + "post_mlp_layernorm.weight"])
    v = load_file(str(out / "vision" / "vision.safetensors"))
    assert set(v) == {n for n in sd if n.startswith("model.visual.")}
    man = json.loads((out / "manifest.json").read_text())
    assert man["model"]["family"] == "glm4v"
    assert {"llm/config.json", "llm/rank0.safetensors", "vision/vision.safetensors", "vision/config.json",
            "vision/encoder.onnx"} <= set(man["files"])


def test_tp2_int8wo(tiny_glm4v, tmp_path):
    out = convert_checkpoint(tiny_glm4v[0], tmp_path / "tp2", dtype="float16", tp_size=2, quant="int8-wo",
                             progress=False)
    cfg = json.loads((out / "llm" / "config.json").read_text())
    assert cfg["mapping"]["tp_size"] == 2 and cfg["quantization"]["quant_algo"] == "W8A16"
    r0 = load_file(str(out / "llm" / "rank0.safetensors"))
    r1 = load_file(str(out / "llm" / "rank1.safetensors"))
    # 4 q heads / 2 ranks, 2 kv heads / 2 ranks: 2*32 + 32 + 32 rows each
    assert r0["transformer.layers.0.attention.qkv.weight"].shape == (128, 128)
    assert not torch.equal(r0["transformer.layers.0.attention.qkv.weight"],
                           r1["transformer.layers.0.attention.qkv.weight"])
    assert r0["lm_head.weight"].dtype == torch.float16


def test_missing_vision_tower(tiny_glm4v, tmp_path):
    from safetensors.torch import save_file

    src = tmp_path / "novis"
    src.mkdir()
    hf = tiny_glm4v[0]
    (src / "config.json").write_text((hf / "config.json").read_text())
    sd = load_file(str(hf / "model.safetensors"))
    save_file({k: v for k, v in sd.items() if not k.startswith("model.visual.")}, str(src / "model.safetensors"))
    with pytest.raises(GlmtrtError, match="vision-tower tensor"):
        convert_checkpoint(src, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_unknown_architecture_lists_glm4v():
    with pytest.raises(GlmtrtError, match="Glm4vForConditionalGeneration"):
        resolve({"architectures": ["Qwen2VLForConditionalGeneration"]})
