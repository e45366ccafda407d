"""`glmtrt verify` on Glm4v conversions: text and --image pass; planted bugs fail."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from glmtrt.cli import main
from glmtrt.models.glm4v.rotary import rotary_permutation


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    from PIL import Image

    p = tmp_path_factory.mktemp("img") / "shot.png"
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (120, 84, 3), dtype=np.uint8)).save(p)
    return p


def _verify(ckpt, hf, *extra):
    return CliRunner().invoke(main, ["verify", str(ckpt), "--hf", str(hf), "--json", *extra])


def _report(res):
    return json.loads(res.output[res.output.index("{"):])     # log lines come first


def test_verify_text_and_image_pass(tiny_glm4v, tiny_glm4v_converted, image_file):
    res = _verify(tiny_glm4v_converted, tiny_glm4v[0], "--image", str(image_file))
    assert res.exit_code == 0, res.output
    rep = _report(res)
    assert rep["passed"] and rep["tolerance_key"] == "float32" and len(rep["prompts"]) == 4
    assert rep["max_abs"] <= 1e-4 and rep["truth"] == "Glm4vForConditionalGeneration"


def test_planted_rotary_bug_fails(tiny_glm4v, tiny_glm4v_converted, tmp_path):
    """Un-permuting the q rows of one layer (a converter that forgot the rotary permutation) fails."""
    bad = tmp_path / "bad"
    shutil.copytree(tiny_glm4v_converted, bad)
    path = bad / "llm" / "rank0.safetensors"
    w = load_file(str(path))
    name = "transformer.layers.1.attention.qkv.weight"
    q = w[name][:128].reshape(4, 32, -1)
    inv = torch.argsort(rotary_permutation(32, 16))
    w[name] = torch.cat([q[:, inv].reshape(128, -1), w[name][128:]])
    save_file(w, str(path))
    res = _verify(bad, tiny_glm4v[0])
    assert res.exit_code == 1 and not _report(res)["passed"]


def test_planted_vision_bug_fails_only_with_image(tiny_glm4v, tiny_glm4v_converted, image_file, tmp_path):
    bad = tmp_path / "badvis"
    shutil.copytree(tiny_glm4v_converted, bad)
    path = bad / "vision" / "vision.safetensors"
    w = load_file(str(path))
    w["model.visual.merger.post_projection_norm.bias"] += 0.5
    save_file(w, str(path))
    res = _verify(bad, tiny_glm4v[0], "--image", str(image_file))
    assert res.exit_code == 1, res.output
    text, image = _report(res)["prompts"][:3], _report(res)["prompts"][3]
    assert all(p["max_abs"] <= 1e-4 for p in text) and image["max_abs"] > 1e-3


def test_image_flag_on_a_text_checkpoint(tmp_path, image_file):
    ck = tmp_path / "ck"
    ck.mkdir()
    res = CliRunner().invoke(main, ["verify", str(ck), "--hf", str(tmp_path), "--image", str(image_file)])
    assert res.exit_code == 2 and "GLM-4.1V" in res.output


@pytest.mark.parametrize("dtype,bound", [("float16", 5e-3), ("bfloat16", 5e-2)])
def test_verify_half_precision(tiny_glm4v, image_file, tmp_path, dtype, bound):
    """FP16 / BF16 conversions verify against the FP32 transformers model under their tolerance rows
    (measured: FP16 max-abs 1.5e-3, BF16 1.1e-2; docs/INTERFACES.md section 7)."""
    from glmtrt.convert.pipeline import convert_checkpoint

    out = tmp_path / dtype
    convert_checkpoint(tiny_glm4v[0], out, dtype=dtype, progress=False)
    res = _verify(out, tiny_glm4v[0], "--image", str(image_file))
    assert res.exit_code == 0, res.output
    rep = _report(res)
    assert rep["passed"] and rep["tolerance_key"] == dtype and len(rep["prompts"]) == 4
    assert 0 < rep["max_abs"] <= bound            # half precision really rounds, within the bound
    assert min(p["cosine"] for p in rep["prompts"]) >= rep["tolerance"]["min_cosine"]
