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


# ---- the checkpoint `quantization` block ------------------------------------------------------
# TensorRT-LLM builds `QuantConfig(**config["quantization"])` when it reads a checkpoint
# (PretrainedConfig.__init__ / QuantConfig.from_dict in tensorrt_llm/models/modeling_utils.py):
#   - 0.13 (T4 toolchain): a plain @dataclasses.dataclass, so an unknown key is a TypeError;
#   - 1.x: `class QuantConfig(StrictBaseModel)` (pydantic, extra="forbid"), so an unknown key is a
#     ValidationError (1.x modeling_utils.py / llm-api reference "tensorrt_llm.llmapi.QuantConfig").
# Fields and defaults per release line (data; the filter below is shared by every precision):
#   0.13: quant_algo, kv_cache_quant_algo, group_size=128, smoothquant_val=0.5, clamp_val,
#         has_zero_point, pre_quant_scale, exclude_modules (the pre-`use_meta_recipe` dataclass;
#         `use_meta_recipe` and `mamba_ssm_cache_dtype` came later).
#   1.2:  the 0.13 fields + use_meta_recipe=False, mamba_ssm_cache_dtype=None.
_COMMON_QUANT_FIELDS = {"quant_algo": None, "kv_cache_quant_algo": None, "group_size": 128,
                        "smoothquant_val": 0.5, "clamp_val": None, "has_zero_point": False,
                        "pre_quant_scale": False, "exclude_modules": None}
QUANT_CONFIG_FIELDS: dict[str, dict[str, Any]] = {
    "0.13": dict(_COMMON_QUANT_FIELDS),
    "1.2": {**_COMMON_QUANT_FIELDS, "use_meta_recipe": False, "mamba_ssm_cache_dtype": None},
}


def release_line(version: str) -> str:
    """The QuantConfig/flag line of a TensorRT-LLM version: "0.13.0" -> "0.13", "1.2.1" -> "1.2"."""
    parts = str(version).split(".")
    line = ".".join(parts[:2])
    if line not in QUANT_CONFIG_FIELDS:
        raise GlmtrtError(f"TensorRT-LLM version {version!r} has no pinned QuantConfig field list",
                          expected="a 0.13.x or 1.2.x release: " + ", ".join(QUANT_CONFIG_FIELDS),
                          fix="add its fields to glmtrt.checkpoint.trtllm_config.QUANT_CONFIG_FIELDS")
    return line


def quantization_block(values: Mapping[str, Any], releases: tuple[str, ...] = tuple(QUANT_CONFIG_FIELDS)) -> dict[str, Any]:
    """The checkpoint `quantization` dict for `values`, loadable by every release line in `releases`.

    Keys whose value equals the default of every target release are dropped (QuantConfig() fills
    them in); a key kept must exist in each target release's QuantConfig, else GlmtrtError naming
    the key and the release (that toolchain would refuse the checkpoint at trtllm-build)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        fields = [QUANT_CONFIG_FIELDS[release_line(r)] for r in releases]
        if all(key in f and f[key] == value for f in fields):
            continue
        missing = [r for r, f in zip(releases, fields) if key not in f]
        if missing:
            raise GlmtrtError(f"quantization key {key!r} = {value!r} is not a QuantConfig field of TensorRT-LLM "
                              f"{', '.join(missing)}", expected="keys of " + ", ".join(
                                  f"{r}: {sorted(QUANT_CONFIG_FIELDS[release_line(r)])}" for r in missing),
                              fix="leave the key out or target a release that has it")
        out[key] = value
    return out


def unknown_quantization_keys(block: Mapping[str, Any], release: str) -> list[str]:
    """Keys of a checkpoint `quantization` block that `release`'s QuantConfig would refuse."""
    fields = QUANT_CONFIG_FIELDS[release_line(release)]
    return sorted(k for k in block if k not in fields)
