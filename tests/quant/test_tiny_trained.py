"""The quality-evidence model: a short training run of the tiny GLM, then int8-sq calibrated on the
built-in bilingual prompts through the real (tiny ChatGLM3) tokenizer and verified."""
from __future__ import annotations

import json

from glmtrt.quant.tiny_trained import text_lines, train_tiny_glm
from tests.quant.conftest import sq_convert


def test_short_training_learns_and_quantizes(tmp_path):
    from glmtrt.quant.calibrate import CalibOptions
    from glmtrt.reference.verify import verify_checkpoint

    train, held = text_lines()
    assert held and not set(held) & set(train)
    info = train_tiny_glm(tmp_path / "m", steps=30, seq_len=32, batch=4)
    assert info["last_loss"] < info["first_loss"] - 0.5          # it learns (6.9 at random init)
    assert json.loads((tmp_path / "m" / "config.json").read_text())["architectures"] == ["GlmForCausalLM"]
    out = sq_convert(tmp_path / "m", tmp_path / "sq", None, calib=CalibOptions(4, 64, 0), int8_kv_cache=True)
    man = json.loads((out / "manifest.json").read_text())
    assert man["options"]["calibration"]["calib_data"] is None          # the built-in prompt set
    report = verify_checkpoint(out, tmp_path / "m", prompts=["你好，今天天气很好。", "The train leaves at six."])
    assert report.tolerance_key == "int8-sq" and report.passed
