"""Weight-name maps of ChatGLM3 / GLM-4 as data: HF names -> TensorRT-LLM 1.2.x chatglm names.

Target names and layouts: tensorrt_llm/models/chatglm/convert.py (`load_weights_from_hf_model`)
and chatglm/model.py of TensorRT-LLM 1.2.x:
  transformer.vocab_embedding.weight (not sharded: use_parallel_embedding=False),
  transformer.layers.{i}.input_layernorm.weight, attention.qkv.{weight,bias} (fused [q;k;v],
  sharded per head with kv heads tiled when fewer than tp), attention.dense.weight (row-parallel:
  split on dim 1), post_layernorm.weight, mlp.fc.weight ([up; gate], each half split by rank),
  mlp.proj.weight (split on dim 1), transformer.ln_f.weight, lm_head.weight (split on dim 0).
"""
from __future__ import annotations

from glmtrt.convert.mapping import Row
from glmtrt.models.chatglm.config import ChatGLMSpec

L = "transformer.layers.{i}"

# Source names of the original THUDM layout (modeling_chatglm.py of chatglm3-6b / glm-4-9b-chat).
_CHATGLM_LAYER = "transformer.encoder.layers.{i}"
# Source names of transformers' GlmForCausalLM (transformers/models/glm/modeling_glm.py).
_GLM_LAYER = "model.layers.{i}"

# Sources present in checkpoints but not needed by the engine.
IGNORED = {
    # the rotary inverse frequencies are recomputed from rotary_base
    "chatglm": ("transformer.rotary_pos_emb.inv_freq",),
    "hf-glm": ("model.rotary_emb.inv_freq", "model.layers.*.self_attn.rotary_emb.inv_freq"),
}


def layer_rows(spec: ChatGLMSpec) -> list[Row]:
    """Per-layer rows with `{i}` placeholders."""
    h, i_size = spec.hidden_size, spec.intermediate_size
    qkv = (spec.qkv_rows, h)
    if spec.source_format == "chatglm":
        s = _CHATGLM_LAYER
        rows = [
            Row(f"{L}.input_layernorm.weight", (f"{s}.input_layernorm.weight",), (h,)),
            Row(f"{L}.attention.qkv.weight", (f"{s}.self_attention.query_key_value.weight",), qkv,
                shard="qkv"),
            Row(f"{L}.attention.dense.weight", (f"{s}.self_attention.dense.weight",), (h, spec.q_size),
                shard="cols"),
            Row(f"{L}.post_layernorm.weight", (f"{s}.post_attention_layernorm.weight",), (h,)),
            Row(f"{L}.mlp.fc.weight", (f"{s}.mlp.dense_h_to_4h.weight",), (2 * i_size, h),
                prepare="swap_gate_up", shard="halves"),
            Row(f"{L}.mlp.proj.weight", (f"{s}.mlp.dense_4h_to_h.weight",), (h, i_size), shard="cols"),
        ]
        if spec.add_qkv_bias:
            rows.append(Row(f"{L}.attention.qkv.bias", (f"{s}.self_attention.query_key_value.bias",),
                            (spec.qkv_rows,), shard="qkv"))
        if spec.add_bias_linear:
            rows += [
                Row(f"{L}.attention.dense.bias", (f"{s}.self_attention.dense.bias",), (h,)),
                Row(f"{L}.mlp.fc.bias", (f"{s}.mlp.dense_h_to_4h.bias",), (2 * i_size,),
                    prepare="swap_gate_up", shard="halves"),
                Row(f"{L}.mlp.proj.bias", (f"{s}.mlp.dense_4h_to_h.bias",), (h,)),
            ]
        return rows
    s = _GLM_LAYER
    rows = [
        Row(f"{L}.input_layernorm.weight", (f"{s}.input_layernorm.weight",), (h,)),
        Row(f"{L}.attention.qkv.weight",
            tuple(f"{s}.self_attn.{p}_proj.weight" for p in "qkv"), qkv,
            combine="concat_rows", shard="qkv"),
        Row(f"{L}.attention.dense.weight", (f"{s}.self_attn.o_proj.weight",), (h, spec.q_size),
            shard="cols"),
        Row(f"{L}.post_layernorm.weight", (f"{s}.post_attention_layernorm.weight",), (h,)),
        Row(f"{L}.mlp.fc.weight", (f"{s}.mlp.gate_up_proj.weight",), (2 * i_size, h),
            prepare="swap_gate_up", shard="halves"),
        Row(f"{L}.mlp.proj.weight", (f"{s}.mlp.down_proj.weight",), (h, i_size), shard="cols"),
    ]
    if spec.add_qkv_bias:
        rows.append(Row(f"{L}.attention.qkv.bias", tuple(f"{s}.self_attn.{p}_proj.bias" for p in "qkv"),
                        (spec.qkv_rows,), combine="concat_rows", shard="qkv"))
    return rows


def global_rows(spec: ChatGLMSpec) -> list[Row]:
    """Embedding, final norm and lm_head rows."""
    h, v = spec.hidden_size, spec.vocab_size
    if spec.source_format == "chatglm":
        emb, norm, head = ("transformer.embedding.word_embeddings.weight",
                           "transformer.encoder.final_layernorm.weight", "transformer.output_layer.weight")
    else:
        emb, norm, head = "model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"
    if spec.tie_word_embeddings:
        head = emb
    return [
        Row("transformer.vocab_embedding.weight", (emb,), (v, h)),
        Row("transformer.ln_f.weight", (norm,), (h,)),
        Row("lm_head.weight", (head,), (v, h), shard="vocab_rows"),
    ]
