"""glmtrt build (dry run) and plan / inspect for GLM-4.1V: engine class flags, vision engine command."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from glmtrt.cli import main
from glmtrt.models.glm4v.engine import MODEL_FILE
from glmtrt.models.glm4v.vision_build import patch_range


def _run(*args):
    return CliRunner().invoke(main, list(map(str, args)))


@pytest.fixture(scope="module")
def fp16_ckpt(tiny_glm4v, tmp_path_factory):
    from glmtrt.convert.pipeline import convert_checkpoint

    return convert_checkpoint(tiny_glm4v[0], tmp_path_factory.mktemp("b") / "fp16", dtype="float16", progress=False)


@pytest.fixture(scope="module")
def autoglm_config_dir(tmp_path_factory):
    """config.json of a full-size GLM-4.1V / AutoGLM-Phone-9B (transformers' defaults), no weights."""
    from transformers import Glm4vConfig

    d = tmp_path_factory.mktemp("autoglm")
    cfg = {**Glm4vConfig().to_dict(), "architectures": ["Glm4vForConditionalGeneration"]}
    (d / "config.json").write_text(json.dumps(cfg))
    return d


def test_patch_range_autoglm():
    r = patch_range(max_pixels=5_000_000)
    assert r.max == 12752 and r.max_image_tokens == 3188 and r.min == 32
    assert r.min <= r.opt <= r.max and r.opt % 4 == 0


def test_build_dry_run_llm_and_vision(fp16_ckpt, tmp_path):
    r = _run("build", fp16_ckpt, "-o", tmp_path / "eng", "--gpu", "rtx4090", "--dry-run", "--max-seq-len", "4096",
             "--max-images", "2")
    assert r.exit_code == 0, r.output
    assert f"--model_cls_file {MODEL_FILE} --model_cls_name Glm4vForCausalLM" in r.output
    assert f"--checkpoint_dir {fp16_ckpt / 'llm'}" in r.output
    # a full batch (8) of requests with 2 images x 3188 tokens each: the runtime gives a request table / batch rows
    assert "--max_prompt_embedding_table_size 51008" in r.output
    assert "prompt table / GPU" in r.output
    vision = [line for line in r.output.splitlines() if "trtexec" in line]
    assert len(vision) == 1 and "--fp16" in vision[0] and "--onnx=" in vision[0]
    assert "--minShapes=patches:32x1176,pos_grid:32x2,rotary_cos:32x16,rotary_sin:32x16" in vision[0]
    assert "--maxShapes=patches:12752x1176" in vision[0]
    assert not (tmp_path / "eng").exists()


def test_build_refuses_t4(fp16_ckpt, tmp_path):
    r = _run("build", fp16_ckpt, "-o", tmp_path / "e", "--gpu", "t4", "--dry-run")
    assert r.exit_code == 2 and "rtx4090" in r.output


def test_plan_9b_fp16_needs_tp2_or_int8(autoglm_config_dir):
    r = _run("plan", autoglm_config_dir, "--gpu", "rtx4090", "--max-seq-len", "8192", "--json")
    assert r.exit_code == 2 and '"fits": false' in r.output     # FP16 9B + vision tower: not on one 4090
    for extra in (["--tp", "2"], ["--precision", "int8-wo"]):
        r = _run("plan", autoglm_config_dir, "--gpu", "rtx4090", "--max-seq-len", "8192", "--json", *extra)
        assert r.exit_code == 0, r.output
        plan = json.loads(r.output[r.output.index("{"):])
        assert plan["extra_weight_bytes"] > 1.0e9            # the vision tower (~0.9B params) is counted


def test_inspect_glm4v(autoglm_config_dir):
    r = _run("inspect", autoglm_config_dir, "--json")
    assert r.exit_code == 0, r.output
    info = json.loads(r.output[r.output.index("{"):])
    assert info["family"] == "glm4v" and info["layers"] == 40 and info["kv_heads"] == 2
    assert info["vision"]["depth"] == 24 and info["image_token_id"] == 151343
