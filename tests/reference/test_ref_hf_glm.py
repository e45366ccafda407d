"""transformers GlmForCausalLM from either GLM source format, no remote code
(renames per transformers' models/glm/convert_glm_weights_to_hf.py)."""
from __future__ import annotations

import json

import pytest
import torch

from glmtrt.errors import GlmtrtError
from glmtrt.models.chatglm.hf_glm import (chatglm_state_dict_to_glm, glm_config_from_chatglm, load_hf_glm,
                                          read_hf_config, source_format)
from tests.conftest import shared_model
from tests.reference.conftest import hf_logits


def test_both_formats_give_the_same_model(tiny, prompt_ids):
    a = hf_logits(tiny.hf_model("chatglm", rope_ratio=500.0), prompt_ids)
    b = hf_logits(tiny.hf_model("hf-glm", rope_ratio=500.0), prompt_ids)
    assert torch.equal(a, b)
    c = hf_logits(tiny.hf_model("chatglm"), prompt_ids)
    assert not torch.allclose(a, c)                    # rope_ratio reached rope_theta


def test_chatglm_config_renamed(tiny):
    cfg = read_hf_config(tiny.source("chatglm", rope_ratio=500.0))
    assert source_format(cfg) == "chatglm"
    g = glm_config_from_chatglm(cfg)
    assert g.rope_parameters["rope_theta"] == pytest.approx(5e6)
    assert g.rope_parameters["partial_rotary_factor"] == 0.5
    assert (g.head_dim, g.num_key_value_heads, g.vocab_size, g.rms_norm_eps) == (16, 2, 128, 1e-5)
    assert g.attention_bias is True


@pytest.mark.parametrize("name,theta,vocab,eos", [
    ("chatglm3-6b", 1e4, 65024, 2),
    ("glm-4-9b-chat", 5e6, 151552, [151329, 151336, 151338]),
])
def test_real_configs(name, theta, vocab, eos):
    cfg = read_hf_config(shared_model(name))
    assert source_format(cfg) == "chatglm"
    g = glm_config_from_chatglm(cfg)
    assert g.rope_parameters["rope_theta"] == pytest.approx(theta)
    assert (g.vocab_size, g.head_dim, g.num_key_value_heads, g.num_attention_heads) == (vocab, 128, 2, 32)
    assert (g.hidden_size, g.intermediate_size) == (4096, 13696)
    assert g.eos_token_id == eos


def test_qkv_split_and_unknown_names(tiny):
    g = glm_config_from_chatglm(read_hf_config(tiny.source("chatglm")))
    qkv = torch.arange((4 + 2 * 2) * 16 * 3, dtype=torch.float32).reshape(-1, 3)
    out = chatglm_state_dict_to_glm({"transformer.encoder.layers.3.self_attention.query_key_value.weight": qkv,
                                     "transformer.rotary_pos_emb.inv_freq": torch.ones(4)}, g)
    assert sorted(out) == [f"model.layers.3.self_attn.{x}_proj.weight" for x in "kqv"]
    assert torch.equal(torch.cat([out["model.layers.3.self_attn.q_proj.weight"],
                                  out["model.layers.3.self_attn.k_proj.weight"],
                                  out["model.layers.3.self_attn.v_proj.weight"]]), qkv)
    assert out["model.layers.3.self_attn.k_proj.weight"].shape == (32, 3)
    with pytest.raises(GlmtrtError, match="no GlmForCausalLM name"):
        chatglm_state_dict_to_glm({"transformer.vision.patch.weight": qkv}, g)


@pytest.mark.parametrize("key,value", [("rmsnorm", False), ("add_bias_linear", True),
                                       ("apply_residual_connection_post_layernorm", True)])
def test_unsupported_chatglm_layouts(tiny, key, value):
    cfg = {**read_hf_config(tiny.source("chatglm")), key: value}
    with pytest.raises(GlmtrtError, match=key):
        glm_config_from_chatglm(cfg)


def test_not_a_glm_dir(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    with pytest.raises(GlmtrtError, match="not a GLM"):
        load_hf_glm(tmp_path)
    with pytest.raises(GlmtrtError, match="no config.json"):
        read_hf_config(tmp_path / "nothing")
