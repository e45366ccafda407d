"""Generate a Triton inflight-batching model repository from an engine dir (or, for the CPU
stand-in, a TensorRT-LLM checkpoint dir).

Layout written (docs/TRITON.md): `ensemble/`, `preprocessing/`, `tensorrt_llm/`,
`postprocessing/`, `tensorrt_llm_bls/` (each `config.pbtxt` + `1/`), `tokenizer/` (a copy of
the tokenizer files) and `glmtrt_repo.json` (the repository manifest). Limits come from the
engine manifest (docs/INTERFACES.md section 4), never from hand input; options may only
narrow them. Every config is rendered from our strict templates and then validated by
`glmtrt.triton.check` before the temp dir is renamed into place.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from glmtrt import TRTLLM_TARGET_VERSION, __version__
from glmtrt.checkpoint.atomic import atomic_output_dir, check_output_dir
from glmtrt.errors import GlmtrtError
from glmtrt.fileio import read_json_object, sha256_file
from glmtrt.triton.contract import GUIDED_DECODING_BACKENDS, XGRAMMAR_INFO_FILE, tensor_names
from glmtrt.triton.fragments import backend_parameters, fragments, multimodal_fragments
from glmtrt.triton.multimodal import (MANIFEST_KEYS, TEXT_MODELS, multimodal_settings, render_vision, repo_models,
                                      write_files)
from glmtrt.triton.template import Raw, render_template

log = logging.getLogger(__name__)

REPO_MANIFEST = "glmtrt_repo.json"
# Shared files live inside model dirs (next to `1/`), never at the root: Triton 2.51 takes every
# root dir for a model and fails "failed to load all models" (hidden dirs too; verified).
TOKENIZER_SUBDIR = "preprocessing/tokenizer"
CHECKPOINT_SUBDIR = "tensorrt_llm/checkpoint"
MODELS = TEXT_MODELS
#: python models and the glmtrt module implementing each (R2: glmtrt/triton/pymodels/*).
PYTHON_MODULES = {
    "preprocessing": "glmtrt.triton.pymodels.preprocessing",
    "postprocessing": "glmtrt.triton.pymodels.postprocessing",
    "tensorrt_llm_bls": "glmtrt.triton.pymodels.bls",
}
REFERENCE_MODULE = "glmtrt.triton.pymodels.reference_engine"
PACE_MAX_MS = 3_600_000.0  # reference pacing mode: at most an hour per token
#: Values accepted by the tensorrtllm backend (tensorrtllm_backend docs/model_config.md).
BATCHING_STRATEGIES = ("inflight_fused_batching", "V1")
SCHEDULER_POLICIES = ("guaranteed_no_evict", "max_utilization")
LOGITS_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "bfloat16": "TYPE_BF16"}


@dataclass(frozen=True)
class RepoOptions:
    """Resolved `glmtrt repo` options (None = take it from the engine manifest / defaults)."""

    source: Path                       # engine dir (gpu) or TRT-LLM checkpoint dir (reference)
    tokenizer: Path
    output: Path
    engine: str = "gpu"                # "gpu" | "reference"
    max_batch_size: int | None = None
    decoupled: bool = True
    max_queue_delay_microseconds: int = 0
    max_queue_size: int = 0
    batching_strategy: str = "inflight_fused_batching"
    batch_scheduler_policy: str = "guaranteed_no_evict"
    kv_cache_free_gpu_mem_fraction: float | None = None  # default: engine manifest plan, else 0.9
    enable_chunked_context: bool | None = None
    enable_kv_cache_reuse: bool | None = None
    exclude_input_in_output: bool = True
    accumulate_tokens: bool = False
    python_instances: int | None = None
    bls_instances: int | None = None
    engine_path: str | None = None     # engine dir as the server sees it (container mount)
    copy_checkpoint: bool = False
    max_input_len: int | None = None   # reference only: limits of the CPU stand-in
    max_seq_len: int | None = None
    guided_decoding: str | None = None  # "xgrammar": JSON / grammar-constrained output (1.2 GPU engines)
    repo_path: str | None = None       # the repository dir as the server sees it (default: -o, absolute)
    pace_ttft_ms: float = 0.0          # reference only: pacing mode (first token, then one every pace_itl_ms)
    pace_itl_ms: float = 0.0
    max_images: int | None = None      # multimodal (GLM-4.1V) only: images per request (glmtrt.triton.multimodal)
    max_pixels: int | None = None
    min_pixels: int | None = None
    force: bool = False


read_json = read_json_object


def _int_field(data: dict, key: str, where: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise GlmtrtError(f"{where}: field '{key}' is {value!r}", expected="a positive integer",
                          fix="rebuild with glmtrt build (manifest incomplete)")
    return value


@dataclass(frozen=True)
class EngineFacts:
    """What the repository needs to know about the engine (or the stand-in's checkpoint)."""

    kind: str                 # "gpu" | "reference"
    dir: Path
    manifest_sha256: str
    toolchain: str
    profile: str | None
    max_batch_size: int
    max_input_len: int
    max_seq_len: int
    max_beam_width: int
    world_size: int
    tp_size: int
    pp_size: int
    logits_dtype: str
    gather_context_logits: bool
    gather_generation_logits: bool
    paged_context_fmha: bool
    planned_kv_fraction: float | None = None  # manifest plan.kv_cache_free_gpu_mem_fraction (planner)


def engine_facts(engine_dir: Path) -> EngineFacts:
    """Read the limits of a `glmtrt build` engine dir from its manifest.json (INTERFACES section 4)."""
    engine_dir = Path(engine_dir).resolve()
    mpath = engine_dir / "manifest.json"
    m = read_json(mpath, "engine manifest")
    if m.get("kind") != "trtllm-engine":
        hint = " (a checkpoint dir: use --engine reference for the CPU stand-in)" if m.get("kind") == "trtllm-checkpoint" else ""
        raise GlmtrtError(f"{mpath}: kind is {m.get('kind')!r}{hint}", expected="'trtllm-engine'",
                          fix="pass an engine dir written by glmtrt build")
    b = m.get("build")
    if not isinstance(b, dict):
        raise GlmtrtError(f"{mpath}: no 'build' section", fix="rebuild the engine with glmtrt build")
    where = f"{mpath} build"
    tp, pp = _int_field(b, "tp_size", where), int(b.get("pp_size") or 1)
    world = tp * pp
    missing = [f"rank{r}.engine" for r in range(world) if not (engine_dir / f"rank{r}.engine").is_file()]
    if not (engine_dir / "config.json").is_file():
        missing.insert(0, "config.json")
    if missing:
        raise GlmtrtError(f"engine dir {engine_dir} lacks {', '.join(missing)}",
                          expected=f"config.json and rank0..rank{world - 1}.engine",
                          fix="point at a complete engine dir (glmtrt build output)")
    logits = str(b.get("logits_dtype") or "float32")
    if logits not in LOGITS_TYPES:
        raise GlmtrtError(f"{where}: logits_dtype {logits!r}", expected=", ".join(LOGITS_TYPES))
    toolchain = (m.get("toolchain") or {}).get("tensorrt_llm") or TRTLLM_TARGET_VERSION
    return EngineFacts(
        kind="gpu", dir=engine_dir, manifest_sha256=sha256_file(mpath), toolchain=str(toolchain),
        profile=m.get("profile"), max_batch_size=_int_field(b, "max_batch_size", where),
        max_input_len=_int_field(b, "max_input_len", where), max_seq_len=_int_field(b, "max_seq_len", where),
        max_beam_width=int(b.get("max_beam_width") or 1), world_size=world, tp_size=tp, pp_size=pp,
        logits_dtype=logits, gather_context_logits=bool(b.get("gather_context_logits", False)),
        gather_generation_logits=bool(b.get("gather_generation_logits", False)),
        paged_context_fmha=bool(b.get("use_paged_context_fmha", False)),
        planned_kv_fraction=(m.get("plan") or {}).get("kv_cache_free_gpu_mem_fraction"),
    )


def checkpoint_facts(ckpt_dir: Path, opts: RepoOptions) -> EngineFacts:
    """Limits of the CPU stand-in: the checkpoint has none, so they come from options/defaults
    (bounded by the model's max_position_embeddings)."""
    ckpt_dir = Path(ckpt_dir).resolve()
    mpath = ckpt_dir / "manifest.json"
    m = read_json(mpath, "checkpoint manifest")
    if m.get("kind") != "trtllm-checkpoint":
        raise GlmtrtError(f"{mpath}: kind is {m.get('kind')!r}", expected="'trtllm-checkpoint' for --engine reference",
                          fix="pass a checkpoint dir written by glmtrt convert")
    llm = ckpt_dir / "llm"   # a GLM-4.1V conversion keeps the TensorRT-LLM checkpoint in llm/
    cfg = read_json((llm if llm.is_dir() else ckpt_dir) / "config.json", "checkpoint config.json")
    mapping = cfg.get("mapping") or {}
    tp, pp = int(mapping.get("tp_size") or 1), int(mapping.get("pp_size") or 1)
    max_pos = int(cfg.get("max_position_embeddings") or 2048)
    max_seq = opts.max_seq_len or min(max_pos, 2048)
    max_in = opts.max_input_len or max_seq // 2
    if not 0 < max_in < max_seq <= max_pos:
        raise GlmtrtError(f"reference limits max_input_len={max_in}, max_seq_len={max_seq}",
                          expected=f"0 < max_input_len < max_seq_len <= max_position_embeddings ({max_pos})",
                          fix="adjust --max-input-len / --max-seq-len")
    return EngineFacts(
        kind="reference", dir=ckpt_dir, manifest_sha256=sha256_file(mpath),
        toolchain=str(m.get("trtllm_target") or TRTLLM_TARGET_VERSION), profile=None,
        max_batch_size=opts.max_batch_size or 8, max_input_len=max_in, max_seq_len=max_seq,
        max_beam_width=1, world_size=1, tp_size=tp, pp_size=pp, logits_dtype="float32",
        gather_context_logits=False, gather_generation_logits=False, paged_context_fmha=False,
    )


def resolve_settings(opts: RepoOptions, facts: EngineFacts) -> dict[str, Any]:
    """All template values, checked against the engine limits."""
    mbs = opts.max_batch_size or facts.max_batch_size
    if not 0 < mbs <= facts.max_batch_size:
        raise GlmtrtError(f"--max-batch-size {mbs} but the engine was built with max_batch_size {facts.max_batch_size}",
                          expected=f"1..{facts.max_batch_size}", fix="lower --max-batch-size or rebuild the engine")
    if opts.batching_strategy not in BATCHING_STRATEGIES:
        raise GlmtrtError(f"batching strategy {opts.batching_strategy!r}", expected=" | ".join(BATCHING_STRATEGIES))
    if opts.batch_scheduler_policy not in SCHEDULER_POLICIES:
        raise GlmtrtError(f"batch scheduler policy {opts.batch_scheduler_policy!r}", expected=" | ".join(SCHEDULER_POLICIES))
    kv_frac = opts.kv_cache_free_gpu_mem_fraction
    if kv_frac is None:
        kv_frac = facts.planned_kv_fraction if facts.planned_kv_fraction is not None else 0.9
    if not isinstance(kv_frac, (int, float)) or not 0.0 < kv_frac <= 1.0:
        raise GlmtrtError(f"kv_cache_free_gpu_mem_fraction {kv_frac!r}", expected="in (0, 1]",
                          fix="fix --kv-cache-free-gpu-mem-fraction (or the engine manifest plan)")
    if opts.max_queue_delay_microseconds < 0 or opts.max_queue_size < 0:
        raise GlmtrtError("negative queue setting", expected="max_queue_delay_microseconds >= 0, max_queue_size >= 0")
    py = opts.python_instances or (1 if facts.kind == "reference" else 2)
    bls = opts.bls_instances or (min(mbs, 4) if facts.kind == "reference" else mbs)
    if py < 1 or bls < 1:
        raise GlmtrtError("instance counts must be >= 1", fix="fix --python-instances / --bls-instances")
    # Chunked context and KV reuse need paged context FMHA in the engine (trtllm-build
    # --use_paged_context_fmha); default them from the manifest, refuse an impossible request.
    chunked = facts.paged_context_fmha if opts.enable_chunked_context is None else opts.enable_chunked_context
    reuse = facts.paged_context_fmha if opts.enable_kv_cache_reuse is None else opts.enable_kv_cache_reuse
    if facts.kind == "gpu" and (chunked or reuse) and not facts.paged_context_fmha:
        raise GlmtrtError("enable_chunked_context / enable_kv_cache_reuse requested but the engine lacks paged context FMHA",
                          expected="build.use_paged_context_fmha true in the engine manifest",
                          fix="drop the option or rebuild with --use_paged_context_fmha enable")
    pacing = (opts.pace_ttft_ms, opts.pace_itl_ms)
    if any(not 0 <= float(v) <= PACE_MAX_MS for v in pacing) or (facts.kind != "reference" and any(pacing)):
        raise GlmtrtError(f"pacing ttft={opts.pace_ttft_ms} ms, itl={opts.pace_itl_ms} ms",
                          expected=f"0 <= --pace-ttft-ms, --pace-itl-ms <= {PACE_MAX_MS:g}, with --engine reference only")
    engine_path = opts.engine_path or str(facts.dir)
    names = tensor_names(facts.toolchain if facts.kind == "gpu" else TRTLLM_TARGET_VERSION)
    guided, info_path = _guided_decoding(opts, facts, names["contract"])
    return {
        "multimodal": multimodal_settings(opts, facts),
        "pace_ttft_ms": float(opts.pace_ttft_ms), "pace_itl_ms": float(opts.pace_itl_ms),
        "max_batch_size": mbs, "decoupled": opts.decoupled,
        "max_queue_delay_microseconds": opts.max_queue_delay_microseconds, "max_queue_size": opts.max_queue_size,
        "batching_strategy": opts.batching_strategy, "batch_scheduler_policy": opts.batch_scheduler_policy,
        "kv_cache_free_gpu_mem_fraction": float(kv_frac),
        "enable_chunked_context": bool(chunked), "enable_kv_cache_reuse": bool(reuse),
        "exclude_input_in_output": opts.exclude_input_in_output, "accumulate_tokens": opts.accumulate_tokens,
        # postprocessing: always ONE instance (per-request stream state lives in its process)
        "preprocessing_instance_count": py, "postprocessing_instance_count": 1, "bls_instance_count": bls,
        "engine_dir": engine_path, "max_beam_width": facts.max_beam_width, "max_input_len": facts.max_input_len,
        "max_seq_len": facts.max_seq_len, "logits_datatype": LOGITS_TYPES[facts.logits_dtype],
        "tokenizer_dir": TOKENIZER_SUBDIR, "add_special_tokens": True, "skip_special_tokens": True,
        "guided_decoding_backend": guided, "xgrammar_tokenizer_info_path": info_path, **names,
    }


def _guided_decoding(opts: RepoOptions, facts: EngineFacts, contract: str) -> tuple[str, str]:
    """(guided_decoding_backend, xgrammar_tokenizer_info_path) for the `tensorrt_llm` model; ("", "")
    is the explicit unset. The C++ backend opens the info path as given (no repository-relative
    resolution), so it is the path inside the server: `--repo-path` (default: the output dir)."""
    if not opts.guided_decoding:
        return "", ""
    if opts.guided_decoding not in GUIDED_DECODING_BACKENDS:
        raise GlmtrtError(f"--guided-decoding {opts.guided_decoding!r}", expected=" | ".join(GUIDED_DECODING_BACKENDS))
    if facts.kind != "gpu" or contract != "1.2":
        where = "the CPU stand-in" if facts.kind != "gpu" else f"a TensorRT-LLM {facts.toolchain} engine"
        raise GlmtrtError(f"--guided-decoding is not available for {where}",
                          expected="a GPU engine built with TensorRT-LLM 1.2 (the 0.13 backend has no guided decoding)",
                          fix="drop --guided-decoding")
    root = (opts.repo_path or str(Path(opts.output).resolve())).rstrip("/")
    if not root.startswith("/"):
        raise GlmtrtError(f"--repo-path {opts.repo_path!r} is relative", expected="an absolute path inside the server")
    return opts.guided_decoding, f"{root}/{XGRAMMAR_INFO_FILE}"


def _b(v: bool) -> str:
    return "true" if v else "false"


def render_configs(s: dict[str, Any], facts: EngineFacts, checkpoint_param: str) -> dict[str, str]:
    """config.pbtxt text per model, from the resolved settings `s`."""
    names = {k: s[k] for k in ("min_tokens_tensor", "seed_tensor")}
    requests = {k: s.get(k, s[k.replace("_request", "_tensor")]) for k in ("min_tokens_request", "seed_request")}
    frag = {**fragments(s), **multimodal_fragments(s)}
    io = Raw(render_template("tensorrt_llm_io.pbtxt", {
        **names, "logits_datatype": s["logits_datatype"],
        **{k: frag[k] for k in ("exclude_input_tensor", "input_ids_optional", "guide_tensors", "mm_tensors")}}))
    request_io = Raw(render_template("request_io.pbtxt", {"logits_datatype": s["logits_datatype"], **requests,
                                                          "exclude_input_request": frag["exclude_input_request"],
                                                          "guide_tensors": frag["guide_tensors"],
                                                          "images_request": frag["images_request"]}))
    queue = {k: s[k] for k in ("max_queue_delay_microseconds", "max_queue_size")}
    common = {"max_batch_size": s["max_batch_size"]}
    out = {
        "ensemble": render_template("ensemble.pbtxt", {**common, **names, **requests, "request_io": request_io,
                                                        "exclude_input_map": frag["exclude_input_map"],
                                                        "guide_map": frag["guide_map"], "mm_pre_map": frag["mm_pre_map"],
                                                        "mm_engine_map": frag["mm_engine_map"]}),
        "preprocessing": render_template("preprocessing.pbtxt", {
            **common, **queue, "preprocessing_instance_count": s["preprocessing_instance_count"],
            "tokenizer_dir": s["tokenizer_dir"], "add_special_tokens": _b(s["add_special_tokens"]),
            "max_input_len": str(s["max_input_len"]),
            **{k: frag[k] for k in ("mm_pre_inputs", "mm_pre_outputs", "mm_params")}}),
        "postprocessing": render_template("postprocessing.pbtxt", {
            **common, "tokenizer_dir": s["tokenizer_dir"], "skip_special_tokens": _b(s["skip_special_tokens"])}),
        "tensorrt_llm_bls": render_template("tensorrt_llm_bls.pbtxt", {
            **common, "decoupled": s["decoupled"], "request_io": request_io,
            "bls_instance_count": s["bls_instance_count"], "accumulate_tokens": _b(s["accumulate_tokens"]),
            "tokenizer_dir": s["tokenizer_dir"], "add_special_tokens": _b(s["add_special_tokens"]),
            "skip_special_tokens": _b(s["skip_special_tokens"]), "max_input_len": str(s["max_input_len"]),
            "mm_params": frag["mm_params"], "mm_bls_outputs": frag["mm_bls_outputs"]}),
    }
    if s.get("multimodal"):
        out["vision_encoder"] = render_vision(s["multimodal"], facts.kind)
    if facts.kind == "gpu":
        out["tensorrt_llm"] = render_template("tensorrt_llm.pbtxt", {
            **common, **queue, "decoupled": s["decoupled"], "io": io,
            "batching_strategy": s["batching_strategy"], "engine_dir": s["engine_dir"],
            "max_beam_width": str(s["max_beam_width"]), "batch_scheduler_policy": s["batch_scheduler_policy"],
            "kv_cache_free_gpu_mem_fraction": str(s["kv_cache_free_gpu_mem_fraction"]),
            "enable_kv_cache_reuse": _b(s["enable_kv_cache_reuse"]),
            "exclude_input_in_output": _b(s["exclude_input_in_output"]),
            "enable_chunked_context": _b(s["enable_chunked_context"]), "backend_parameters": backend_parameters(s)})
    else:
        out["tensorrt_llm"] = render_template("tensorrt_llm_reference.pbtxt", {
            **common, **queue, "decoupled": s["decoupled"], "io": io, "checkpoint_dir": checkpoint_param,
            "tokenizer_dir": s["tokenizer_dir"], "max_beam_width": str(s["max_beam_width"]),
            "max_input_len": str(s["max_input_len"]), "max_seq_len": str(s["max_seq_len"]),
            "pace_ttft_ms": f"{s['pace_ttft_ms']:g}", "pace_itl_ms": f"{s['pace_itl_ms']:g}",
            "exclude_input_in_output": _b(s["exclude_input_in_output"])})
    return out


def shim_source(module: str) -> str:
    """`1/model.py` of a python model: a shim importing the implementation from installed glmtrt."""
    return (f'"""Generated by glmtrt {__version__}: the implementation lives in the installed glmtrt package\n'
            f'(needs glmtrt=={__version__} in the python backend\'s environment)."""\n'
            f"from {module} import TritonPythonModel  # noqa: F401\n")


def _load_tokenizer(path: Path):
    try:
        from glmtrt.tokenizer import load_tokenizer
    except ImportError:  # pragma: no cover - the tokenizer package is part of glmtrt
        from glmtrt.tokenizer.loader import load_tokenizer
    return load_tokenizer(path)


def generate_repository(opts: RepoOptions) -> Path:
    """Write the model repository described by `opts`; returns its path. Atomic: the result
    appears only complete and validated (`glmtrt.triton.check.check_repository`)."""
    from glmtrt.triton.check import check_repository, format_problems

    if opts.engine not in ("gpu", "reference"):
        raise GlmtrtError(f"--engine {opts.engine!r}", expected="gpu | reference")
    facts = engine_facts(opts.source) if opts.engine == "gpu" else checkpoint_facts(opts.source, opts)
    settings = resolve_settings(opts, facts)
    tok = _load_tokenizer(Path(opts.tokenizer))
    out = check_output_dir(Path(opts.output).resolve(), opts.force)
    log.info("repository %s: engine=%s source=%s max_batch_size=%d decoupled=%s world_size=%d tokenizer=%s",
             out, facts.kind, facts.dir, settings["max_batch_size"], settings["decoupled"], facts.world_size, tok.name)
    with atomic_output_dir(out, opts.force) as tmp:
        checkpoint_param = ""
        if facts.kind == "reference":
            if opts.copy_checkpoint:
                shutil.copytree(facts.dir, tmp / CHECKPOINT_SUBDIR)
                checkpoint_param = CHECKPOINT_SUBDIR
            else:
                checkpoint_param = str(facts.dir)
        tok.save(tmp / TOKENIZER_SUBDIR)
        if settings["guided_decoding_backend"]:
            from glmtrt.triton.xgrammar_info import write_tokenizer_info
            write_tokenizer_info(tok, tmp / XGRAMMAR_INFO_FILE)
        configs = render_configs(settings, facts, checkpoint_param)
        for model, text in configs.items():
            (tmp / model / "1").mkdir(parents=True)
            (tmp / model / "config.pbtxt").write_text(text, encoding="utf-8")
            module = PYTHON_MODULES.get(model) or (REFERENCE_MODULE if model == "tensorrt_llm" and facts.kind == "reference" else None)
            if module:
                (tmp / model / "1" / "model.py").write_text(shim_source(module), encoding="utf-8")
            elif model == "ensemble":
                (tmp / model / "1" / ".keep").write_text("", encoding="utf-8")  # Triton needs the version dir
        if settings["multimodal"]:
            write_files(tmp, settings["multimodal"], facts.kind, shim_source("glmtrt.triton.pymodels.vision_encoder"))
        manifest = repo_manifest(settings, facts, tok, checkpoint_param)
        (tmp / REPO_MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        if facts.kind == "gpu":
            from glmtrt.triton.launch import launch_script
            (tmp / "launch_triton.sh").write_text(launch_script(facts.world_size), encoding="utf-8")
            os.chmod(tmp / "launch_triton.sh", 0o755)
        _publish_modes(tmp)
        problems = check_repository(tmp, engine_dir=facts.dir if facts.kind == "gpu" else None)
        if problems:
            raise GlmtrtError("generated repository failed validation (a glmtrt bug):\n" + format_problems(problems))
    log.info("wrote %s (%s)", out, ", ".join(repo_models(settings)))
    return out


def repo_manifest(s: dict[str, Any], facts: EngineFacts, tok, checkpoint_param: str) -> dict[str, Any]:
    """glmtrt_repo.json: what the repository needs and was made from (read by --check and serve)."""
    engine = {"kind": facts.kind, "dir": str(facts.dir), "manifest_sha256": facts.manifest_sha256,
              "toolchain": facts.toolchain, "profile": facts.profile, "world_size": facts.world_size,
              "tp_size": facts.tp_size, "pp_size": facts.pp_size}
    if facts.kind == "gpu":
        engine["path_in_server"] = s["engine_dir"]
    else:
        engine["checkpoint_dir"] = checkpoint_param
        engine["copied"] = checkpoint_param == CHECKPOINT_SUBDIR
    return {
        "kind": "triton-repository",
        "glmtrt_version": __version__,
        "requires": f"glmtrt=={__version__}",
        "trtllm_contract": s.get("contract") or ("1.2" if s["min_tokens_tensor"] == "min_tokens" else "0.13"),
        "models": repo_models(s),
        **({"multimodal": {k: s["multimodal"]["facts"][k] for k in MANIFEST_KEYS}} if s.get("multimodal") else {}),
        "engine": engine,
        "tokenizer": {"kind": tok.name, "dir": TOKENIZER_SUBDIR, "eos_id": tok.eos_id, "pad_id": tok.pad_id,
                      "stop_ids": list(tok.stop_ids), "vocab_size": tok.vocab_size},
        "limits": {"max_batch_size": s["max_batch_size"], "engine_max_batch_size": facts.max_batch_size,
                   "max_input_len": facts.max_input_len, "max_seq_len": facts.max_seq_len,
                   "max_beam_width": facts.max_beam_width, "gather_context_logits": facts.gather_context_logits,
                   "gather_generation_logits": facts.gather_generation_logits},
        "decoupled": s["decoupled"],
        **({"repo_path": s["xgrammar_tokenizer_info_path"][:-len(XGRAMMAR_INFO_FILE) - 1]}
           if s.get("xgrammar_tokenizer_info_path") else {}),
        "settings": {k: s[k] for k in sorted(s)},
    }


def _publish_modes(root: Path) -> None:
    """World-readable dirs/files (mkdtemp makes 0700; the server may run as another user)."""
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        if path.is_dir() or path.suffix == ".sh":
            os.chmod(path, 0o755)
        else:
            os.chmod(path, 0o644)


def options_dict(opts: RepoOptions) -> dict[str, Any]:
    """Options as JSON-friendly dict (for logging)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()}
