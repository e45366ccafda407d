"""`glmtrt build`: plan, command, run trtllm-build (when installed), write the engine manifest."""
from __future__ import annotations

import logging
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from glmtrt.build.inputs import CheckpointInfo, check_tp, read_checkpoint
from glmtrt.build.manifest import EngineBuild, EngineManifest, write_engine_manifest
from glmtrt.build.planner import Plan, Workload, check_supported, plan_memory, require_fit
from glmtrt.build.profile import GpuProfile, load_profile
from glmtrt.build.trtllm_build import (LOG_DIR, TIMING_CACHE_DIR, BuildRequest, build_command, check_toolchain,
                                       container_command, feature_choices, find_trtllm_build,
                                       installed_trtllm_version, timing_cache_path)
from glmtrt.checkpoint.atomic import atomic_output_dir, check_output_dir
from glmtrt.checkpoint.manifest import sha256_file
from glmtrt.errors import GlmtrtError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineJob:
    """A fully resolved build: the plan, the request and the command line."""

    profile: GpuProfile
    checkpoint: CheckpointInfo
    plan: Plan
    request: BuildRequest
    command: list[str]


def prepare_build(checkpoint_dir: str | Path, output_dir: str | Path, gpu: str, *, workload: Workload,
                  tp_size: int | None = None, workers: int | None = None, timing_cache_dir: Path = TIMING_CACHE_DIR,
                  max_multimodal_len: int = 0, gather_generation_logits: bool = False,
                  check_fit: bool = True, log_level: str = "info") -> EngineJob:
    """Validate everything and compute the command; touches nothing on disk.

    `workers` (parallel rank builds) defaults to the TP size; trtllm-build itself caps it at the
    number of visible GPUs (tensorrt_llm/commands/build.py main())."""
    profile = load_profile(gpu)
    ckpt = read_checkpoint(checkpoint_dir)
    tp = check_tp(ckpt, tp_size)
    if ckpt.pp_size != 1:
        raise GlmtrtError(f"checkpoint has pp_size={ckpt.pp_size}", expected="pp_size 1 (glmtrt builds TP only)")
    check_supported(profile, ckpt.precision, ckpt.kv_cache_dtype)    # precision refusals come first
    feats = feature_choices(profile, ckpt.precision, ckpt.dtype, ckpt.dims.head_size, ckpt.kv_cache_dtype)
    workload = _whole_prompt_per_step(workload, chunked=bool(feats["use_paged_context_fmha"][0]))
    if max_multimodal_len and not workload.max_prompt_embedding_table_size:   # the planner counts the table
        workload = replace(workload, max_prompt_embedding_table_size=max_multimodal_len)
    plan = plan_memory(ckpt.dims, profile, ckpt.precision, tp, workload, ckpt.kv_cache_dtype)
    if check_fit:
        require_fit(plan)
    req = BuildRequest(profile=profile, checkpoint=ckpt, output_dir=Path(output_dir), workload=plan.workload,
                       timing_cache=timing_cache_path(profile, Path(timing_cache_dir)),
                       workers=tp if workers is None else workers,
                       log_level=log_level, max_multimodal_len=max_multimodal_len,
                       gather_generation_logits=gather_generation_logits)
    return EngineJob(profile, ckpt, plan, req, build_command(req))


def _whole_prompt_per_step(workload: Workload, chunked: bool) -> Workload:
    """Without chunked context (it needs paged context FMHA) a prompt is processed in one engine
    step, so max_num_tokens must cover max_input_len: the default is raised to it and a smaller
    explicit value is refused (the Triton backend rejects longer prompts at run time)."""
    if chunked:
        return workload
    wl = workload.resolved()
    if wl.max_num_tokens >= wl.max_input_len:
        return workload
    if workload.max_num_tokens is not None:
        raise GlmtrtError(
            f"max_num_tokens {wl.max_num_tokens} < max_input_len {wl.max_input_len} on an engine without "
            "chunked context (paged context FMHA is off)",
            expected="max_num_tokens >= max_input_len", fix=f"pass --max-num-tokens {wl.max_input_len} "
            "or a smaller --max-input-len / --max-seq-len")
    log.info("max_num_tokens raised to max_input_len %d: no chunked context on this engine", wl.max_input_len)
    return replace(workload, max_num_tokens=wl.max_input_len)


def glmtrt_build_argv(job: EngineJob, output_dir: str | Path) -> list[str]:
    """The `glmtrt build` argv that reproduces `job` (e.g. inside the profile's container)."""
    wl, req = job.plan.workload, job.request
    ck_dir = job.checkpoint.path
    if ck_dir.name == "llm" and (ck_dir.parent / "manifest.json").is_file():    # Glm4v: llm/ + vision/
        ck_dir = ck_dir.parent
    argv = ["glmtrt", "build", str(ck_dir), "-o", str(output_dir), "--gpu", job.profile.name,
            "--tp", str(job.checkpoint.tp_size), "--max-batch-size", str(wl.max_batch_size),
            "--max-seq-len", str(wl.max_seq_len), "--max-input-len", str(wl.max_input_len),
            "--max-num-tokens", str(wl.max_num_tokens), "--max-beam-width", str(wl.max_beam_width),
            "--kv-cache-free-gpu-mem-fraction", f"{wl.kv_cache_free_gpu_mem_fraction:g}",
            "--workers", str(req.workers)]
    if req.max_multimodal_len:
        argv += ["--max-multimodal-len", str(req.max_multimodal_len)]
    if wl.gather_context_logits:
        argv.append("--gather-context-logits")
    if req.gather_generation_logits:
        argv.append("--gather-generation-logits")
    return argv


def engine_manifest(job: EngineJob, files: dict[str, dict], tensorrt_llm: str | None = None) -> EngineManifest:
    """The engine-dir manifest of a job (docs/INTERFACES.md section 4); `tensorrt_llm` is the version
    that really built it (defaults to the profile's)."""
    ck, wl, p = job.checkpoint, job.plan.workload, job.profile
    feats = feature_choices(p, ck.precision, ck.dtype, ck.dims.head_size, ck.kv_cache_dtype)
    q = ck.config.get("quantization") or {}
    build = EngineBuild(
        max_batch_size=wl.max_batch_size, max_input_len=wl.max_input_len, max_seq_len=wl.max_seq_len,
        max_num_tokens=wl.max_num_tokens, max_beam_width=wl.max_beam_width, tp_size=ck.tp_size,
        pp_size=ck.pp_size, dtype=ck.dtype, precision=ck.precision, kv_cache_dtype=ck.kv_cache_dtype,
        quant={"quant_algo": q.get("quant_algo"), "kv_cache_quant_algo": q.get("kv_cache_quant_algo")},
        paged_kv_cache=bool(feats["paged_kv_cache"][0]), tokens_per_block=p.tokens_per_block,
        remove_input_padding=bool(feats["remove_input_padding"][0]), context_fmha=bool(feats["context_fmha"][0]),
        use_paged_context_fmha=bool(feats["use_paged_context_fmha"][0]),
        gather_context_logits=wl.gather_context_logits,
        gather_generation_logits=job.request.gather_generation_logits,
        max_prompt_embedding_table_size=job.request.max_multimodal_len)
    plan = {k: getattr(job.plan, k) for k in ("kv_tokens", "kv_bytes_per_token", "weight_bytes",
                                                "activation_bytes", "kv_budget_bytes", "usable_bytes")}
    plan["kv_cache_free_gpu_mem_fraction"] = wl.kv_cache_free_gpu_mem_fraction
    return EngineManifest(
        profile=p.name, gpu=p.gpu,
        toolchain={"tensorrt_llm": tensorrt_llm or p.toolchain.tensorrt_llm,
                   "triton_container": p.toolchain.triton_container},
        checkpoint={"dir": str(ck.path), "manifest_sha256": ck.manifest_sha256}, build=build, plan=plan,
        command=tuple(job.command), model=dict(ck.manifest.get("model") or {}), files=files)


def run_build(job: EngineJob, *, force: bool = False, ignore_toolchain: bool = False,
              log_dir: Path = LOG_DIR) -> Path:
    """Run trtllm-build into a temp dir, write the manifest, rename into place; returns the engine dir."""
    out = check_output_dir(job.request.output_dir, force)
    exe = find_trtllm_build()
    if exe is None:
        argv = glmtrt_build_argv(job, out)
        raise GlmtrtError(
            "trtllm-build is not installed here (TensorRT-LLM is needed to build engines)",
            expected=f"TensorRT-LLM {job.profile.toolchain.tensorrt_llm} on a machine with an NVIDIA GPU",
            fix="run it in the profile's container: "
            + container_command(job.profile, argv, paths=(job.checkpoint.path, Path(out).resolve().parent))
            + f"  (or `make engine ... GPU={job.profile.name}`, which does this; --dry-run prints the command)")
    installed = installed_trtllm_version()
    if not ignore_toolchain:
        check_toolchain(job.profile, installed)
    job.request.timing_cache.parent.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{Path(out).name}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    with atomic_output_dir(out, force) as tmp:
        cmd = list(job.command)
        cmd[cmd.index("--output_dir") + 1] = str(tmp)
        cmd[0] = exe
        log.info("running %s (log: %s)", " ".join(job.command), log_path)
        with open(log_path, "w", encoding="utf-8") as lf:
            lf.write("# " + " ".join(job.command) + "\n")
            lf.flush()
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for line in proc.stdout:            # tee: the log keeps everything, the terminal follows along
                lf.write(line)
                sys.stderr.write(line)
            rc = proc.wait()
        if rc != 0:
            raise GlmtrtError(f"trtllm-build failed with exit code {rc}", expected="exit code 0",
                              fix=f"read {log_path}; nothing was written to {out}")
        engines = sorted(tmp.glob("rank*.engine"))
        if len(engines) != job.checkpoint.tp_size or not (tmp / "config.json").is_file():
            raise GlmtrtError(f"trtllm-build wrote {len(engines)} engine(s)",
                              expected=f"{job.checkpoint.tp_size} rank*.engine file(s) and config.json",
                              fix=f"read {log_path}")
        files = {f.name: {"sha256": sha256_file(f), "bytes": f.stat().st_size}
                 for f in [*engines, tmp / "config.json"]}
        write_engine_manifest(tmp, engine_manifest(job, files, tensorrt_llm=installed))
    log.info("engine written to %s", out)
    return Path(out)
