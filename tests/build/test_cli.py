"""`glmtrt plan` / `glmtrt build` through the CLI (dry runs; no TensorRT-LLM here)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from glmtrt.build.manifest import EngineManifest, read_engine_manifest, write_engine_manifest
from glmtrt.cli import main

SHARED = Path(__file__).parents[2].parent / "shared" / "models"


def _run(*args):
    return CliRunner().invoke(main, list(map(str, args)))


def test_build_dry_run_prints_plan_and_command(tiny_ckpts, tmp_path):
    r = _run("build", tiny_ckpts["int8wo-tp2"], "-o", tmp_path / "eng", "--gpu", "rtx4090", "--dry-run",
             "--max-seq-len", "256", "--max-batch-size", "4")
    assert r.exit_code == 0, r.output
    assert "FITS" in r.output and "trtllm-build --checkpoint_dir" in r.output
    assert "--max_seq_len 256" in r.output and "--max_batch_size 4" in r.output
    assert "--use_fused_mlp disable" in r.output          # int8-wo: trtllm-build drops fused MLP anyway
    assert "rtx4090-trtllm-1.2.1.cache" in r.output
    assert not (tmp_path / "eng").exists()


def test_build_errors(tiny_ckpts, tmp_path):
    r = _run("build", tiny_ckpts["int8wo-tp2"], "-o", tmp_path / "e", "--gpu", "rtx4090", "--tp", "1")
    assert r.exit_code == 2 and "converted with tp_size=2" in r.output
    r = _run("build", tiny_ckpts["fp16"], "-o", tmp_path / "e", "--gpu", "h200")
    assert r.exit_code == 2 and "one of: rtx4090, t4" in r.output
    r = _run("build", tiny_ckpts["bf16"], "-o", tmp_path / "e", "--gpu", "t4", "--dry-run")
    assert r.exit_code == 2 and "precision bf16 is not supported on t4" in r.output


@pytest.mark.skipif(shutil.which("trtllm-build") is not None, reason="TensorRT-LLM is installed here")
def test_build_without_trtllm_gives_container_command(tiny_ckpts, tmp_path):
    r = _run("build", tiny_ckpts["fp16"], "-o", tmp_path / "e", "--gpu", "t4")
    assert r.exit_code == 2
    assert "trtllm-build is not installed" in r.output
    assert "docker run" in r.output and "tritonserver:24.09-trtllm-python-py3" in r.output
    assert not (tmp_path / "e").exists()


def test_plan_json_on_checkpoint(tiny_ckpts):
    r = _run("plan", tiny_ckpts["fp16"], "--gpu", "t4", "--json", "--max-seq-len", "512")
    assert r.exit_code == 0, r.output
    body = json.loads(r.output[r.output.index("{"):])
    assert body["fits"] and body["precision"] == "fp16" and body["kv_bytes_per_token"] == 2 * 2 * 2 * 16 * 2


@pytest.mark.skipif(not (SHARED / "chatglm3-6b" / "config.json").is_file(), reason="../shared/models absent")
def test_plan_real_chatglm3_config_on_t4():
    r = _run("plan", SHARED / "chatglm3-6b", "--gpu", "t4", "--precision", "fp16", "--max-seq-len", "8192")
    assert r.exit_code == 2 and "DOES NOT FIT" in r.output and "--precision int8-wo" in r.output
    r = _run("plan", SHARED / "chatglm3-6b", "--gpu", "t4", "--precision", "int8-wo", "--max-seq-len", "8192")
    assert r.exit_code == 0 and "FITS" in r.output and "28672 B (28 KiB)" in r.output


def test_engine_manifest_roundtrip(tiny_ckpts, tmp_path):
    from glmtrt.build.engine import engine_manifest, prepare_build
    from glmtrt.build.planner import Workload

    job = prepare_build(tiny_ckpts["fp16"], tmp_path / "e", "t4", workload=Workload(2, 128))
    m = engine_manifest(job, {"rank0.engine": {"sha256": "ab", "bytes": 1}})
    write_engine_manifest(tmp_path, m)
    back = read_engine_manifest(tmp_path)
    assert back == m
    d = json.loads((tmp_path / "manifest.json").read_text())
    assert d["kind"] == "trtllm-engine" and d["toolchain"]["tensorrt_llm"] == "0.13.0"
    assert d["build"]["max_seq_len"] == 128 and d["build"]["paged_kv_cache"] is True
    assert d["checkpoint"]["manifest_sha256"] == job.checkpoint.manifest_sha256
    assert d["command"][0] == "trtllm-build" and d["model"]["chatglm_version"] == "chatglm3"
    with pytest.raises(Exception, match="incomplete"):
        EngineManifest.from_dict({"kind": "trtllm-engine"})
