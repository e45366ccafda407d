"""int8-sq bad input -> exit 2 with a clear message and no output left; profiles refuse it on T4."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from glmtrt.cli import main


def _run(*args):
    return CliRunner().invoke(main, ["convert", *map(str, args), "--no-progress"])


def _no_output(tmp_path, name="out"):
    return not (tmp_path / name).exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(f".{name}")]


@pytest.mark.parametrize("alpha", ["-0.1", "1.5"])
def test_alpha_outside_unit_interval(tiny_src, tmp_path, alpha):
    res = _run(tiny_src, "-o", tmp_path / "out", "--precision", "int8-sq", "--smoothquant-alpha", alpha)
    assert res.exit_code == 2 and "[0, 1]" in res.output and _no_output(tmp_path)


def test_empty_calibration_file(tiny_src, tmp_path):
    (tmp_path / "c.txt").write_text("\n \n", encoding="utf-8")
    res = _run(tiny_src, "-o", tmp_path / "out", "--precision", "int8-sq", "--calib-data", tmp_path / "c.txt")
    assert res.exit_code == 2 and "no documents" in res.output and _no_output(tmp_path)


def test_non_utf8_calibration_file(tiny_src, tmp_path):
    (tmp_path / "c.txt").write_bytes("你好".encode("gbk"))
    res = _run(tiny_src, "-o", tmp_path / "out", "--precision", "int8-sq", "--calib-data", tmp_path / "c.txt")
    assert res.exit_code == 2 and "not UTF-8" in res.output and _no_output(tmp_path)


def test_fewer_tokens_than_asked(tiny_src, tmp_path):
    (tmp_path / "c.jsonl").write_text(json.dumps({"input_ids": [1, 2, 3]}) + "\n", encoding="utf-8")
    res = _run(tiny_src, "-o", tmp_path / "out", "--precision", "int8-sq", "--calib-data", tmp_path / "c.jsonl",
               "--calib-samples", "2", "--calib-seq-len", "8")
    assert res.exit_code == 2 and "3 tokens, fewer than the 16 asked" in res.output and _no_output(tmp_path)


def test_text_data_without_tokenizer(tiny_src, tmp_path):
    (tmp_path / "c.txt").write_text("hello\n", encoding="utf-8")
    res = _run(tiny_src, "-o", tmp_path / "out", "--precision", "int8-sq", "--calib-data", tmp_path / "c.txt")
    assert res.exit_code == 2 and "tokenizer" in res.output and _no_output(tmp_path)


def test_cli_int8_sq_writes_and_verifies(tiny_src, calib_file, tmp_path):
    res = _run(tiny_src, "-o", tmp_path / "out", "--precision", "int8-sq", "--int8-kv-cache",
               "--calib-data", calib_file, "--calib-samples", "8", "--calib-seq-len", "32")
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["verify", str(tmp_path / "out"), "--hf", str(tiny_src), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["tolerance_key"] == "int8-sq" and report["passed"]
    assert 0 < report["kl"] < 0.05 and report["perplexity_ref"] > 1


@pytest.mark.parametrize("precision", ["int8-sq", "int4-awq", "fp8", "bf16"])
def test_t4_profile_refuses(precision):
    from glmtrt.build.planner import check_supported
    from glmtrt.build.profile import load_profile
    from glmtrt.errors import GlmtrtError

    with pytest.raises(GlmtrtError, match="not supported on t4"):
        check_supported(load_profile("t4"), precision)
    check_supported(load_profile("rtx4090"), precision)


def test_planner_counts_quantized_bytes():
    from glmtrt.build.inputs import dims_from_trtllm_config
    from glmtrt.build.planner import weight_bytes

    cfg = {"num_hidden_layers": 28, "hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 2,
           "intermediate_size": 13696, "vocab_size": 65024}
    dims = dims_from_trtllm_config(cfg, "cg3")
    fp16, sq, awq, wo4 = (weight_bytes(dims, p) for p in ("fp16", "int8-sq", "int4-awq", "int4-wo"))
    lin = dims.linear_params()
    assert sq - weight_bytes(dims, "int8-wo") == dims.linear_out_channels() * 2     # f32 vs f16 scales
    assert awq - wo4 == pytest.approx(lin / 128 * 2 - dims.linear_out_channels() * 2, abs=2)
    assert awq < sq < fp16
