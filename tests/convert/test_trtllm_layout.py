"""The produced checkpoint equals TensorRT-LLM 1.2.x expectations.

Table written from TensorRT-LLM 1.2.x:
- tensorrt_llm/models/chatglm/convert.py `load_weights_from_hf_model` (names, TP splits:
  split_qkv, swap_and_split_mlp, dense/proj split on dim 1, lm_head split on dim 0, embedding
  not split without use_parallel_embedding),
- tensorrt_llm/models/chatglm/config.py `ChatGLMConfig.from_hugging_face` (config fields),
- tensorrt_llm/models/modeling_utils.py `PretrainedConfig.to_dict`.
"""
import json

import pytest
import torch
from safetensors import safe_open

from glmtrt.convert.pipeline import convert_checkpoint
from glmtrt.models.chatglm.tiny import make_tiny_checkpoint

# tiny dims: L=2, H=64, heads=4 (head 16), kv=2, ffn=96, vocab=128
H, NH, NKV, HD, FFN, V = 64, 4, 2, 16, 96, 128


def expected_table(tp: int) -> dict[str, tuple[tuple[int, ...], str]]:
    qkv_rows = (NH // tp + 2 * max(NKV // tp, 1)) * HD
    t = {
        "transformer.vocab_embedding.weight": ((V, H), "float32"),
        "transformer.ln_f.weight": ((H,), "float32"),
        "lm_head.weight": ((V // tp, H), "float32"),
    }
    for i in range(2):
        p = f"transformer.layers.{i}"
        t.update({
            f"{p}.input_layernorm.weight": ((H,), "float32"),
            f"{p}.attention.qkv.weight": ((qkv_rows, H), "float32"),
            f"{p}.attention.qkv.bias": ((qkv_rows,), "float32"),
            f"{p}.attention.dense.weight": ((H, NH * HD // tp), "float32"),
            f"{p}.post_layernorm.weight": ((H,), "float32"),
            f"{p}.mlp.fc.weight": ((2 * FFN // tp, H), "float32"),
            f"{p}.mlp.proj.weight": ((H, FFN // tp), "float32"),
        })
    return t


@pytest.mark.parametrize("tp", [1, 2, 4])
def test_names_shapes_dtypes(tmp_path, tp):
    src = make_tiny_checkpoint(tmp_path / "hf")
    out = convert_checkpoint(src, tmp_path / "out", dtype="float32", tp_size=tp, progress=False)
    want = expected_table(tp)
    for r in range(tp):
        with safe_open(str(out / f"rank{r}.safetensors"), "pt") as f:
            got = {k: (tuple(f.get_slice(k).get_shape()), str(f.get_tensor(k).dtype).replace("torch.", ""))
                   for k in f.keys()}
        assert got == want
    assert not (out / f"rank{tp}.safetensors").exists()


def test_config_fields(tmp_path):
    src = make_tiny_checkpoint(tmp_path / "hf", rope_ratio=500.0)
    out = convert_checkpoint(src, tmp_path / "out", dtype="bfloat16", tp_size=2, progress=False)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architecture"] == "ChatGLMForCausalLM"
    assert cfg["chatglm_version"] == "chatglm3"
    assert cfg["dtype"] == "bfloat16" and cfg["logits_dtype"] == "float32"
    assert cfg["rotary_base"] == 5_000_000.0 and cfg["rotary_pct"] == 0.5
    assert cfg["position_embedding_type"] == "rope_gptj" and cfg["hidden_act"] == "swiglu"
    assert cfg["num_key_value_heads"] == NKV and cfg["head_size"] == HD and cfg["vocab_size"] == V
    assert cfg["mapping"] == {"world_size": 2, "tp_size": 2, "pp_size": 1}
    assert cfg["quantization"] == {}  # every QuantConfig field at its default (tests/convert/test_quantization_block.py)
    assert cfg["apply_query_key_layer_scaling"] is False and cfg["rmsnorm"] is True


def test_mlp_fc_is_up_then_gate_per_rank(tmp_path):
    src = make_tiny_checkpoint(tmp_path / "hf")
    out = convert_checkpoint(src, tmp_path / "out", dtype="float32", tp_size=2, progress=False)
    with safe_open(str(src / "model.safetensors"), "pt") as f:
        hf = f.get_tensor("transformer.encoder.layers.0.mlp.dense_h_to_4h.weight")
    gate, up = hf.chunk(2)
    with safe_open(str(out / "rank1.safetensors"), "pt") as f:
        fc = f.get_tensor("transformer.layers.0.mlp.fc.weight")
    assert torch.equal(fc, torch.cat([up.chunk(2)[1], gate.chunk(2)[1]]))


def test_bf16_and_fp16_cast(tmp_path):
    src = make_tiny_checkpoint(tmp_path / "hf")
    for dt in ("float16", "bfloat16"):
        out = convert_checkpoint(src, tmp_path / dt, dtype=dt, progress=False)
        with safe_open(str(out / "rank0.safetensors"), "pt") as f:
            assert {str(f.get_tensor(k).dtype) for k in f.keys()} == {f"torch.{dt}"}


def test_glm4_detected_from_config(tmp_path):
    src = make_tiny_checkpoint(tmp_path / "hf", eos_token_id=[2, 5, 7], rope_ratio=500.0)
    out = convert_checkpoint(src, tmp_path / "out", dtype="float16", progress=False)
    assert json.loads((out / "config.json").read_text())["chatglm_version"] == "glm4"


def test_weight_only_quant_config(tmp_path):
    src = make_tiny_checkpoint(tmp_path / "hf")
    out = convert_checkpoint(src, tmp_path / "out", dtype="float16", quant="int8-wo", progress=False)
    assert json.loads((out / "config.json").read_text())["quantization"]["quant_algo"] == "W8A16"
