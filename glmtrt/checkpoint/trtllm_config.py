"""Reading a TensorRT-LLM checkpoint `config.json` (PretrainedConfig.to_dict of 1.2.x)."""
from __future__ import annotations

from typing import Any, Mapping

from glmtrt.errors import GlmtrtError


def decoder_dims(cfg: Mapping[str, Any]) -> dict[str, int]:
    """The decoder's sizes from a TensorRT-LLM config dict: num_layers, hidden_size, num_heads,
    num_kv_heads, head_size (hidden/heads when absent), intermediate_size, vocab_size (padded),
    max_position_embeddings (2048 when absent). Missing required keys raise GlmtrtError."""
    try:
        heads = int(cfg["num_attention_heads"])
        hidden = int(cfg["hidden_size"])
        return {
            "num_layers": int(cfg["num_hidden_layers"]),
            "hidden_size": hidden,
            "num_heads": heads,
            "num_kv_heads": int(cfg.get("num_key_value_heads") or heads),
            "head_size": int(cfg.get("head_size") or hidden // heads),
            "intermediate_size": int(cfg["intermediate_size"]),
            "vocab_size": int(cfg["vocab_size"]),
            "max_position_embeddings": int(cfg.get("max_position_embeddings") or 2048),
        }
    except KeyError as exc:
        raise GlmtrtError(f"checkpoint config.json lacks field {exc.args[0]!r}",
                          expected="a TensorRT-LLM chatglm PretrainedConfig (docs/INTERFACES.md section 1)",
                          fix="re-run `glmtrt convert`") from None
