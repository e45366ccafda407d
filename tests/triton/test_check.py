"""`glmtrt repo --check` catches each defect planted in a copy of a good repository and names
the file, the field and the fix."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from glmtrt.cli import main
from glmtrt.tokenizer.tiny import make_tiny_chatglm3_tokenizer
from glmtrt.triton.check import check_repository, format_problems
from glmtrt.triton.generator import RepoOptions, generate_repository


def _engine(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    (path / "rank0.engine").write_bytes(b"fake")
    (path / "manifest.json").write_text(json.dumps({
        "kind": "trtllm-engine", "profile": "test", "toolchain": {"tensorrt_llm": "1.2.0"},
        "build": {"max_batch_size": 8, "max_input_len": 512, "max_seq_len": 1024, "max_beam_width": 1,
                  "tp_size": 1, "pp_size": 1, "use_paged_context_fmha": True}}))
    return path


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("good")
    tok = make_tiny_chatglm3_tokenizer(base / "tok")
    return generate_repository(RepoOptions(source=_engine(base / "engine"), tokenizer=tok, output=base / "repo"))


@pytest.fixture
def repo(good, tmp_path) -> Path:
    dst = tmp_path / "repo"
    shutil.copytree(good, dst)
    return dst


def _edit(repo: Path, model: str, old: str, new: str, count: int = 1) -> None:
    path = repo / model / "config.pbtxt"
    text = path.read_text()
    assert text.count(old) >= 1, f"{old!r} not in {model}"
    path.write_text(text.replace(old, new, count))


def _expect(repo: Path, file: str, field: str, fix_word: str = "") -> None:
    problems = check_repository(repo)
    hits = [p for p in problems if p.file == file and field in p.field]
    assert hits, f"no problem for {file} {field}; got:\n{format_problems(problems)}"
    if fix_word:
        assert any(fix_word in p.fix for p in hits), format_problems(hits)


def test_good_repository_has_no_problem(good):
    assert check_repository(good) == []


def test_wrong_dtype(repo):
    _edit(repo, "tensorrt_llm", '{ name: "input_lengths"  data_type: TYPE_INT32', '{ name: "input_lengths"  data_type: TYPE_INT64')
    _expect(repo, "tensorrt_llm/config.pbtxt", 'input["input_lengths"].data_type', "TYPE_INT32")
    _expect(repo, "ensemble/config.pbtxt", 'step[1].input_map["input_lengths"]', "TYPE_INT64")


def test_required_tensor_missing_from_ensemble_mapping(repo):
    _edit(repo, "ensemble", 'input_map { key: "input_lengths"  value: "_REQUEST_INPUT_LEN" }', "")
    _expect(repo, "ensemble/config.pbtxt", "step[1].input_map", "input_lengths")


def test_ensemble_maps_unknown_tensor(repo):
    _edit(repo, "ensemble", 'value: "_INPUT_ID" }\n      input_map { key: "input_lengths"',
          'value: "_INPUT_IDS" }\n      input_map { key: "input_lengths"')
    _expect(repo, "ensemble/config.pbtxt", 'step[1].input_map["input_ids"]', "previous step")


def test_ensemble_maps_into_input_the_model_lacks(repo):
    _edit(repo, "ensemble", 'key: "runtime_top_k"', 'key: "top_k"')
    _expect(repo, "ensemble/config.pbtxt", 'step[1].input_map["top_k"]', "declared")


def test_ensemble_output_type_mismatch(repo):
    _edit(repo, "ensemble", '{ name: "text_output"  data_type: TYPE_STRING', '{ name: "text_output"  data_type: TYPE_INT32')
    _expect(repo, "ensemble/config.pbtxt", 'output["text_output"]', "TYPE_STRING")


def test_max_batch_size_mismatch(repo):
    _edit(repo, "postprocessing", "max_batch_size: 8", "max_batch_size: 4")
    _expect(repo, "postprocessing/config.pbtxt", "max_batch_size", "8")


def test_max_batch_size_above_engine(repo):
    for m in ("ensemble", "preprocessing", "tensorrt_llm", "postprocessing", "tensorrt_llm_bls"):
        _edit(repo, m, "max_batch_size: 8", "max_batch_size: 32")
    man = json.loads((repo / "glmtrt_repo.json").read_text())
    man["limits"]["max_batch_size"] = 32
    (repo / "glmtrt_repo.json").write_text(json.dumps(man))
    _expect(repo, "tensorrt_llm/config.pbtxt", "max_batch_size", "<= 8")


def test_leftover_placeholder_in_string(repo):
    _edit(repo, "tensorrt_llm", 'string_value: "0.9"', 'string_value: "${kv_cache_free_gpu_mem_fraction}"')
    problems = check_repository(repo)
    hit = [p for p in problems if p.file == "tensorrt_llm/config.pbtxt" and "placeholder" in p.message]
    assert hit and re.match(r"line \d+ \(string_value\)", hit[0].field), format_problems(problems)
    assert "${kv_cache_free_gpu_mem_fraction}" in hit[0].message


def test_leftover_placeholder_in_integer_field(repo):
    _edit(repo, "preprocessing", "max_batch_size: 8", "max_batch_size: ${triton_max_batch_size}")
    _expect(repo, "preprocessing/config.pbtxt", "(max_batch_size)", "regenerate")


def test_decoupled_false_while_repository_streams(repo):
    _edit(repo, "tensorrt_llm", "decoupled: true", "decoupled: false")
    _expect(repo, "tensorrt_llm/config.pbtxt", "model_transaction_policy.decoupled", "decoupled: true")


def test_bad_engine_dir(repo, tmp_path):
    text = (repo / "tensorrt_llm" / "config.pbtxt").read_text()
    old = re.search(r'key: "gpt_model_path"  value: \{ string_value: "([^"]+)"', text).group(1)
    _edit(repo, "tensorrt_llm", old, str(tmp_path / "no-such-engine"))
    _expect(repo, "tensorrt_llm/config.pbtxt", 'parameters["gpt_model_path"]', "engine")


def test_engine_rebuilt_after_generation(good, repo):
    text = (repo / "tensorrt_llm" / "config.pbtxt").read_text()
    eng = Path(re.search(r'key: "gpt_model_path"  value: \{ string_value: "([^"]+)"', text).group(1))
    copy = repo.parent / "engine2"
    shutil.copytree(eng, copy)
    m = json.loads((copy / "manifest.json").read_text())
    m["build"]["max_input_len"] = 256
    (copy / "manifest.json").write_text(json.dumps(m))
    _edit(repo, "tensorrt_llm", str(eng), str(copy))
    _expect(repo, "glmtrt_repo.json", "engine.manifest_sha256", "regenerate")
    _expect(repo, "glmtrt_repo.json", "limits.max_input_len")
    _expect(repo, "preprocessing/config.pbtxt", 'parameters["max_input_len"]', "256")


def test_unknown_backend(repo):
    _edit(repo, "tensorrt_llm", 'backend: "tensorrtllm"', 'backend: "tensorrt"')
    _expect(repo, "tensorrt_llm/config.pbtxt", "backend", 'backend: "tensorrtllm"')


def test_syntax_error_is_reported_with_position(repo):
    _edit(repo, "postprocessing", "max_batch_size: 8", "max_batch: 8")
    problems = check_repository(repo)
    hit = [p for p in problems if p.file == "postprocessing/config.pbtxt" and p.field == "(syntax)"]
    assert hit and "max_batch" in hit[0].message, format_problems(problems)
    # and the ensemble step that uses the unparsable model is reported too
    _expect(repo, "ensemble/config.pbtxt", "step[2].model_name")


def test_empty_dims(repo):
    _edit(repo, "postprocessing", '{ name: "OUTPUT"  data_type: TYPE_STRING  dims: [ -1 ] }',
          '{ name: "OUTPUT"  data_type: TYPE_STRING }')
    _expect(repo, "postprocessing/config.pbtxt", 'output["OUTPUT"].dims', "dims")


def test_bad_parameter_values(repo):
    _edit(repo, "tensorrt_llm", 'string_value: "guaranteed_no_evict"', 'string_value: "fifo"')
    _edit(repo, "tensorrt_llm", 'key: "exclude_input_in_output"  value: { string_value: "true"',
          'key: "exclude_input_in_output"  value: { string_value: "yes please"')
    _edit(repo, "tensorrt_llm", 'key: "max_beam_width"  value: { string_value: "1"', 'key: "max_beam_width"  value: { string_value: "4"')
    _expect(repo, "tensorrt_llm/config.pbtxt", 'parameters["batch_scheduler_policy"]', "max_utilization")
    _expect(repo, "tensorrt_llm/config.pbtxt", 'parameters["exclude_input_in_output"]', '"true"')
    _expect(repo, "tensorrt_llm/config.pbtxt", 'parameters["max_beam_width"]', "max_beam_width")


def test_missing_tokenizer(repo):
    (repo / "preprocessing" / "tokenizer" / "tokenizer.model").unlink()
    _expect(repo, "postprocessing/config.pbtxt", 'parameters["tokenizer_dir"]', "preprocessing/tokenizer")
    _expect(repo, "preprocessing/tokenizer/tokenizer.model", "(file)")


def test_stray_root_directory(repo):
    (repo / "tokenizer").mkdir()
    _expect(repo, "tokenizer/", "(directory)", "inside a model dir")


def test_missing_model_and_shim(repo):
    shutil.rmtree(repo / "postprocessing")
    (repo / "preprocessing" / "1" / "model.py").unlink()
    _expect(repo, "postprocessing/config.pbtxt", "(file)")
    _expect(repo, "ensemble/config.pbtxt", "step[2].model_name")
    _expect(repo, "preprocessing/1/model.py", "(file)")


def test_name_and_extra_tensor(repo):
    _edit(repo, "preprocessing", 'name: "preprocessing"', 'name: "pre"')
    _edit(repo, "postprocessing", "output [\n", 'output [\n  { name: "EXTRA"  data_type: TYPE_FP32  dims: [ 1 ] },\n')
    _expect(repo, "preprocessing/config.pbtxt", "name", '"preprocessing"')
    _expect(repo, "postprocessing/config.pbtxt", 'output["EXTRA"]', "remove")


def test_missing_repo_manifest(repo):
    (repo / "glmtrt_repo.json").unlink()
    _expect(repo, "glmtrt_repo.json", "(file)", "glmtrt repo")


def test_cli_check_exits_2_and_names_file_and_field(repo):
    _edit(repo, "tensorrt_llm", "decoupled: true", "decoupled: false")
    res = CliRunner().invoke(main, ["repo", "--check", str(repo)])
    assert res.exit_code == 2
    assert "tensorrt_llm/config.pbtxt: model_transaction_policy.decoupled" in res.output and "fix:" in res.output


def test_instance_groups(repo):
    # the ensemble's postprocessing keeps per-request stream state in its process: one instance
    _edit(repo, "postprocessing", "count: 1  kind: KIND_CPU", "count: 2  kind: KIND_CPU")
    # the tensorrtllm backend places the engine itself: one KIND_CPU instance (upstream
    # tensorrt_llm/config.pbtxt); KIND_GPU would start one executor per visible GPU
    _edit(repo, "tensorrt_llm", "count: 1  kind: KIND_CPU", "count: 1  kind: KIND_GPU")
    _expect(repo, "postprocessing/config.pbtxt", "instance_group", "count: 1")
    _expect(repo, "tensorrt_llm/config.pbtxt", "instance_group", "KIND_CPU")
