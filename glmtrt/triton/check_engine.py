"""Checks of `glmtrt repo --check` against the engine and the serving topology (split from
glmtrt.triton.check; `checker` is its `_Checker`)."""
from __future__ import annotations

import json
from pathlib import Path

REPO_MANIFEST = "glmtrt_repo.json"


def _params(cfg) -> dict[str, str]:
    return {k: v.string_value for k, v in cfg.parameters.items()}


def check_engine(checker, engine_dir: Path) -> None:
    """Repository limits against the engine manifest it was generated from (`checker`: the check._Checker)."""
    import hashlib

    mpath = engine_dir / "manifest.json"
    if not mpath.is_file():
        checker.add("tensorrt_llm/config.pbtxt", 'parameters["gpt_model_path"]', f"{engine_dir} has no manifest.json",
                 "use an engine dir written by glmtrt build")
        return
    raw = mpath.read_bytes()
    want_sha = (checker.manifest.get("engine") or {}).get("manifest_sha256")
    if want_sha and hashlib.sha256(raw).hexdigest() != want_sha:
        checker.add(REPO_MANIFEST, "engine.manifest_sha256", f"does not match {mpath} (the engine was rebuilt)",
                 "regenerate the repository with glmtrt repo")
    try:
        build = json.loads(raw).get("build") or {}
    except ValueError:
        build = {}
    limits = checker.manifest.get("limits") or {}
    for model, cfg in checker.cfgs.items():
        emb = build.get("max_batch_size")
        if isinstance(emb, int) and cfg.max_batch_size > emb:
            checker.add(f"{model}/config.pbtxt", "max_batch_size",
                     f"is {cfg.max_batch_size} but the engine was built with max_batch_size {emb}",
                     f"set max_batch_size <= {emb} (regenerate with --max-batch-size)")
    for key in ("max_input_len", "max_seq_len", "max_beam_width"):
        if key in build and key in limits and build[key] != limits[key]:
            checker.add(REPO_MANIFEST, f"limits.{key}", f"is {limits[key]} but the engine has {build[key]}",
                     "regenerate the repository from this engine")
    for model in ("preprocessing", "tensorrt_llm_bls"):
        cfg = checker.cfgs.get(model)
        if cfg is None or not isinstance(build.get("max_input_len"), int):
            continue
        v = _params(cfg).get("max_input_len", "")
        if not v.isdigit() or int(v) > build["max_input_len"]:
            checker.add(f"{model}/config.pbtxt", 'parameters["max_input_len"]',
                     f"is {v!r} but the engine accepts at most {build['max_input_len']} input tokens",
                     f'set "{build["max_input_len"]}"')



def check_instances(checker) -> None:
    """Instance groups the models need to work at all.

    - `postprocessing`: exactly one instance; the ensemble streams through it and it keeps one
      incremental detokenizer per request id in its own process (glmtrt.triton.pymodels.postprocessing).
    - `tensorrt_llm` on the tensorrtllm backend: one KIND_CPU instance, as upstream's
      tensorrt_llm/config.pbtxt (TensorRT-LLM 1.2.x, tensorrtllm_backend v0.13.0); the executor
      places the engine on the GPUs itself and batches in flight.
    """
    from tritonclient.grpc import model_config_pb2 as pb

    post = checker.cfgs.get("postprocessing")
    if post is not None:
        count = sum(g.count or 1 for g in post.instance_group) or 1
        if count != 1:
            checker.add("postprocessing/config.pbtxt", "instance_group",
                     f"{count} instances, but its streaming state (one detokenizer per request id) lives in one process",
                     "set instance_group [ { count: 1  kind: KIND_CPU } ]")
    trt = checker.cfgs.get("tensorrt_llm")
    if trt is not None and trt.backend == "tensorrtllm":
        groups = list(trt.instance_group)
        if len(groups) != 1 or groups[0].kind != pb.ModelInstanceGroup.KIND_CPU or groups[0].count not in (0, 1):
            checker.add("tensorrt_llm/config.pbtxt", "instance_group",
                     "the tensorrtllm backend needs one KIND_CPU instance (it places the engine on the GPUs itself)",
                     "set instance_group [ { count: 1  kind: KIND_CPU } ]")
