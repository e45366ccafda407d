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



def check_backend_parameters(checker, trt) -> None:
    """`tensorrt_llm` parameters the tensorrtllm backend of the repository's release line reads
    without a default (glmtrt.triton.contract.REQUIRED_BACKEND_PARAMETERS: a missing one fails the
    model load with "Cannot find parameter with name"), and the guided-decoding settings."""
    from glmtrt.triton.contract import GUIDED_DECODING_BACKENDS, REQUIRED_BACKEND_PARAMETERS, XGRAMMAR_INFO_FILE

    rel, p = "tensorrt_llm/config.pbtxt", _params(trt)
    contract = checker.manifest.get("trtllm_contract")
    if contract not in REQUIRED_BACKEND_PARAMETERS:
        contract = "0.13" if any(t.name == "random_seed" for t in trt.input) else "1.2"
    source = ("TensorRT-LLM 1.2.x triton_backend" if contract == "1.2" else "tensorrtllm_backend v0.13.0") + \
        " inflight_batcher_llm/src/model_instance_state.cc"
    for key in REQUIRED_BACKEND_PARAMETERS[contract]:
        if key not in p:
            checker.add(rel, f'parameters["{key}"]', f"missing: the {contract} backend reads it without a default "
                        f"({source}), so the model fails to load (Cannot find parameter with name: {key})",
                        f'add parameters {{ key: "{key}"  value: {{ string_value: "" }} }} ("" = unset) or regenerate')
    backend, info = p.get("guided_decoding_backend", ""), p.get("xgrammar_tokenizer_info_path", "")
    if backend and backend not in GUIDED_DECODING_BACKENDS:
        checker.add(rel, 'parameters["guided_decoding_backend"]', f"is {backend!r}",
                    f'use "" (off) or one of {", ".join(GUIDED_DECODING_BACKENDS)}')
    elif backend and not info:
        checker.add(rel, 'parameters["xgrammar_tokenizer_info_path"]', "empty while guided_decoding_backend is set: "
                    "the backend then leaves guided decoding off", "regenerate with glmtrt repo --guided-decoding xgrammar")
    elif backend:
        local = checker.repo / XGRAMMAR_INFO_FILE if info.endswith("/" + XGRAMMAR_INFO_FILE) else Path(info)
        try:
            data = json.loads(local.read_text(encoding="utf-8"))
            ok = isinstance(data.get("encoded_vocab"), list) and isinstance(data.get("tokenizer_str"), str) \
                and isinstance(data.get("stop_token_ids"), list)
        except (OSError, ValueError, AttributeError):
            ok = False
        if not ok:
            checker.add(rel, 'parameters["xgrammar_tokenizer_info_path"]',
                        f"{info!r}: {local} is not an xgrammar tokenizer info file (JSON with encoded_vocab, "
                        "tokenizer_str, stop_token_ids)", "regenerate with glmtrt repo --guided-decoding xgrammar")


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
