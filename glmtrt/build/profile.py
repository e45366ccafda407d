"""GPU profiles: one JSON data file per GPU under `glmtrt/build/profiles/`.

A profile says what the GPU is (compute capability, memory), which precisions it can run, which
TensorRT-LLM toolchain and Triton container target it, and the plugin/feature choices for
`trtllm-build` with the reason for each. Adding a GPU (l4, a10, a100, h100) is adding a file.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any, Mapping

from glmtrt.errors import GlmtrtError

#: Precision names used across the project (convert --quant / --dtype map onto these).
PRECISIONS = ("fp16", "bf16", "fp32", "int8-wo", "int4-wo", "int8-sq", "fp8", "int4-awq")
#: KV-cache dtypes: "auto" = the model dtype, or a quantized cache.
KV_CACHE_DTYPES = ("auto", "int8", "fp8")

_REQUIRED = ("name", "gpu", "compute_capability", "memory_mib", "reserved_mib", "precisions",
             "kv_cache_dtypes", "toolchain", "tokens_per_block", "features")
_FEATURES = ("gpt_attention_plugin", "gemm_plugin", "context_fmha", "use_paged_context_fmha",
             "use_fp8_context_fmha", "paged_kv_cache", "remove_input_padding", "use_fused_mlp",
             "multiple_profiles")


@dataclass(frozen=True)
class Toolchain:
    """The TensorRT-LLM release and Triton container a profile targets."""

    tensorrt_llm: str          # exact version, e.g. "0.13.0"
    flags: str                 # which pinned trtllm-build flag list applies ("0.13" | "1.2")
    triton_container: str      # pinned image, nvcr.io/nvidia/tritonserver:<yy.mm>-trtllm-python-py3
    reason: str

    @property
    def line(self) -> str:
        """major.minor of the TensorRT-LLM release."""
        return ".".join(self.tensorrt_llm.split(".")[:2])


@dataclass(frozen=True)
class GpuProfile:
    """One GPU kind as data (see the JSON files for the reasons)."""

    name: str
    gpu: str
    compute_capability: str
    memory_mib: int
    reserved_mib: int
    precisions: tuple[str, ...]
    kv_cache_dtypes: tuple[str, ...]
    toolchain: Toolchain
    tokens_per_block: int
    features: Mapping[str, Mapping[str, Any]] = field(repr=False)

    @property
    def sm(self) -> int:
        major, minor = self.compute_capability.split(".")
        return int(major) * 10 + int(minor)

    @property
    def usable_bytes(self) -> int:
        """Memory left for weights, activations and KV cache on one GPU."""
        return (self.memory_mib - self.reserved_mib) * 1024 * 1024

    def feature(self, name: str) -> Mapping[str, Any]:
        return self.features[name]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "gpu": self.gpu, "compute_capability": self.compute_capability,
                "memory_mib": self.memory_mib, "reserved_mib": self.reserved_mib,
                "precisions": list(self.precisions), "kv_cache_dtypes": list(self.kv_cache_dtypes),
                "toolchain": {"tensorrt_llm": self.toolchain.tensorrt_llm,
                              "triton_container": self.toolchain.triton_container},
                "tokens_per_block": self.tokens_per_block}


def profile_from_dict(d: Mapping[str, Any], origin: str = "<dict>") -> GpuProfile:
    """Validate and freeze one profile dict (errors name the file and the field)."""
    missing = [k for k in _REQUIRED if k not in d]
    if missing:
        raise GlmtrtError(f"GPU profile {origin} lacks {', '.join(missing)}",
                          expected="fields " + ", ".join(_REQUIRED))
    bad = [p for p in d["precisions"] if p not in PRECISIONS]
    if bad:
        raise GlmtrtError(f"GPU profile {origin} lists unknown precisions {bad}",
                          expected="a subset of " + ", ".join(PRECISIONS))
    bad_kv = [p for p in d["kv_cache_dtypes"] if p not in KV_CACHE_DTYPES]
    if bad_kv:
        raise GlmtrtError(f"GPU profile {origin} lists unknown KV-cache dtypes {bad_kv}",
                          expected="a subset of " + ", ".join(KV_CACHE_DTYPES))
    feats = d["features"]
    for name in _FEATURES:
        if name not in feats or "value" not in feats[name] or not feats[name].get("reason"):
            raise GlmtrtError(f"GPU profile {origin}: feature '{name}' needs a value and a reason")
    tc = d["toolchain"]
    for k in ("tensorrt_llm", "flags", "triton_container", "reason"):
        if k not in tc:
            raise GlmtrtError(f"GPU profile {origin}: toolchain lacks '{k}'")
    return GpuProfile(
        name=str(d["name"]), gpu=str(d["gpu"]), compute_capability=str(d["compute_capability"]),
        memory_mib=int(d["memory_mib"]), reserved_mib=int(d["reserved_mib"]),
        precisions=tuple(d["precisions"]), kv_cache_dtypes=tuple(d["kv_cache_dtypes"]),
        toolchain=Toolchain(str(tc["tensorrt_llm"]), str(tc["flags"]), str(tc["triton_container"]),
                            str(tc["reason"])),
        tokens_per_block=int(d["tokens_per_block"]), features=dict(feats))


@lru_cache(maxsize=None)
def _all_profiles() -> dict[str, GpuProfile]:
    out = {}
    for entry in resources.files("glmtrt.build").joinpath("profiles").iterdir():
        if entry.name.endswith(".json"):
            d = json.loads(entry.read_text(encoding="utf-8"))
            prof = profile_from_dict(d, entry.name)
            if prof.name + ".json" != entry.name:
                raise GlmtrtError(f"GPU profile file {entry.name} is named '{prof.name}'",
                                  expected="file name = <name>.json")
            out[prof.name] = prof
    return out


def known_profiles() -> list[str]:
    """Names of the shipped GPU profiles, sorted."""
    return sorted(_all_profiles())


def load_profile(name: str) -> GpuProfile:
    """The profile called `name` (case-insensitive); unknown names list the known ones."""
    key = name.strip().lower().replace("-", "").replace("_", "")
    for prof_name, prof in _all_profiles().items():
        if prof_name.replace("-", "").replace("_", "") == key:
            return prof
    raise GlmtrtError(f"unknown GPU '{name}'", expected="one of: " + ", ".join(known_profiles()),
                      fix="pick a known profile or add glmtrt/build/profiles/<name>.json (see docs/BUILD.md)")
