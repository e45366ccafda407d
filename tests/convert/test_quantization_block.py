"""The checkpoint `quantization` block loads in the QuantConfig of each profile's toolchain.

TensorRT-LLM builds `QuantConfig(**config["quantization"])` (tensorrt_llm/models/modeling_utils.py):
a dataclass in 0.13 (T4 toolchain: an unknown key is a TypeError at trtllm-build) and a pydantic
StrictBaseModel with extra="forbid" in 1.x (RTX 4090 toolchain 1.2: a ValidationError). The
pinned field lists are glmtrt.checkpoint.trtllm_config.QUANT_CONFIG_FIELDS; both loaders are
emulated here from those lists, and the emitted block must hold only non-default keys.
"""
from __future__ import annotations

import dataclasses

import pydantic
import pytest

from glmtrt.build.profile import known_profiles, load_profile
from glmtrt.checkpoint.trtllm_config import (QUANT_CONFIG_FIELDS, quantization_block, release_line,
                                             unknown_quantization_keys)
from glmtrt.errors import GlmtrtError
from glmtrt.models.chatglm.trtllm import quantization_dict

# Pinned: the field names of each release line's QuantConfig (see the module doc of trtllm_config).
PINNED_FIELDS = {
    "0.13": {"quant_algo", "kv_cache_quant_algo", "group_size", "smoothquant_val", "clamp_val",
             "has_zero_point", "pre_quant_scale", "exclude_modules"},
    "1.2": {"quant_algo", "kv_cache_quant_algo", "group_size", "smoothquant_val", "clamp_val",
            "use_meta_recipe", "has_zero_point", "pre_quant_scale", "exclude_modules", "mamba_ssm_cache_dtype"},
}
# Pinned: the block glmtrt writes per (precision, kv cache dtype).
EXPECTED = {
    ("fp16", "auto"): {}, ("bf16", "auto"): {}, ("fp32", "auto"): {},
    ("int8-wo", "auto"): {"quant_algo": "W8A16"}, ("int4-wo", "auto"): {"quant_algo": "W4A16"},
    ("fp16", "int8"): {"kv_cache_quant_algo": "INT8"}, ("int8-wo", "int8"): {"quant_algo": "W8A16", "kv_cache_quant_algo": "INT8"},
    ("fp16", "fp8"): {"kv_cache_quant_algo": "FP8"},
}
CONVERT_QUANT = {"fp16": None, "bf16": None, "fp32": None, "int8-wo": "int8-wo", "int4-wo": "int4-wo"}


def _load_013(block: dict):
    """0.13: `@dataclasses.dataclass class QuantConfig` built with cls(**config)."""
    cls = dataclasses.make_dataclass("QuantConfig", [(k, object, dataclasses.field(default=v))
                                                     for k, v in QUANT_CONFIG_FIELDS["0.13"].items()])
    return cls(**block)


def _load_12(block: dict):
    """1.2: `class QuantConfig(StrictBaseModel)`, pydantic with extra="forbid"."""
    cls = pydantic.create_model("QuantConfig", __config__=pydantic.ConfigDict(extra="forbid"),
                                **{k: (object, v) for k, v in QUANT_CONFIG_FIELDS["1.2"].items()})
    return cls(**block)


LOADERS = {"0.13": _load_013, "1.2": _load_12}


def test_pinned_field_lists():
    assert {k: set(v) for k, v in QUANT_CONFIG_FIELDS.items()} == PINNED_FIELDS


@pytest.mark.parametrize("profile", known_profiles())
def test_block_per_profile_and_precision_loads_in_that_toolchain(profile):
    prof = load_profile(profile)
    line = release_line(prof.toolchain.tensorrt_llm)
    cases = [(p, kv) for (p, kv) in EXPECTED if p in prof.precisions and kv in prof.kv_cache_dtypes]
    assert cases, f"no pinned case for profile {profile}"
    for precision, kv in cases:
        block = quantization_dict(CONVERT_QUANT[precision], None if kv == "auto" else kv)
        assert block == EXPECTED[(precision, kv)], (profile, precision, kv)
        assert unknown_quantization_keys(block, prof.toolchain.tensorrt_llm) == []
        LOADERS[line](block)  # raises like the toolchain would on an unknown key


def test_emulated_loaders_refuse_unknown_keys():
    """The emulation is as strict as the toolchains: a 1.2-only key breaks 0.13, any unknown key 1.2."""
    with pytest.raises(TypeError):
        _load_013({"quant_algo": None, "use_meta_recipe": False})
    with pytest.raises(pydantic.ValidationError):
        _load_12({"quant_algo": None, "no_such_key": 1})


def test_filter_drops_defaults_and_names_a_key_a_release_lacks():
    assert quantization_block({"group_size": 128, "clamp_val": None, "has_zero_point": False}) == {}
    assert quantization_block({"quant_algo": "W4A16_AWQ", "group_size": 64, "pre_quant_scale": True}) == {
        "quant_algo": "W4A16_AWQ", "group_size": 64, "pre_quant_scale": True}
    assert quantization_block({"use_meta_recipe": True}, ("1.2",)) == {"use_meta_recipe": True}
    with pytest.raises(GlmtrtError, match="use_meta_recipe.*0.13"):
        quantization_block({"use_meta_recipe": True})
    assert quantization_block({"use_meta_recipe": False}, ("1.2",)) == {}
    with pytest.raises(GlmtrtError, match="no pinned QuantConfig"):
        release_line("0.19.0")
    assert unknown_quantization_keys({"use_meta_recipe": True, "quant_algo": "FP8"}, "0.13.0") == ["use_meta_recipe"]
