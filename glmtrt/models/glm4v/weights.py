"""Weight-name maps of GLM-4.1V / AutoGLM as data: HF names -> our engine model class's names.

Sources: transformers 5.x `Glm4vForConditionalGeneration` state dict (`model.language_model.*`,
`model.visual.*`, `lm_head.weight`; transformers 4.x checkpoints name the decoder `model.*`).
Targets: `glmtrt/models/glm4v/engine/model.py` (`Glm4vDecoderLayer`), whose layout follows
TensorRT-LLM 1.2.x chatglm/model.py for attention and MLP (fused qkv with per-head TP split,
`mlp.fc` = [up; gate] for swiglu) and gemma/model.py (Gemma2 branch) for the sandwich norms:
  input_layernorm -> attention -> post_attention_layernorm (HF post_self_attn_layernorm) -> +residual
  pre_feedforward_layernorm (HF post_attention_layernorm) -> mlp -> post_feedforward_layernorm
  (HF post_mlp_layernorm) -> +residual.
q/k rows are permuted on load (glmtrt.models.glm4v.rotary) so the engine's NeoX M-RoPE applies.
"""
from __future__ import annotations

from typing import Callable

from glmtrt.convert.mapping import Row
from glmtrt.models.glm4v.config import Glm4vSpec

L = "transformer.layers.{i}"
VISION_PREFIX = "model.visual."

# Everything of the vision tower goes to vision/ (not the llm/ map); rotary buffers are recomputed.
IGNORED = ("model.visual.*", "model.rotary_emb.inv_freq", "model.language_model.rotary_emb.inv_freq")

# our name (llm/) -> HF name under {prefix}.layers.{i}
_NORMS = {
    "input_layernorm": "input_layernorm",
    "post_attention_layernorm": "post_self_attn_layernorm",
    "pre_feedforward_layernorm": "post_attention_layernorm",
    "post_feedforward_layernorm": "post_mlp_layernorm",
}


def layer_rows(spec: Glm4vSpec) -> list[Row]:
    """Per-layer rows with `{i}` placeholders."""
    h, i_size = spec.hidden_size, spec.intermediate_size
    s = f"{spec.text_prefix}.layers.{{i}}"
    rows = [Row(f"{L}.{ours}.weight", (f"{s}.{theirs}.weight",), (h,)) for ours, theirs in _NORMS.items()]
    rows += [
        Row(f"{L}.attention.qkv.weight", tuple(f"{s}.self_attn.{p}_proj.weight" for p in "qkv"),
            (spec.qkv_rows, h), combine="concat_rows", shard="qkv"),
        Row(f"{L}.attention.qkv.bias", tuple(f"{s}.self_attn.{p}_proj.bias" for p in "qkv"),
            (spec.qkv_rows,), combine="concat_rows", shard="qkv"),
        Row(f"{L}.attention.dense.weight", (f"{s}.self_attn.o_proj.weight",), (h, spec.q_size), shard="cols"),
        # gate_up_proj is [gate; up] (Glm4vTextMLP.forward chunks gate first); swiglu gates the 2nd half
        Row(f"{L}.mlp.fc.weight", (f"{s}.mlp.gate_up_proj.weight",), (2 * i_size, h),
            prepare="swap_gate_up", shard="halves"),
        Row(f"{L}.mlp.proj.weight", (f"{s}.mlp.down_proj.weight",), (h, i_size), shard="cols"),
    ]
    return rows


def global_rows(spec: Glm4vSpec) -> list[Row]:
    """Embedding, final norm and lm_head rows."""
    h, v = spec.hidden_size, spec.vocab_size
    emb = f"{spec.text_prefix}.embed_tokens.weight"
    head = emb if spec.tie_word_embeddings else "lm_head.weight"
    return [
        Row("transformer.vocab_embedding.weight", (emb,), (v, h)),
        Row("transformer.ln_f.weight", (f"{spec.text_prefix}.norm.weight",), (h,)),
        Row("lm_head.weight", (head,), (v, h), shard="vocab_rows"),
    ]


def permuting_loader(load: Callable[[str], "torch.Tensor"], spec: Glm4vSpec) -> Callable[[str], "torch.Tensor"]:
    """`load` with the rotary permutation applied to q_proj / k_proj weights and biases (torch
    tensors, or numpy arrays as the streaming converter reads them: the permutation is row indexing)."""
    def get(name: str):
        t = load(name)
        if name.startswith(spec.text_prefix + ".layers.") and (".self_attn.q_proj." in name
                                                              or ".self_attn.k_proj." in name):
            from glmtrt.models.glm4v.rotary import permute_heads, rotary_permutation

            if hasattr(t, "__array_interface__"):       # numpy
                import numpy as np

                perm = rotary_permutation(spec.head_size, spec.rotary_dim).numpy()
                heads = t.reshape(t.shape[0] // spec.head_size, spec.head_size, *t.shape[1:])
                return np.ascontiguousarray(heads[:, perm].reshape(t.shape))
            return permute_heads(t, spec.head_size, spec.rotary_dim)
        return t
    return get


def vision_names(names) -> list[str]:
    """HF names of the vision tower, in checkpoint order."""
    return [n for n in names if n.startswith(VISION_PREFIX)]


def vision_required(spec: Glm4vSpec) -> list[str]:
    """Vision tower tensors every Glm4v checkpoint must hold (names under model.visual.)."""
    names = ["embeddings.position_embedding.weight", "patch_embed.proj.weight", "patch_embed.proj.bias",
             "post_conv_layernorm.weight", "post_layernorm.weight", "downsample.weight", "downsample.bias",
             "merger.proj.weight", "merger.post_projection_norm.weight", "merger.post_projection_norm.bias",
             "merger.gate_proj.weight", "merger.up_proj.weight", "merger.down_proj.weight"]
    for b in range(spec.vision.depth):
        names += [f"blocks.{b}.{n}" for n in ("norm1.weight", "norm2.weight", "attn.qkv.weight",
                                              "attn.proj.weight", "mlp.gate_proj.weight",
                                              "mlp.up_proj.weight", "mlp.down_proj.weight")]
        if spec.vision.attention_bias:
            names.append(f"blocks.{b}.attn.qkv.bias")
    return [VISION_PREFIX + n for n in names]
