"""The exact `trtllm-build` invocation for a GPU profile and a converted checkpoint.

Quantization is NOT a trtllm-build flag: it lives in the checkpoint config's `quantization` block
(tensorrt_llm/commands/build.py reads it from PretrainedConfig). The flags here are the engine
limits, the KV-cache layout and the plugin/feature choices of the profile. Every flag and value is
checked against the pinned flag list of the profile's TensorRT-LLM line (glmtrt/build/flags/).
"""
from __future__ import annotations

import json
import shlex
import shutil
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from glmtrt.build.inputs import CheckpointInfo
from glmtrt.build.planner import Workload
from glmtrt.build.profile import GpuProfile
from glmtrt.errors import GlmtrtError

TIMING_CACHE_DIR = Path("build") / "timing-cache"
LOG_DIR = Path("build") / "logs"


@lru_cache(maxsize=None)
def load_flags(line: str) -> dict[str, Any]:
    """The pinned flag list of a TensorRT-LLM line ("0.13" | "1.2")."""
    name = f"trtllm_build_{line}.json"
    f = resources.files("glmtrt.build.flags").joinpath(name)
    if not f.is_file():
        raise GlmtrtError(f"no pinned trtllm-build flag list for TensorRT-LLM {line}",
                          expected="0.13 or 1.2", fix=f"add glmtrt/build/flags/{name} (see docs/BUILD.md)")
    return json.loads(f.read_text(encoding="utf-8"))


def validate_command(cmd: list[str], line: str) -> None:
    """Every `--flag [value]` of `cmd` must exist in the pinned list with a valid value."""
    flags = load_flags(line)["flags"]
    if not cmd or cmd[0] != "trtllm-build":
        raise GlmtrtError(f"not a trtllm-build command: {cmd[:1]}")
    i = 1
    while i < len(cmd):
        tok = cmd[i]
        if not tok.startswith("--"):
            raise GlmtrtError(f"stray argument {tok!r} in the trtllm-build command")
        name = tok[2:]
        spec = flags.get(name)
        if spec is None:
            raise GlmtrtError(f"--{name} is not a trtllm-build flag of TensorRT-LLM {line}",
                              expected="a flag of the pinned list glmtrt/build/flags/trtllm_build_" + line + ".json")
        if spec["type"] == "flag":
            i += 1
            continue
        if i + 1 >= len(cmd) or cmd[i + 1].startswith("--"):
            raise GlmtrtError(f"--{name} needs a value")
        val = cmd[i + 1]
        if spec["type"] == "int" and not val.lstrip("-").isdigit():
            raise GlmtrtError(f"--{name} {val!r}", expected="an integer")
        if spec["type"] == "choice" and val not in spec["choices"]:
            raise GlmtrtError(f"--{name} {val!r} is not valid for TensorRT-LLM {line}",
                              expected="one of " + ", ".join(spec["choices"]))
        i += 2


def _plugin_dtype(profile: GpuProfile, ckpt_dtype: str) -> str:
    if ckpt_dtype == "bfloat16" and profile.sm < 80:
        raise GlmtrtError(f"checkpoint dtype bfloat16 cannot run on {profile.name} (sm{profile.sm})",
                          expected="float16 (or float32) on GPUs older than sm80",
                          fix="convert again with --dtype float16")
    return ckpt_dtype


def _paged_context_kv_conflict(precision: str, kv_cache_dtype: str) -> str:
    """Why trtllm-build refuses paged context FMHA with this KV cache ("" when it does not).

    tensorrt_llm/builder.py `build()` (0.13 .. 1.2): an INT8 KV cache raises "Paged Context FMHA
    doesn't work with int8 kv cache currently."; an FP8 KV cache without FP8 quantization raises
    "FP8 Paged Context FMHA only works with fp8 quantization workflow currently." (attentionOp.cpp
    checks the same at run time)."""
    if kv_cache_dtype == "int8":
        return "paged context FMHA does not work with an INT8 KV cache (tensorrt_llm/builder.py build())"
    if kv_cache_dtype == "fp8" and precision != "fp8":
        return ("paged context FMHA with an FP8 KV cache needs FP8 quantization (tensorrt_llm/builder.py "
                "build()); no KV-cache reuse / chunked context for this engine")
    return ""


def feature_choices(profile: GpuProfile, precision: str, ckpt_dtype: str, head_size: int,
                    kv_cache_dtype: str = "auto") -> dict[str, tuple[Any, str]]:
    """{feature: (value, reason)} for this profile, precision, KV-cache dtype and model;
    None = flag not passed."""
    f = profile.features
    dtype = _plugin_dtype(profile, ckpt_dtype)
    out: dict[str, tuple[Any, str]] = {}
    for plugin in ("gpt_attention_plugin", "gemm_plugin"):
        spec = {**f[plugin], **(f[plugin].get("by_precision") or {}).get(precision, {})}
        v = spec["value"]                               # "dtype", a fixed value, or "disable"
        out[plugin] = (dtype if v == "dtype" else v, spec["reason"])
    cf = f["context_fmha"]
    fmha = bool(cf["value"]) and dtype != "float32"
    why = cf["reason"]
    if cf.get("max_head_size") is not None and head_size > cf["max_head_size"]:
        fmha, why = False, f"head size {head_size} > {cf['max_head_size']}: {cf['reason']}"
    elif dtype == "float32":
        why = "fused attention kernels have no float32 variant"
    out["context_fmha"] = (fmha, why)
    pc = f["use_paged_context_fmha"]
    conflict = _paged_context_kv_conflict(precision, kv_cache_dtype)
    if not fmha:
        out["use_paged_context_fmha"] = (False, "context FMHA is off, paged context FMHA needs it")
    elif conflict and pc["value"]:
        out["use_paged_context_fmha"] = (False, conflict)
    else:
        out["use_paged_context_fmha"] = (bool(pc["value"]), pc["reason"])
    f8 = f["use_fp8_context_fmha"]
    allowed = f8.get("requires_precision")
    on = bool(f8["value"]) and fmha and (allowed is None or precision in allowed)
    out["use_fp8_context_fmha"] = (on, f8["reason"])
    for feat in ("paged_kv_cache", "remove_input_padding", "multiple_profiles"):
        out[feat] = (f[feat]["value"], f[feat]["reason"])
    fm = f["use_fused_mlp"]
    if fm["value"] is None:
        out["use_fused_mlp"] = (None, fm["reason"])
    else:
        keep = precision in ("fp16", "bf16", "fp32", "fp8")   # commands/build.py: only unquantized / FP8
        out["use_fused_mlp"] = (bool(fm["value"]) and keep, fm["reason"])
    return out


def _plugin_flag(v: Any) -> str:
    """A plugin value as trtllm-build spells it: a dtype, or "disable" (plugin.py add_plugin_argument)."""
    return "disable" if v in (None, False, "disable") else str(v)


def _ed(v: bool) -> str:
    return "enable" if v else "disable"


@dataclass(frozen=True)
class BuildRequest:
    """Everything that decides the command line."""

    profile: GpuProfile
    checkpoint: CheckpointInfo
    output_dir: Path
    workload: Workload                     # resolved (max_input_len / max_num_tokens set)
    timing_cache: Path | None = None
    workers: int = 1
    log_level: str = "info"
    max_multimodal_len: int = 0
    gather_generation_logits: bool = False


def timing_cache_path(profile: GpuProfile, root: Path = TIMING_CACHE_DIR) -> Path:
    """One TensorRT timing cache per GPU kind and toolchain (tactics depend on both)."""
    return root / f"{profile.name}-trtllm-{profile.toolchain.tensorrt_llm}.cache"


def build_command(req: BuildRequest) -> list[str]:
    """The trtllm-build argv (validated against the pinned flag list of the profile's toolchain)."""
    p, ck, wl = req.profile, req.checkpoint, req.workload
    feats = feature_choices(p, ck.precision, ck.dtype, ck.dims.head_size, ck.kv_cache_dtype)
    cmd = ["trtllm-build", "--checkpoint_dir", str(ck.path), "--output_dir", str(req.output_dir),
           "--max_batch_size", str(wl.max_batch_size), "--max_input_len", str(wl.max_input_len),
           "--max_seq_len", str(wl.max_seq_len), "--max_num_tokens", str(wl.max_num_tokens),
           "--max_beam_width", str(wl.max_beam_width),
           "--kv_cache_type", "paged" if feats["paged_kv_cache"][0] else "continuous",
           "--tokens_per_block", str(p.tokens_per_block),
           "--gpt_attention_plugin", _plugin_flag(feats["gpt_attention_plugin"][0]),
           "--gemm_plugin", _plugin_flag(feats["gemm_plugin"][0]),
           "--remove_input_padding", _ed(feats["remove_input_padding"][0]),
           "--context_fmha", _ed(feats["context_fmha"][0]),
           "--use_paged_context_fmha", _ed(feats["use_paged_context_fmha"][0]),
           "--use_fp8_context_fmha", _ed(feats["use_fp8_context_fmha"][0]),
           "--multiple_profiles", _ed(feats["multiple_profiles"][0])]
    if feats["use_fused_mlp"][0] is not None:
        cmd += ["--use_fused_mlp", _ed(feats["use_fused_mlp"][0])]
    if req.max_multimodal_len:
        cmd += ["--max_prompt_embedding_table_size", str(req.max_multimodal_len)]
    if wl.gather_context_logits:
        cmd += ["--gather_context_logits"]
    if req.gather_generation_logits:
        cmd += ["--gather_generation_logits"]
    if req.timing_cache is not None:
        cmd += ["--input_timing_cache", str(req.timing_cache), "--output_timing_cache", str(req.timing_cache)]
    cmd += ["--workers", str(max(1, req.workers)), "--log_level", req.log_level]
    from glmtrt.models.registry import engine_model_class

    cls = engine_model_class(ck.config.get("architecture"))
    if cls is not None:     # our own engine class (e.g. GLM-4.1V): tensorrt_llm/commands/build.py main()
        cmd += ["--model_cls_file", cls[0], "--model_cls_name", cls[1]]
    validate_command(cmd, p.toolchain.flags)
    return cmd


def find_trtllm_build() -> str | None:
    """Path of the trtllm-build executable, or None."""
    return shutil.which("trtllm-build")


def installed_trtllm_version() -> str | None:
    """Version of the installed tensorrt_llm distribution (metadata only; no import, no GPU)."""
    from importlib import metadata

    for dist in ("tensorrt_llm", "tensorrt-llm"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def check_toolchain(profile: GpuProfile, installed: str | None) -> None:
    """Refuse to build with a TensorRT-LLM line other than the profile's (engines are not portable)."""
    want = profile.toolchain.line
    if installed is None or ".".join(installed.split(".")[:2]) != want:
        raise GlmtrtError(
            f"installed TensorRT-LLM is {installed or 'unknown'}, profile {profile.name} targets {profile.toolchain.tensorrt_llm}",
            expected=f"TensorRT-LLM {want}.x (the engine must match the runtime in {profile.toolchain.triton_container})",
            fix=f"build inside {profile.toolchain.triton_container} (see `make engine`), or pass --ignore-toolchain")


def container_command(profile: GpuProfile, argv: list[str], workdir: str = "/workspace",
                      paths: tuple[Path, ...] = ()) -> str:
    """`docker run` line that runs `argv` in the profile's Triton TensorRT-LLM container.

    The current directory is mounted at `workdir`; each of `paths` outside it (checkpoint, engine
    parent dir) is mounted at its own absolute path so the argv's paths stay valid inside."""
    cwd = Path.cwd().resolve()
    mounts = []
    for p in paths:
        p = Path(p).resolve()
        if p != cwd and cwd not in p.parents and str(p) not in mounts:
            mounts.append(str(p))
    inner = "pip install --no-deps -e . >/dev/null && " + shlex.join(argv)
    extra = "".join(f"-v {shlex.quote(m)}:{shlex.quote(m)} " for m in mounts)
    return (f"docker run --rm --gpus all --shm-size=2g --ulimit memlock=-1 --ulimit stack=67108864 "
            f"-v \"$PWD\":{workdir} {extra}-w {workdir} {profile.toolchain.triton_container} "
            f"bash -lc {shlex.quote(inner)}")
