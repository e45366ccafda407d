"""Load transformers' `GlmForCausalLM` from an HF dir in either GLM format, without remote code.

Two source formats exist for ChatGLM3 / GLM-4:

- transformers-native (`architectures: ["GlmForCausalLM"]`, model_type "glm"): loaded as is.
- original THUDM format (`ChatGLMModel` / `ChatGLMForConditionalGeneration`, tensors
  `transformer.encoder.layers.N.self_attention.query_key_value.*` ...), which needs
  trust_remote_code. We never run that code: the config and tensors are renamed in memory the way
  transformers' own conversion script does it
  (huggingface/transformers `src/transformers/models/glm/convert_glm_weights_to_hf.py`:
  `STATE_DICT_MAPPING`, `convert_state_dict` splitting query_key_value into q|k|v,
  `convert_config`). Two details differ on purpose: rope_theta is 10000 * rope_ratio read from
  the dict (the script's `getattr(dict, "rope_ratio", 1)` always yields 1, which is wrong for
  GLM-4's rope_ratio 500), and the q/k/v split uses kv_channels as head size (the script uses
  hidden_size // num_heads, equal for every released model).

This is the numerical truth `glmtrt verify` compares the reference executor against.
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from glmtrt.errors import GlmtrtError

log = logging.getLogger(__name__)

CHATGLM_ARCHITECTURES = ("ChatGLMModel", "ChatGLMForConditionalGeneration")
HF_GLM_ARCHITECTURES = ("GlmForCausalLM",)

# original name (regex) -> transformers GlmForCausalLM name; None drops the tensor.
_RENAMES = (
    (r"transformer\.output_layer\.weight", r"lm_head.weight"),
    (r"transformer\.embedding\.word_embeddings\.weight", r"model.embed_tokens.weight"),
    (r"transformer\.rotary_pos_emb\.inv_freq", None),
    (r"transformer\.encoder\.final_layernorm\.weight", r"model.norm.weight"),
    (r"transformer\.encoder\.layers\.(\d+)\.input_layernorm\.weight", r"model.layers.\1.input_layernorm.weight"),
    (r"transformer\.encoder\.layers\.(\d+)\.post_attention_layernorm\.weight",
     r"model.layers.\1.post_attention_layernorm.weight"),
    (r"transformer\.encoder\.layers\.(\d+)\.self_attention\.dense\.weight", r"model.layers.\1.self_attn.o_proj.weight"),
    (r"transformer\.encoder\.layers\.(\d+)\.self_attention\.query_key_value\.(weight|bias)",
     r"model.layers.\1.self_attn.qkv_proj.\2"),
    (r"transformer\.encoder\.layers\.(\d+)\.mlp\.dense_h_to_4h\.weight", r"model.layers.\1.mlp.gate_up_proj.weight"),
    (r"transformer\.encoder\.layers\.(\d+)\.mlp\.dense_4h_to_h\.weight", r"model.layers.\1.mlp.down_proj.weight"),
)


def read_hf_config(hf_dir: str | Path) -> dict:
    """config.json of an HF model dir as a dict."""
    path = Path(hf_dir) / "config.json"
    if not path.is_file():
        raise GlmtrtError(f"no config.json in {hf_dir}", expected="an HF model dir (config.json + weights)")
    return json.loads(path.read_text(encoding="utf-8"))


def source_format(cfg: dict) -> str:
    """'chatglm' (original THUDM layout) or 'hf-glm' (transformers GlmForCausalLM), from `architectures`."""
    archs = cfg.get("architectures") or []
    if any(a in CHATGLM_ARCHITECTURES for a in archs):
        return "chatglm"
    if any(a in HF_GLM_ARCHITECTURES for a in archs) or cfg.get("model_type") == "glm":
        return "hf-glm"
    raise GlmtrtError(f"architectures {archs} is not a GLM text model",
                      expected=f"one of {CHATGLM_ARCHITECTURES + HF_GLM_ARCHITECTURES}")


def glm_config_from_chatglm(cfg: dict):
    """A transformers GlmConfig equivalent to an original ChatGLM config.json dict."""
    from transformers import GlmConfig

    unsupported = {
        "rmsnorm": (cfg.get("rmsnorm", True), True),
        "post_layer_norm": (cfg.get("post_layer_norm", True), True),
        "add_bias_linear": (cfg.get("add_bias_linear", False), False),
        "apply_residual_connection_post_layernorm": (cfg.get("apply_residual_connection_post_layernorm", False), False),
    }
    for key, (found, wanted) in unsupported.items():
        if bool(found) != wanted:
            raise GlmtrtError(f"ChatGLM config has {key}={found}",
                              expected=f"{key}={wanted} (the only layout GlmForCausalLM implements)")
    heads = int(cfg["num_attention_heads"])
    kv_heads = int(cfg["multi_query_group_num"]) if cfg.get("multi_query_attention") else heads
    vocab = int(cfg.get("padded_vocab_size") or cfg["vocab_size"])
    pad = cfg.get("pad_token_id")
    head_dim = int(cfg.get("kv_channels") or int(cfg["hidden_size"]) // heads)
    rope_theta = 10000.0 * float(cfg.get("rope_ratio", 1.0) or 1.0)
    return GlmConfig(
        vocab_size=vocab,
        hidden_size=int(cfg["hidden_size"]),
        intermediate_size=int(cfg["ffn_hidden_size"]),
        num_hidden_layers=int(cfg["num_layers"]),
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        max_position_embeddings=int(cfg.get("seq_length", 8192)),
        rms_norm_eps=float(cfg.get("layernorm_epsilon", 1e-5)),
        attention_bias=bool(cfg.get("add_qkv_bias", True)),
        rope_parameters={"rope_type": "default", "rope_theta": rope_theta, "partial_rotary_factor": 0.5},
        pad_token_id=pad if isinstance(pad, int) and 0 <= pad < vocab else None,
        eos_token_id=cfg.get("eos_token_id"),
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        attention_dropout=0.0,
    )


def _rename(name: str) -> str | None:
    for pattern, repl in _RENAMES:
        if re.fullmatch(pattern, name):
            return None if repl is None else re.sub(pattern, repl, name)
    raise GlmtrtError(f"tensor {name!r} has no GlmForCausalLM name",
                      expected="an original ChatGLM2/3 or GLM-4 text checkpoint")


def chatglm_state_dict_to_glm(state_dict: dict, glm_config) -> dict:
    """Rename original ChatGLM tensors to GlmForCausalLM names and split query_key_value into q|k|v."""
    hd = glm_config.head_dim
    q_rows = glm_config.num_attention_heads * hd
    kv_rows = glm_config.num_key_value_heads * hd
    out = {}
    for name, tensor in state_dict.items():
        new = _rename(name)
        if new is None:
            continue
        if ".qkv_proj." in new:
            if tensor.shape[0] != q_rows + 2 * kv_rows:
                raise GlmtrtError(f"{name} has {tensor.shape[0]} rows", expected=f"{q_rows + 2 * kv_rows}")
            out[new.replace("qkv_proj", "q_proj")] = tensor[:q_rows]
            out[new.replace("qkv_proj", "k_proj")] = tensor[q_rows:q_rows + kv_rows]
            out[new.replace("qkv_proj", "v_proj")] = tensor[q_rows + kv_rows:]
        else:
            out[new] = tensor
    return out


def _weight_files(hf_dir: Path, allow_pickle: bool) -> tuple[list[Path], list[Path]]:
    """(safetensors files, pickle files to read): pickles only with `allow_pickle`, as in convert."""
    files = sorted(hf_dir.glob("*.safetensors"))
    bins = [] if files else sorted(hf_dir.glob("pytorch_model*.bin"))
    if not files and not bins:
        raise GlmtrtError(f"no weights in {hf_dir}", expected="*.safetensors or pytorch_model*.bin")
    if bins and not allow_pickle:
        raise GlmtrtError(f"{hf_dir} holds only pickle (.bin) weights",
                          expected="safetensors weights (pickle files can execute code when loaded)",
                          fix="pass --allow-pickle to read them with torch.load(weights_only=True)")
    return files, bins


def _bad_weights(hf_dir: Path, exc: BaseException) -> GlmtrtError:
    text = str(exc).strip().splitlines()
    what = "; ".join(text[:3])[:600] if text else type(exc).__name__
    return GlmtrtError(f"cannot read the weights of {hf_dir}: {type(exc).__name__}: {what}",
                       expected="complete safetensors (or, with --allow-pickle, torch) files holding every tensor "
                                "with the shapes config.json implies",
                       fix="download the checkpoint again (a truncated or corrupt file) or check config.json")


def _read_state_dict(hf_dir: Path, allow_pickle: bool = False) -> dict:
    import pickle

    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    files, bins = _weight_files(hf_dir, allow_pickle)
    state = {}
    for f in files or bins:
        try:
            state.update(load_file(str(f)) if files else
                         torch.load(str(f), map_location="cpu", weights_only=True, mmap=True))
        except (SafetensorError, RuntimeError, OSError, ValueError, EOFError, pickle.UnpicklingError) as exc:
            raise _bad_weights(f, exc) from exc
    return state


def load_hf_glm(hf_dir: str | Path, dtype=None, device="cpu", allow_pickle: bool = False):
    """transformers GlmForCausalLM (eval mode, eager attention) from an HF dir in either format.

    dtype: torch dtype of the weights and math (default float32). Pickle weights only with
    `allow_pickle`. A truncated/corrupt file, a missing tensor or a wrong shape is a GlmtrtError.
    """
    import pickle

    import torch
    from safetensors import SafetensorError
    from transformers import GlmForCausalLM
    from transformers.models.glm.modeling_glm import GlmRotaryEmbedding

    hf_dir = Path(hf_dir)
    dtype = dtype or torch.float32
    cfg = read_hf_config(hf_dir)
    fmt = source_format(cfg)
    _weight_files(hf_dir, allow_pickle)
    if fmt == "hf-glm":
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()   # glmtrt logs its own progress; keep CLI output clean
        try:
            model, info = GlmForCausalLM.from_pretrained(str(hf_dir), dtype=dtype, attn_implementation="eager",
                                                         output_loading_info=True)
        except (SafetensorError, RuntimeError, OSError, ValueError, EOFError, pickle.UnpicklingError) as exc:
            raise _bad_weights(hf_dir, exc) from exc
        problems = [f"{k}: {', '.join(map(str, info.get(k) or [])[:5])}"
                    for k in ("missing_keys", "mismatched_keys") if info.get(k)]
        if problems:
            raise GlmtrtError(f"the weights of {hf_dir} do not match config.json: " + "; ".join(problems),
                              expected="every tensor of GlmForCausalLM with its shape",
                              fix="download the checkpoint again or check config.json")
        return model.to(device).eval()
    config = glm_config_from_chatglm(cfg)
    config._attn_implementation = "eager"
    state = chatglm_state_dict_to_glm(_read_state_dict(hf_dir, allow_pickle), config)
    with torch.device("meta"):
        model = GlmForCausalLM(config)
    state = {k: v.to(dtype) for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:   # missing / unexpected keys, size mismatch: the message names them
        raise GlmtrtError(f"the weights of {hf_dir} do not match config.json: " + " ".join(str(exc).split())[:800],
                          expected="every tensor of the ChatGLM checkpoint with its shape",
                          fix="download the checkpoint again or check config.json") from exc
    # non-persistent rotary buffers stay on meta after assign=True: rebuild them for real.
    model.model.rotary_emb = GlmRotaryEmbedding(config=config)
    model = model.to(device=device).eval()
    left = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if left:
        raise GlmtrtError(f"tensors not loaded from {hf_dir}: {left[:5]}")
    log.info("loaded %s (original ChatGLM format, renamed in memory) as GlmForCausalLM", hf_dir)
    return model
