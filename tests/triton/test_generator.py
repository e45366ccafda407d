"""`glmtrt repo`: repository generation from a (fake) engine dir and from a checkpoint (CPU stand-in).

Expected tensor facts are those of TensorRT-LLM 1.2.x
triton_backend/all_models/inflight_batcher_llm/{ensemble,preprocessing,tensorrt_llm,postprocessing,
tensorrt_llm_bls}/config.pbtxt and, for the T4 toolchain, tensorrtllm_backend v0.13.0
all_models/inflight_batcher_llm/tensorrt_llm/config.pbtxt; the launch facts come from
tensorrtllm_backend scripts/launch_triton_server.py.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from glmtrt.cli import main
from glmtrt.errors import GlmtrtError
from glmtrt.tokenizer.tiny import make_tiny_chatglm3_tokenizer
from glmtrt.triton.check import check_repository, parse_config
from glmtrt.triton.generator import MODELS, RepoOptions, generate_repository
from glmtrt.triton.launch import launch_command


def make_engine(path: Path, *, tp: int = 2, toolchain: str = "1.2.0", paged_fmha: bool = True, **build) -> Path:
    """A fake engine dir: manifest.json (docs/INTERFACES.md section 4), config.json, rank*.engine."""
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    for r in range(tp):
        (path / f"rank{r}.engine").write_bytes(b"not a real engine")
    b = {"max_batch_size": 16, "max_input_len": 1024, "max_seq_len": 2048, "max_num_tokens": 4096,
         "max_beam_width": 1, "tp_size": tp, "pp_size": 1, "dtype": "float16", "paged_kv_cache": True,
         "use_paged_context_fmha": paged_fmha, **build}
    (path / "manifest.json").write_text(json.dumps({
        "kind": "trtllm-engine", "profile": "test", "toolchain": {"tensorrt_llm": toolchain},
        "checkpoint": {"dir": "x", "manifest_sha256": "0"}, "build": b, "command": [], "model": {}}))
    return path


def make_checkpoint(path: Path, *, max_pos: int = 512) -> Path:
    """A fake TensorRT-LLM checkpoint dir (only what the generator reads)."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"architecture": "ChatGLMForCausalLM", "max_position_embeddings": max_pos,
                                                  "mapping": {"world_size": 1, "tp_size": 1, "pp_size": 1}}))
    (path / "rank0.safetensors").write_bytes(b"weights")
    (path / "manifest.json").write_text(json.dumps({"kind": "trtllm-checkpoint", "trtllm_target": "1.2.0"}))
    return path


@pytest.fixture(scope="module")
def tok(tmp_path_factory) -> Path:
    return make_tiny_chatglm3_tokenizer(tmp_path_factory.mktemp("tok"))


def _cfgs(repo: Path) -> dict:
    return {m: parse_config((repo / m / "config.pbtxt").read_text(encoding="utf-8")) for m in MODELS}


def _io(cfg, kind="input"):
    return {t.name: t for t in getattr(cfg, kind)}


def _params(cfg):
    return {k: v.string_value for k, v in cfg.parameters.items()}


def test_gpu_repository_values_come_from_the_engine_manifest(tmp_path, tok):
    eng = make_engine(tmp_path / "eng", tp=2)
    repo = generate_repository(RepoOptions(source=eng, tokenizer=tok, output=tmp_path / "repo", max_batch_size=8))
    assert check_repository(repo) == []
    cfgs = _cfgs(repo)
    for m, cfg in cfgs.items():
        assert cfg.name == m and cfg.max_batch_size == 8
        assert "${" not in (repo / m / "config.pbtxt").read_text()
    trt = cfgs["tensorrt_llm"]
    p = _params(trt)
    assert trt.backend == "tensorrtllm" and trt.model_transaction_policy.decoupled
    assert p["gpt_model_type"] == "inflight_fused_batching"
    assert p["gpt_model_path"] == str(eng.resolve())
    assert p["batch_scheduler_policy"] == "guaranteed_no_evict"
    assert p["kv_cache_free_gpu_mem_fraction"] == "0.9"
    assert p["exclude_input_in_output"] == "true"
    assert p["enable_chunked_context"] == "true"  # engine has paged context FMHA
    assert p["max_beam_width"] == "1"
    assert list(trt.dynamic_batching.preferred_batch_size) == [8]
    assert cfgs["tensorrt_llm_bls"].model_transaction_policy.decoupled
    assert cfgs["tensorrt_llm_bls"].instance_group[0].count == 8
    for m in ("preprocessing", "postprocessing", "tensorrt_llm_bls"):
        assert cfgs[m].backend == "python"
        assert _params(cfgs[m])["tokenizer_dir"] == "preprocessing/tokenizer"
        assert "from glmtrt.triton.pymodels." in (repo / m / "1" / "model.py").read_text()
    assert (repo / "preprocessing" / "tokenizer" / "tokenizer.model").read_bytes() == (tok / "tokenizer.model").read_bytes()
    assert not (repo / "tensorrt_llm" / "1" / "model.py").exists()
    assert sorted(p.name for p in repo.iterdir() if p.is_dir()) == sorted(MODELS)
    man = json.loads((repo / "glmtrt_repo.json").read_text())
    assert man["engine"]["kind"] == "gpu" and man["engine"]["world_size"] == 2
    assert man["limits"]["max_batch_size"] == 8 and man["limits"]["engine_max_batch_size"] == 16
    assert man["limits"]["max_input_len"] == 1024 and man["limits"]["max_seq_len"] == 2048
    assert man["tokenizer"]["kind"] == "chatglm3" and man["tokenizer"]["eos_id"] == 2
    assert len(man["tokenizer"]["stop_ids"]) == 3 and man["trtllm_contract"] == "1.2"
    script = (repo / "launch_triton.sh").read_text()
    assert script.count("shm-region-prefix-name=prefix") == 2 and "mpirun" in script


def test_kv_fraction_comes_from_the_engine_plan(tmp_path, tok):
    eng = make_engine(tmp_path / "e", tp=1)
    m = json.loads((eng / "manifest.json").read_text())
    m["plan"] = {"kv_cache_free_gpu_mem_fraction": 0.85, "kv_tokens": 12000}
    (eng / "manifest.json").write_text(json.dumps(m))
    repo = generate_repository(RepoOptions(source=eng, tokenizer=tok, output=tmp_path / "r"))
    assert _params(_cfgs(repo)["tensorrt_llm"])["kv_cache_free_gpu_mem_fraction"] == "0.85"
    repo = generate_repository(RepoOptions(source=eng, tokenizer=tok, output=tmp_path / "r2",
                                           kv_cache_free_gpu_mem_fraction=0.5))
    assert _params(_cfgs(repo)["tensorrt_llm"])["kv_cache_free_gpu_mem_fraction"] == "0.5"


def test_tensor_contract_matches_trtllm_1_2(tmp_path, tok):
    repo = generate_repository(RepoOptions(source=make_engine(tmp_path / "e", tp=1), tokenizer=tok, output=tmp_path / "r"))
    cfgs = _cfgs(repo)
    trt_in, trt_out = _io(cfgs["tensorrt_llm"]), _io(cfgs["tensorrt_llm"], "output")
    expect = {"input_ids": ("TYPE_INT32", [-1]), "input_lengths": ("TYPE_INT32", [1]),
              "request_output_len": ("TYPE_INT32", [1]), "stop_words_list": ("TYPE_INT32", [2, -1]),
              "bad_words_list": ("TYPE_INT32", [2, -1]), "end_id": ("TYPE_INT32", [1]), "seed": ("TYPE_UINT64", [1]),
              "min_tokens": ("TYPE_INT32", [1]), "streaming": ("TYPE_BOOL", [1]), "runtime_top_p": ("TYPE_FP32", [1]),
              "embedding_bias": ("TYPE_FP32", [-1])}
    from tritonclient.grpc import model_config_pb2 as pb

    for name, (dt, dims) in expect.items():
        assert pb.DataType.Name(trt_in[name].data_type) == dt and list(trt_in[name].dims) == dims, name
    assert list(trt_in["input_lengths"].reshape.shape) == [] and trt_in["input_lengths"].HasField("reshape")
    assert not trt_in["input_lengths"].optional and trt_in["input_ids"].optional and trt_in["input_ids"].allow_ragged_batch
    assert list(trt_out["output_ids"].dims) == [-1, -1] and list(trt_out["generation_logits"].dims) == [-1, -1, -1]
    pre_out = _io(cfgs["preprocessing"], "output")
    assert list(pre_out["REQUEST_OUTPUT_LEN"].dims) == [-1] and list(pre_out["STOP_WORDS_IDS"].dims) == [2, -1]
    assert set(_io(cfgs["postprocessing"])) == {"TOKENS_BATCH", "SEQUENCE_LENGTH"}
    ens_in, bls_in = _io(cfgs["ensemble"]), _io(cfgs["tensorrt_llm_bls"])
    assert set(ens_in) == set(bls_in) and {"text_input", "max_tokens", "stream", "stop_words"} <= set(ens_in)
    steps = {s.model_name: s for s in cfgs["ensemble"].ensemble_scheduling.step}
    assert steps["tensorrt_llm"].input_map["streaming"] == "stream"
    assert steps["postprocessing"].output_map["OUTPUT"] == "text_output"


def test_t4_toolchain_uses_0_13_names_engine_and_client_side(tmp_path, tok):
    # tensorrtllm_backend v0.13.0 all_models/inflight_batcher_llm/{tensorrt_llm,ensemble,tensorrt_llm_bls}/
    # config.pbtxt: `min_length` / `random_seed` in all three (a client written for upstream 0.13 sends
    # these); TensorRT-LLM 1.2.x triton_backend/all_models/...: `min_tokens` / `seed` in all three.
    eng = make_engine(tmp_path / "e", tp=1, toolchain="0.13.0", paged_fmha=False)
    repo = generate_repository(RepoOptions(source=eng, tokenizer=tok, output=tmp_path / "r"))
    cfgs = _cfgs(repo)
    trt_in = _io(cfgs["tensorrt_llm"])
    assert "min_length" in trt_in and "random_seed" in trt_in and "seed" not in trt_in
    for client_model in ("ensemble", "tensorrt_llm_bls"):
        got = _io(cfgs[client_model])
        assert {"min_length", "random_seed"} <= set(got) and not {"min_tokens", "seed"} & set(got), client_model
    step = [s for s in cfgs["ensemble"].ensemble_scheduling.step if s.model_name == "tensorrt_llm"][0]
    assert step.input_map["random_seed"] == "random_seed" and step.input_map["min_length"] == "min_length"
    assert _params(cfgs["tensorrt_llm"])["enable_chunked_context"] == "false"
    assert json.loads((repo / "glmtrt_repo.json").read_text())["trtllm_contract"] == "0.13"
    assert check_repository(repo) == []


@pytest.mark.parametrize("opts, match", [
    ({"max_batch_size": 32}, "max_batch_size 16"),
    ({"kv_cache_free_gpu_mem_fraction": 1.5}, "kv_cache_free_gpu_mem_fraction"),
    ({"batch_scheduler_policy": "fifo"}, "batch scheduler policy"),
    ({"engine": "tpu"}, "--engine"),
])
def test_bad_options_are_refused(tmp_path, tok, opts, match):
    eng = make_engine(tmp_path / "e", tp=1)
    with pytest.raises(GlmtrtError, match=match):
        generate_repository(RepoOptions(source=eng, tokenizer=tok, output=tmp_path / "r", **opts))
    assert not (tmp_path / "r").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["e"]  # no temp dir left behind


def test_chunked_context_needs_paged_context_fmha(tmp_path, tok):
    eng = make_engine(tmp_path / "e", tp=1, paged_fmha=False)
    with pytest.raises(GlmtrtError, match="paged context FMHA"):
        generate_repository(RepoOptions(source=eng, tokenizer=tok, output=tmp_path / "r", enable_chunked_context=True))


def test_incomplete_engine_and_wrong_kind(tmp_path, tok):
    eng = make_engine(tmp_path / "e", tp=2)
    (eng / "rank1.engine").unlink()
    with pytest.raises(GlmtrtError, match="rank1.engine"):
        generate_repository(RepoOptions(source=eng, tokenizer=tok, output=tmp_path / "r"))
    ck = make_checkpoint(tmp_path / "ck")
    with pytest.raises(GlmtrtError, match="--engine reference"):
        generate_repository(RepoOptions(source=ck, tokenizer=tok, output=tmp_path / "r"))


def test_existing_output_needs_force(tmp_path, tok):
    eng = make_engine(tmp_path / "e", tp=1)
    out = tmp_path / "r"
    generate_repository(RepoOptions(source=eng, tokenizer=tok, output=out, max_batch_size=4))
    with pytest.raises(GlmtrtError, match="already exists"):
        generate_repository(RepoOptions(source=eng, tokenizer=tok, output=out))
    generate_repository(RepoOptions(source=eng, tokenizer=tok, output=out, force=True, decoupled=False))
    cfgs = _cfgs(out)
    assert cfgs["ensemble"].max_batch_size == 16 and not cfgs["tensorrt_llm"].model_transaction_policy.decoupled
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e", "r"]


def test_reference_repository(tmp_path, tok):
    ck = make_checkpoint(tmp_path / "ck", max_pos=512)
    repo = generate_repository(RepoOptions(source=ck, tokenizer=tok, output=tmp_path / "r", engine="reference",
                                           max_batch_size=4, max_input_len=100, max_seq_len=300))
    assert check_repository(repo) == []
    cfgs = _cfgs(repo)
    trt = cfgs["tensorrt_llm"]
    p = _params(trt)
    assert trt.backend == "python" and trt.model_transaction_policy.decoupled
    assert p["checkpoint_dir"] == str(ck.resolve()) and p["engine_kind"] == "reference"
    assert p["max_input_len"] == "100" and p["max_seq_len"] == "300"
    assert "reference_engine import TritonPythonModel" in (repo / "tensorrt_llm" / "1" / "model.py").read_text()
    assert "NOT for production" in (repo / "tensorrt_llm" / "config.pbtxt").read_text()
    # the stand-in has exactly the tensor contract of the engine model
    gpu = generate_repository(RepoOptions(source=make_engine(tmp_path / "e", tp=1), tokenizer=tok, output=tmp_path / "g"))
    g = _cfgs(gpu)["tensorrt_llm"]
    for kind in ("input", "output"):
        sig = [(t.name, t.data_type, list(t.dims), kind == "input" and t.optional) for t in getattr(trt, kind)]
        assert sig == [(t.name, t.data_type, list(t.dims), kind == "input" and t.optional) for t in getattr(g, kind)]
    man = json.loads((repo / "glmtrt_repo.json").read_text())
    assert man["engine"]["kind"] == "reference" and man["engine"]["world_size"] == 1 and not man["engine"]["copied"]
    assert not (repo / "launch_triton.sh").exists()


def test_reference_copy_checkpoint_and_limits(tmp_path, tok):
    ck = make_checkpoint(tmp_path / "ck", max_pos=512)
    repo = generate_repository(RepoOptions(source=ck, tokenizer=tok, output=tmp_path / "r", engine="reference",
                                           copy_checkpoint=True))
    assert _params(_cfgs(repo)["tensorrt_llm"])["checkpoint_dir"] == "tensorrt_llm/checkpoint"
    assert (repo / "tensorrt_llm" / "checkpoint" / "rank0.safetensors").read_bytes() == b"weights"
    man = json.loads((repo / "glmtrt_repo.json").read_text())
    assert man["limits"]["max_seq_len"] == 512 and man["limits"]["max_input_len"] == 256 and man["engine"]["copied"]
    assert check_repository(repo) == []
    with pytest.raises(GlmtrtError, match="max_position_embeddings"):
        generate_repository(RepoOptions(source=ck, tokenizer=tok, output=tmp_path / "x", engine="reference",
                                        max_seq_len=4096))


def test_launch_command_follows_upstream_multi_rank_launch():
    one = launch_command("/repo", 1)
    assert one[0].endswith("tritonserver") and "mpirun" not in one and ":" not in one
    four = launch_command("/repo", 4, http_port=9000)
    assert four[:2] == ["mpirun", "--allow-run-as-root"] and four.count(":") == 3 and four.count("-n") == 4
    ranks = " ".join(four).split(" : ")
    assert "--load-model" not in ranks[0] and all("--load-model=tensorrt_llm" in r for r in ranks[1:])
    assert all(f"prefix{i}_" in r and "--http-port=9000" in r for i, r in enumerate(ranks))
    with pytest.raises(GlmtrtError):
        launch_command("/repo", 0)


def test_cli_generate_check_and_launch(tmp_path, tok):
    eng = make_engine(tmp_path / "e", tp=2)
    out = tmp_path / "repo"
    runner = CliRunner()
    res = runner.invoke(main, ["repo", str(eng), "--tokenizer", str(tok), "-o", str(out), "--max-batch-size", "16",
                               "--decoupled"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["repo", "--check", str(out)])
    assert res.exit_code == 0 and "OK" in res.output
    res = runner.invoke(main, ["repo", "--print-launch", str(out)])
    assert res.exit_code == 0 and res.output.startswith("mpirun --allow-run-as-root -n 1")
    res = runner.invoke(main, ["repo", str(eng), "-o", str(tmp_path / "x")])
    assert res.exit_code == 2 and "--tokenizer" in res.output


def test_cli_reference_with_real_chatglm3_tokenizer(tmp_path):
    from tests.conftest import shared_model

    tokdir = shared_model("chatglm3-6b")
    ck = make_checkpoint(tmp_path / "ck")
    res = CliRunner().invoke(main, ["repo", str(ck), "--engine", "reference", "--tokenizer", str(tokdir),
                                    "-o", str(tmp_path / "r"), "--no-decoupled"])
    assert res.exit_code == 0, res.output
    man = json.loads((tmp_path / "r" / "glmtrt_repo.json").read_text())
    assert man["tokenizer"]["stop_ids"][:3] == [2, 64795, 64797] and man["decoupled"] is False
    res = CliRunner().invoke(main, ["repo", "--print-launch", str(tmp_path / "r")])
    assert res.exit_code == 2 and "glmtrt serve" in res.output


def test_t4_engine_model_matches_the_0_13_contract(tmp_path, tok):
    # tensorrtllm_backend v0.13.0 all_models/inflight_batcher_llm/tensorrt_llm/config.pbtxt: no
    # `exclude_input_in_output` input tensor (added in v0.14.0; in 0.13 it is only the model
    # parameter, read in inflight_batcher_llm/src/model_instance_state.cc) and `input_ids` is not
    # optional (optional from v0.15.0). Declaring the tensor would let a T4 client's value be
    # silently ignored by the 0.13 backend.
    eng = make_engine(tmp_path / "e", tp=1, toolchain="0.13.0", paged_fmha=False)
    repo = generate_repository(RepoOptions(source=eng, tokenizer=tok, output=tmp_path / "r"))
    cfgs = _cfgs(repo)
    trt_in = _io(cfgs["tensorrt_llm"])
    assert "exclude_input_in_output" not in trt_in and not trt_in["input_ids"].optional
    assert "exclude_input_in_output" not in _io(cfgs["ensemble"])
    assert "exclude_input_in_output" not in _io(cfgs["tensorrt_llm_bls"])
    step = [s for s in cfgs["ensemble"].ensemble_scheduling.step if s.model_name == "tensorrt_llm"][0]
    assert "exclude_input_in_output" not in step.input_map
    assert _params(cfgs["tensorrt_llm"])["exclude_input_in_output"] == "true"  # the model parameter stays
    from glmtrt.triton.pymodels.bls import engine_tensor_names

    names = engine_tensor_names(repo / "tensorrt_llm" / "config.pbtxt")  # what the BLS sends
    assert "exclude_input_in_output" not in names and names["random_seed"] == "random_seed" and "seed" not in names
    assert check_repository(repo) == []
    # 1.2.x keeps both (TensorRT-LLM 1.2.x triton_backend/.../tensorrt_llm/config.pbtxt)
    eng12 = make_engine(tmp_path / "e12", tp=1)
    cfg12 = _cfgs(generate_repository(RepoOptions(source=eng12, tokenizer=tok, output=tmp_path / "r12")))
    assert "exclude_input_in_output" in _io(cfg12["tensorrt_llm"]) and _io(cfg12["tensorrt_llm"])["input_ids"].optional
    assert engine_tensor_names(tmp_path / "r12" / "tensorrt_llm" / "config.pbtxt")["exclude_input_in_output"] == \
        "exclude_input_in_output"


def test_postprocessing_keeps_one_instance(tmp_path, tok):
    # The ensemble's postprocessing keeps per-request detokenizer state in its process: a second
    # instance (another stub process) would see every other response of a stream and garble it.
    eng = make_engine(tmp_path / "e", tp=1)
    repo = generate_repository(RepoOptions(source=eng, tokenizer=tok, output=tmp_path / "r", python_instances=3))
    cfgs = _cfgs(repo)
    assert cfgs["postprocessing"].instance_group[0].count == 1
    assert cfgs["preprocessing"].instance_group[0].count == 3


# ---- per-release backend parameters and guided decoding (issue 7 item 1) -------------------------
# Pinned from the C++ backend sources: the parameters read with a bare GetParameter (no default,
# no try/catch), whose absence fails the model load with "Cannot find parameter with name: <key>".
#   0.13: tensorrtllm_backend v0.13.0 inflight_batcher_llm/src/model_instance_state.cc
#         getBatchingTypeFromParams (model_state.cc reads everything in try/catch).
#   1.2:  NVIDIA/TensorRT-LLM 1.x triton_backend/inflight_batcher_llm/src/model_instance_state.cc
#         getBatchingTypeFromParams + getGuidedDecodingConfigFromParams (from getExecutorConfigFromParams,
#         called in the ModelInstanceState constructor).
PINNED_REQUIRED = {"0.13": ("gpt_model_type",),
                   "1.2": ("gpt_model_type", "tokenizer_dir", "xgrammar_tokenizer_info_path", "guided_decoding_backend")}


def test_required_backend_parameters_are_pinned_and_written_per_release(tmp_path, tok):
    from glmtrt.triton.contract import REQUIRED_BACKEND_PARAMETERS

    assert REQUIRED_BACKEND_PARAMETERS == PINNED_REQUIRED
    for toolchain, contract in (("1.2.1", "1.2"), ("0.13.0", "0.13")):
        eng = make_engine(tmp_path / f"e{contract}", tp=1, toolchain=toolchain, paged_fmha=False)
        repo = generate_repository(RepoOptions(source=eng, tokenizer=tok, output=tmp_path / f"r{contract}"))
        p = _params(_cfgs(repo)["tensorrt_llm"])
        assert set(PINNED_REQUIRED[contract]) <= set(p), contract
        assert check_repository(repo) == []
    p12 = _params(_cfgs(tmp_path / "r1.2")["tensorrt_llm"])
    # guided decoding off: the explicit unset, never an omitted key
    assert (p12["tokenizer_dir"], p12["guided_decoding_backend"], p12["xgrammar_tokenizer_info_path"]) == ("", "", "")
    assert "guided_decoding_backend" not in _params(_cfgs(tmp_path / "r0.13")["tensorrt_llm"])


@pytest.mark.parametrize("key", PINNED_REQUIRED["1.2"])
def test_check_names_a_missing_required_parameter(tmp_path, tok, key):
    repo = generate_repository(RepoOptions(source=make_engine(tmp_path / "e", tp=1), tokenizer=tok, output=tmp_path / "r"))
    path = repo / "tensorrt_llm" / "config.pbtxt"
    lines = [ln for ln in path.read_text().splitlines() if f'key: "{key}"' not in ln]
    path.write_text("\n".join(lines) + "\n")
    problems = [str(p) for p in check_repository(repo)]
    assert any(f'parameters["{key}"]' in p and "Cannot find parameter" in p for p in problems), problems


def test_guided_decoding_xgrammar_repository(tmp_path, tok):
    from glmtrt.triton.pymodels.bls import engine_tensor_names

    eng = make_engine(tmp_path / "e", tp=1)
    out = tmp_path / "r"
    repo = generate_repository(RepoOptions(source=eng, tokenizer=tok, output=out, guided_decoding="xgrammar"))
    cfgs = _cfgs(repo)
    p = _params(cfgs["tensorrt_llm"])
    info = repo / "tensorrt_llm" / "xgrammar_tokenizer_info.json"
    assert p["guided_decoding_backend"] == "xgrammar" and p["xgrammar_tokenizer_info_path"] == str(info.resolve())
    data = json.loads(info.read_text(encoding="utf-8"))
    assert set(data) == {"encoded_vocab", "tokenizer_str", "stop_token_ids"} and isinstance(data["tokenizer_str"], str)
    guides = {"guided_decoding_guide_type", "guided_decoding_guide"}
    from tritonclient.grpc import model_config_pb2 as pb

    for model in ("tensorrt_llm", "ensemble", "tensorrt_llm_bls"):
        ins = _io(cfgs[model])
        assert guides <= set(ins), model
        assert all(pb.DataType.Name(ins[g].data_type) == "TYPE_STRING" and list(ins[g].dims) == [1] for g in guides)
    step = [s for s in cfgs["ensemble"].ensemble_scheduling.step if s.model_name == "tensorrt_llm"][0]
    assert all(step.input_map[g] == g for g in guides)
    assert guides <= set(engine_tensor_names(repo / "tensorrt_llm" / "config.pbtxt"))
    assert check_repository(repo) == []
    # a server that mounts the repository elsewhere: --repo-path, and glmtrt serve mounts it there
    repo2 = generate_repository(RepoOptions(source=eng, tokenizer=tok, output=tmp_path / "r2", guided_decoding="xgrammar",
                                            repo_path="/models/glm"))
    assert _params(_cfgs(repo2)["tensorrt_llm"])["xgrammar_tokenizer_info_path"] == \
        "/models/glm/tensorrt_llm/xgrammar_tokenizer_info.json"
    assert check_repository(repo2) == []
    from glmtrt.triton.launch import gpu_command

    assert f"{repo2}:/models/glm" in gpu_command(repo2)
    info.unlink()
    assert any("xgrammar_tokenizer_info_path" in str(p) for p in check_repository(repo))


@pytest.mark.parametrize("engine_kind, toolchain", [("gpu", "0.13.0"), ("reference", None)])
def test_guided_decoding_refused_where_the_backend_has_none(tmp_path, tok, engine_kind, toolchain):
    src = make_engine(tmp_path / "e", tp=1, toolchain=toolchain, paged_fmha=False) if engine_kind == "gpu" \
        else make_checkpoint(tmp_path / "c")
    with pytest.raises(GlmtrtError, match="--guided-decoding is not available"):
        generate_repository(RepoOptions(source=src, tokenizer=tok, output=tmp_path / "r", engine=engine_kind,
                                        guided_decoding="xgrammar"))


def test_cli_guided_decoding(tmp_path, tok):
    eng = make_engine(tmp_path / "e", tp=1)
    runner = CliRunner()
    res = runner.invoke(main, ["repo", str(eng), "--tokenizer", str(tok), "-o", str(tmp_path / "r"),
                               "--guided-decoding", "xgrammar", "--repo-path", "/srv/glm"])
    assert res.exit_code == 0, res.output
    assert _params(_cfgs(tmp_path / "r")["tensorrt_llm"])["xgrammar_tokenizer_info_path"] == \
        "/srv/glm/tensorrt_llm/xgrammar_tokenizer_info.json"
    res = runner.invoke(main, ["repo", str(eng), "--tokenizer", str(tok), "-o", str(tmp_path / "r2"),
                               "--guided-decoding", "xgrammar", "--repo-path", "srv/glm"])
    assert res.exit_code == 2 and "relative" in res.output and "Traceback" not in res.output
