"""verify_checkpoint: passes good conversions, fails broken ones, tolerance table per dtype."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from glmtrt.errors import GlmtrtError
from glmtrt.reference.verify import TOLERANCES, Tolerance, default_prompts, tolerance_for, verify_checkpoint


@pytest.mark.parametrize("fmt,dtype,tp,rope", [
    ("chatglm", "float32", 2, 500.0),
    ("hf-glm", "float32", 1, 1.0),
    ("chatglm", "float16", 2, 1.0),
    ("hf-glm", "bfloat16", 2, 500.0),
])
def test_verify_passes_real_conversions(tiny, fmt, dtype, tp, rope):
    report = verify_checkpoint(tiny.checkpoint(fmt, dtype=dtype, tp=tp, rope_ratio=rope),
                               tiny.source(fmt, rope_ratio=rope))
    assert report.passed, report.format_table()
    assert report.source_format == fmt and report.tp_size == tp
    assert report.checkpoint_dtype == report.compute_dtype == report.tolerance_key == dtype
    assert report.tolerance == TOLERANCES[dtype]
    if dtype == "float32":
        assert report.max_abs <= 1e-4 and report.top1_agreement == 1.0
    else:
        assert report.max_abs > 1e-5          # half precision really was used
    assert len(report.prompts) == 3 and [p.positions for p in report.prompts] == [10, 34, 80]
    table = report.format_table()
    assert "PASS" in table and f"tp={tp}" in table
    json.dumps(report.to_dict())


def test_verify_fails_a_wrong_conversion(tiny, tmp_path):
    """A checkpoint with the swiglu halves left unswapped ([gate; up]) must fail."""
    src_ckpt = tiny.checkpoint()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text((src_ckpt / "config.json").read_text())
    tensors = load_file(str(src_ckpt / "rank0.safetensors"))
    name = "transformer.layers.1.mlp.fc.weight"
    up, gate = tensors[name].chunk(2)
    tensors[name] = torch.cat([gate, up]).contiguous()
    save_file(tensors, str(bad / "rank0.safetensors"))
    report = verify_checkpoint(bad, tiny.source())
    assert not report.passed and report.max_abs > 1e-2
    assert report.format_table().endswith("FAIL")


def test_verify_against_another_model_fails_and_token_prompts(tiny):
    report = verify_checkpoint(tiny.checkpoint(seed=0), tiny.source(seed=1), prompts=[[1, 2, 3, 4]])
    assert not report.passed and report.cosine < 0.9
    assert [p.positions for p in report.prompts] == [8]


def test_float32_compute_over_half_checkpoint_uses_half_tolerance(tiny):
    report = verify_checkpoint(tiny.checkpoint(dtype="float16"), tiny.source(), compute_dtype=None)
    assert report.compute_dtype == "float32" and report.tolerance_key == "float16" and report.passed
    strict = verify_checkpoint(tiny.checkpoint(dtype="float16"), tiny.source(), compute_dtype=None,
                               tolerance=Tolerance(atol=1e-6, rtol=0.0, min_cosine=1.0, min_top1=1.0))
    assert not strict.passed


def test_verify_input_errors(tiny):
    with pytest.raises(GlmtrtError, match="vocab sizes differ"):
        verify_checkpoint(tiny.checkpoint(), tiny.source(vocab_size=130))
    with pytest.raises(GlmtrtError, match="outside"):
        verify_checkpoint(tiny.checkpoint(), tiny.source(), prompts=[[1, 500]])


def test_tolerance_table():
    assert TOLERANCES["float32"].atol == 1e-4 and TOLERANCES["float32"].rtol == 0.0
    assert tolerance_for("float32", "bfloat16")[0] == "bfloat16"
    assert tolerance_for("float16", "float32")[0] == "float16"
    assert tolerance_for("bfloat16", "float16")[0] == "bfloat16"
    assert TOLERANCES["float16"].bound(10.0) < TOLERANCES["bfloat16"].bound(10.0)
    with pytest.raises(GlmtrtError):
        tolerance_for("int8", "float32")
    assert default_prompts(128) == default_prompts(128)


def test_text_prompts_use_the_source_tokenizer(tiny):
    from glmtrt.tokenizer import load_tokenizer
    from glmtrt.tokenizer.tiny import make_tiny_chatglm3_tokenizer

    src = tiny.source(vocab_size=1024)                      # tiny tokenizer: 1009 ids
    make_tiny_chatglm3_tokenizer(src)
    prompts = ["你好，世界! Hello", "GLM 推理"]
    report = verify_checkpoint(tiny.checkpoint(vocab_size=1024, tp=2), src, prompts=prompts)
    assert report.passed, report.format_table()
    lengths = [len(load_tokenizer(src).encode(p)) for p in prompts]
    assert [p.positions for p in report.prompts] == [2 * n for n in lengths]
