"""ChatGLM3 / GLM-4 model spec: one frozen dataclass read from either HF format.

Formats:
- "chatglm": the original THUDM layout (`ChatGLMModel` / `ChatGLMForConditionalGeneration`,
  config keys num_layers, kv_channels, multi_query_group_num, padded_vocab_size, rope_ratio, ...).
- "hf-glm": transformers' `GlmForCausalLM` (keys num_hidden_layers, head_dim, num_key_value_heads,
  rope_theta / rope_parameters, partial_rotary_factor, ...).

The TensorRT-LLM side (`to_trtllm_config`) follows tensorrt_llm/models/chatglm/config.py
(`ChatGLMConfig.from_hugging_face`) and models/modeling_utils.py (`PretrainedConfig.to_dict`) of
TensorRT-LLM 1.2.x.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from glmtrt.errors import GlmtrtError
from glmtrt.models.sizes import AttentionSizes

CHATGLM_VERSIONS = ("chatglm3", "glm4")

# TensorRT-LLM's MODEL_MAP (tensorrt_llm/models/__init__.py) maps 'ChatGLMForCausalLM',
# 'ChatGLMModel', 'GLMModel' and (1.x) 'ChatGLMForConditionalGeneration' to the same class.
# We always write 'ChatGLMForCausalLM': it is present in 0.13 and 1.2, and it makes the
# checkpoint independent of which HF format it came from.
TRTLLM_ARCHITECTURE = "ChatGLMForCausalLM"

# GLM-4's padded vocabulary; ChatGLM3's is 65024 (shared/models/README.md).
_GLM4_MIN_VOCAB = 100_000


@dataclass(frozen=True)
class ChatGLMSpec(AttentionSizes):
    """Architecture facts of a ChatGLM3 / GLM-4 checkpoint, independent of its HF format."""

    hf_architecture: str
    source_format: str              # "chatglm" | "hf-glm"
    chatglm_version: str            # "chatglm3" | "glm4"
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_size: int
    intermediate_size: int
    vocab_size: int                 # padded vocabulary = rows of the embedding
    max_position_embeddings: int
    rope_ratio: float               # rotary base = 10000 * rope_ratio
    norm_eps: float
    add_qkv_bias: bool
    add_bias_linear: bool
    rmsnorm: bool
    apply_residual_connection_post_layernorm: bool
    tie_word_embeddings: bool
    eos_token_ids: tuple[int, ...]
    pad_token_id: int | None
    torch_dtype: str | None
    family: str = "chatglm"

    # ---- derived sizes -------------------------------------------------------------
    @property
    def rotary_base(self) -> float:
        # chatglm3 and glm4 multiply the base by rope_ratio (TRT-LLM chatglm/config.py);
        # transformers' conversion sets rope_theta the same way.
        return 10000.0 * self.rope_ratio

    def num_params(self) -> int:
        """Number of weights (embedding, layers, final norm, lm_head)."""
        h, i, v = self.hidden_size, self.intermediate_size, self.vocab_size
        per_layer = (
            self.qkv_rows * h + (self.qkv_rows if self.add_qkv_bias else 0)
            + self.q_size * h + (h if self.add_bias_linear else 0)
            + 2 * i * h + i * h
            + 2 * h
        )
        lm_head = 0 if self.tie_word_embeddings else v * h
        return v * h + self.num_layers * per_layer + h + lm_head

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _need(cfg: Mapping[str, Any], key: str, fmt: str) -> Any:
    if key not in cfg:
        raise GlmtrtError(
            f"config.json has no '{key}'",
            expected=f"a {fmt} config.json with '{key}'",
            fix="use the config.json that ships with the checkpoint (do not hand-edit it)",
        )
    return cfg[key]


def _eos_tuple(value: Any) -> tuple[int, ...]:
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(int(v) for v in value)
    return (int(value),)


def infer_chatglm_version(vocab_size: int, eos_token_ids: tuple[int, ...]) -> str:
    """ChatGLM3 vs GLM-4 from config values (never from the path).

    GLM-4 has a 151,552-row vocabulary and several eos ids (<|endoftext|>, <|user|>,
    <|observation|>); ChatGLM3 has 65,024 rows and eos 2.
    """
    if vocab_size >= _GLM4_MIN_VOCAB or len(eos_token_ids) > 1:
        return "glm4"
    return "chatglm3"


def spec_from_chatglm_config(cfg: Mapping[str, Any], chatglm_version: str | None = None) -> ChatGLMSpec:
    """Spec from an original THUDM ChatGLM config.json."""
    fmt = "ChatGLM (THUDM)"
    hidden = int(_need(cfg, "hidden_size", fmt))
    heads = int(_need(cfg, "num_attention_heads", fmt))
    multi_query = bool(cfg.get("multi_query_attention", False))
    kv_heads = int(cfg["multi_query_group_num"]) if multi_query else heads
    num_layers = cfg.get("num_layers", cfg.get("num_hidden_layers"))
    if num_layers is None:
        _need(cfg, "num_layers", fmt)
    vocab = int(cfg.get("padded_vocab_size") or _need(cfg, "vocab_size", fmt))
    eos = _eos_tuple(cfg.get("eos_token_id"))
    version = chatglm_version or infer_chatglm_version(vocab, eos)
    _check_version(version)
    if not cfg.get("rmsnorm", True):
        raise GlmtrtError("config.json has rmsnorm=false (a first-generation ChatGLM/GLM model)",
                          expected="ChatGLM2/3 or GLM-4 (rmsnorm=true)",
                          fix="glmtrt supports ChatGLM3-6B (and -base/-32k) and GLM-4-9B checkpoints")
    return ChatGLMSpec(
        hf_architecture=str((cfg.get("architectures") or ["ChatGLMModel"])[0]),
        source_format="chatglm",
        chatglm_version=version,
        num_layers=int(num_layers),
        hidden_size=hidden,
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_size=int(cfg.get("kv_channels") or hidden // heads),
        intermediate_size=int(_need(cfg, "ffn_hidden_size", fmt)),
        vocab_size=vocab,
        max_position_embeddings=int(cfg.get("seq_length", 2048)),
        rope_ratio=float(cfg.get("rope_ratio", 1.0)),
        norm_eps=float(cfg.get("layernorm_epsilon", 1e-5)),
        add_qkv_bias=bool(cfg.get("add_qkv_bias", True)),
        add_bias_linear=bool(cfg.get("add_bias_linear", False)),
        rmsnorm=True,
        apply_residual_connection_post_layernorm=bool(
            cfg.get("apply_residual_connection_post_layernorm", False)),
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        eos_token_ids=eos,
        pad_token_id=cfg.get("pad_token_id"),
        torch_dtype=cfg.get("torch_dtype"),
    )


def _rope_theta_and_factor(cfg: Mapping[str, Any]) -> tuple[float, float]:
    # transformers 4.x writes rope_theta / partial_rotary_factor at the top level,
    # transformers 5.x nests them in rope_parameters; accept both.
    rp = cfg.get("rope_parameters") or {}
    theta = cfg.get("rope_theta", rp.get("rope_theta", 10000.0))
    factor = cfg.get("partial_rotary_factor", rp.get("partial_rotary_factor", 0.5))
    return float(theta), float(factor)


def spec_from_glm_config(cfg: Mapping[str, Any], chatglm_version: str | None = None) -> ChatGLMSpec:
    """Spec from a transformers `GlmForCausalLM` config.json."""
    fmt = "transformers GlmForCausalLM"
    hidden = int(_need(cfg, "hidden_size", fmt))
    heads = int(_need(cfg, "num_attention_heads", fmt))
    theta, factor = _rope_theta_and_factor(cfg)
    if abs(factor - 0.5) > 1e-9:
        raise GlmtrtError(f"partial_rotary_factor is {factor}", expected="0.5 (GLM rotates half of each head)",
                          fix="this does not look like a ChatGLM3/GLM-4 checkpoint")
    vocab = int(_need(cfg, "vocab_size", fmt))
    eos = _eos_tuple(cfg.get("eos_token_id"))
    version = chatglm_version or infer_chatglm_version(vocab, eos)
    _check_version(version)
    return ChatGLMSpec(
        hf_architecture=str((cfg.get("architectures") or ["GlmForCausalLM"])[0]),
        source_format="hf-glm",
        chatglm_version=version,
        num_layers=int(_need(cfg, "num_hidden_layers", fmt)),
        hidden_size=hidden,
        num_heads=heads,
        num_kv_heads=int(cfg.get("num_key_value_heads") or heads),
        head_size=int(cfg.get("head_dim") or hidden // heads),
        intermediate_size=int(_need(cfg, "intermediate_size", fmt)),
        vocab_size=vocab,
        max_position_embeddings=int(cfg.get("max_position_embeddings", 131072)),
        rope_ratio=theta / 10000.0,
        norm_eps=float(cfg.get("rms_norm_eps", 1.5625e-07)),
        add_qkv_bias=bool(cfg.get("attention_bias", True)),
        add_bias_linear=False,
        rmsnorm=True,
        apply_residual_connection_post_layernorm=False,
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        eos_token_ids=eos,
        pad_token_id=cfg.get("pad_token_id"),
        torch_dtype=cfg.get("torch_dtype") or cfg.get("dtype"),
    )


def _check_version(version: str) -> None:
    if version not in CHATGLM_VERSIONS:
        raise GlmtrtError(f"unknown chatglm_version '{version}'", expected=" | ".join(CHATGLM_VERSIONS))
