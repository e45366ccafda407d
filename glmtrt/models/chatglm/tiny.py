"""Tiny random ChatGLM3 / GLM-4 checkpoints, in either HF layout, for tests and the demo.

The same seed gives the same weights in both layouts (original THUDM names or transformers
`GlmForCausalLM` names), so both must convert to identical TensorRT-LLM checkpoints.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class TinyDims:
    num_layers: int = 2
    hidden_size: int = 64
    num_heads: int = 4
    num_kv_heads: int = 2
    head_size: int = 16
    intermediate_size: int = 96
    vocab_size: int = 128
    max_position_embeddings: int = 512
    rope_ratio: float = 1.0
    norm_eps: float = 1e-5
    add_qkv_bias: bool = True
    eos_token_id: int | list[int] = 2
    pad_token_id: int = 0


def _random_weights(d: TinyDims, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def lin(out: int, inp: int) -> torch.Tensor:
        return torch.randn(out, inp, generator=g) / inp ** 0.5

    def norm(n: int) -> torch.Tensor:
        return 1.0 + 0.1 * torch.randn(n, generator=g)

    q, kv = d.num_heads * d.head_size, d.num_kv_heads * d.head_size
    w = {"emb": torch.randn(d.vocab_size, d.hidden_size, generator=g),
         "final_norm": norm(d.hidden_size), "head": lin(d.vocab_size, d.hidden_size)}
    for i in range(d.num_layers):
        w.update({
            f"{i}.ln1": norm(d.hidden_size), f"{i}.ln2": norm(d.hidden_size),
            f"{i}.q": lin(q, d.hidden_size), f"{i}.k": lin(kv, d.hidden_size), f"{i}.v": lin(kv, d.hidden_size),
            f"{i}.qb": 0.1 * torch.randn(q, generator=g), f"{i}.kb": 0.1 * torch.randn(kv, generator=g),
            f"{i}.vb": 0.1 * torch.randn(kv, generator=g),
            f"{i}.o": lin(d.hidden_size, q),
            f"{i}.gate": lin(d.intermediate_size, d.hidden_size), f"{i}.up": lin(d.intermediate_size, d.hidden_size),
            f"{i}.down": lin(d.hidden_size, d.intermediate_size),
        })
    return w


def script_greedy_answer(w: dict[str, torch.Tensor], d: TinyDims, start_id: int, answer: list[int],
                         end_id: int) -> None:
    """Edit canonical tiny weights in place so that greedy decoding after `start_id` emits
    `answer` then `end_id`.

    Attention and MLP outputs are zeroed, so the residual stream stays the current token's
    embedding and the next token depends on the current one only: token k of the chain gets the
    one-hot embedding e_k and lm_head row of its successor 10 * e_k. Tokens must be distinct
    and the chain no longer than hidden_size.
    """
    seq = [start_id, *answer, end_id]
    if len(set(seq[:-1])) != len(seq) - 1:
        raise ValueError("a scripted answer needs distinct tokens (the next token depends on the current one)")
    if len(seq) - 1 > d.hidden_size:
        raise ValueError(f"a scripted answer of {len(answer)} tokens needs hidden_size >= {len(seq) - 1}")
    for i in range(d.num_layers):
        w[f"{i}.o"].zero_()
        w[f"{i}.down"].zero_()
    w["final_norm"].fill_(1.0)
    for k, (cur, nxt) in enumerate(zip(seq[:-1], seq[1:])):
        w["emb"][cur] = 0.0
        w["emb"][cur, k] = 1.0
        w["head"][nxt] = 0.0
        w["head"][nxt, k] = 10.0


def _chatglm_layout(w: dict[str, torch.Tensor], d: TinyDims) -> tuple[dict, dict]:
    t = {"transformer.embedding.word_embeddings.weight": w["emb"],
         "transformer.encoder.final_layernorm.weight": w["final_norm"],
         "transformer.output_layer.weight": w["head"],
         # present in real ChatGLM3 checkpoints; recomputed by the engine, so ignored by the map
         "transformer.rotary_pos_emb.inv_freq": 1.0 / (10000 ** (torch.arange(0, d.head_size // 2, 2).float()
                                                                  / (d.head_size // 2)))}
    for i in range(d.num_layers):
        p = f"transformer.encoder.layers.{i}"
        t[f"{p}.input_layernorm.weight"] = w[f"{i}.ln1"]
        t[f"{p}.post_attention_layernorm.weight"] = w[f"{i}.ln2"]
        t[f"{p}.self_attention.query_key_value.weight"] = torch.cat([w[f"{i}.q"], w[f"{i}.k"], w[f"{i}.v"]])
        if d.add_qkv_bias:
            t[f"{p}.self_attention.query_key_value.bias"] = torch.cat([w[f"{i}.qb"], w[f"{i}.kb"], w[f"{i}.vb"]])
        t[f"{p}.self_attention.dense.weight"] = w[f"{i}.o"]
        t[f"{p}.mlp.dense_h_to_4h.weight"] = torch.cat([w[f"{i}.gate"], w[f"{i}.up"]])
        t[f"{p}.mlp.dense_4h_to_h.weight"] = w[f"{i}.down"]
    cfg = {
        "architectures": ["ChatGLMModel"], "model_type": "chatglm",
        "add_bias_linear": False, "add_qkv_bias": d.add_qkv_bias, "apply_query_key_layer_scaling": True,
        "apply_residual_connection_post_layernorm": False, "attention_softmax_in_fp32": True,
        "ffn_hidden_size": d.intermediate_size, "hidden_size": d.hidden_size, "kv_channels": d.head_size,
        "layernorm_epsilon": d.norm_eps, "multi_query_attention": True,
        "multi_query_group_num": d.num_kv_heads, "num_attention_heads": d.num_heads,
        "num_layers": d.num_layers, "original_rope": True, "padded_vocab_size": d.vocab_size,
        "post_layer_norm": True, "rmsnorm": True, "seq_length": d.max_position_embeddings,
        "torch_dtype": "float32", "tie_word_embeddings": False,
        "eos_token_id": d.eos_token_id, "pad_token_id": d.pad_token_id,
    }
    if d.rope_ratio != 1.0:
        cfg["rope_ratio"] = d.rope_ratio
    return t, cfg


def _glm_layout(w: dict[str, torch.Tensor], d: TinyDims) -> tuple[dict, dict]:
    t = {"model.embed_tokens.weight": w["emb"], "model.norm.weight": w["final_norm"], "lm_head.weight": w["head"]}
    for i in range(d.num_layers):
        p = f"model.layers.{i}"
        t[f"{p}.input_layernorm.weight"] = w[f"{i}.ln1"]
        t[f"{p}.post_attention_layernorm.weight"] = w[f"{i}.ln2"]
        for x in "qkv":
            t[f"{p}.self_attn.{x}_proj.weight"] = w[f"{i}.{x}"]
            if d.add_qkv_bias:
                t[f"{p}.self_attn.{x}_proj.bias"] = w[f"{i}.{x}b"]
        t[f"{p}.self_attn.o_proj.weight"] = w[f"{i}.o"]
        t[f"{p}.mlp.gate_up_proj.weight"] = torch.cat([w[f"{i}.gate"], w[f"{i}.up"]])
        t[f"{p}.mlp.down_proj.weight"] = w[f"{i}.down"]
    cfg = {
        "architectures": ["GlmForCausalLM"], "model_type": "glm",
        "hidden_size": d.hidden_size, "intermediate_size": d.intermediate_size,
        "num_hidden_layers": d.num_layers, "num_attention_heads": d.num_heads,
        "num_key_value_heads": d.num_kv_heads, "head_dim": d.head_size, "vocab_size": d.vocab_size,
        "max_position_embeddings": d.max_position_embeddings, "rms_norm_eps": d.norm_eps,
        "rope_theta": 10000.0 * d.rope_ratio, "partial_rotary_factor": 0.5,
        "attention_bias": d.add_qkv_bias, "hidden_act": "silu", "tie_word_embeddings": False,
        "eos_token_id": d.eos_token_id, "pad_token_id": d.pad_token_id, "torch_dtype": "float32",
    }
    return t, cfg


def make_tiny_checkpoint(out_dir: str | Path, fmt: str = "chatglm", seed: int = 0, shards: int = 1,
                         dims: TinyDims | None = None, script: tuple[int, list[int], int] | None = None,
                         **overrides) -> Path:
    """Write a tiny random checkpoint (config.json + safetensors) in layout `fmt`.

    `fmt`: "chatglm" (THUDM names) or "hf-glm" (transformers GlmForCausalLM names).
    `shards` > 1 writes model-0000k-of-0000n.safetensors with a model.safetensors.index.json.
    `script` = (start_id, answer_ids, end_id) makes greedy decoding after start_id (e.g. the
    `<|assistant|>` id) produce answer_ids then end_id (`script_greedy_answer`).
    Keyword overrides set TinyDims fields (e.g. rope_ratio=500, vocab_size=65024).
    """
    from safetensors.torch import save_file

    d = dims or TinyDims()
    if overrides:
        d = TinyDims(**{**d.__dict__, **overrides})
    weights = _random_weights(d, seed)
    if script is not None:
        script_greedy_answer(weights, d, *script)
    if fmt == "chatglm":
        tensors, cfg = _chatglm_layout(weights, d)
    elif fmt == "hf-glm":
        tensors, cfg = _glm_layout(weights, d)
    else:
        raise ValueError(f"fmt must be 'chatglm' or 'hf-glm', not {fmt!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    if shards <= 1:
        save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
        return out
    names = list(tensors)
    weight_map = {}
    for k in range(shards):
        part = names[k::shards]
        fname = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        save_file({n: tensors[n] for n in part}, str(out / fname), metadata={"format": "pt"})
        weight_map.update({n: fname for n in part})
    (out / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map}, indent=2) + "\n", encoding="utf-8")
    return out
