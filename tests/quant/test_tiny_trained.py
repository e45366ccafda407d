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


def test_quality_script_on_a_20_step_run(tmp_path):
    """`make quality` end to end on a 20-step model with three precisions: it learns more than
    token frequencies, the outlier reparametrization keeps the float function, both tables print."""
    import os
    import re
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    res = subprocess.run([sys.executable, str(root / "scripts" / "quant_quality.py"), "--out", str(tmp_path),
                          "--steps", "20", "--configs", "fp16,int8-sq a=0.5,fp8"],
                         capture_output=True, text=True, timeout=900, cwd=root,
                         env={**os.environ, "PYTHONPATH": str(root)})
    assert res.returncode == 0, res.stderr[-3000:]
    info = json.loads(re.search(r"trained \S+ in \d+ s: (\{.*\})", res.stdout).group(1))
    assert info["held_out_ppl"] < info["unigram_held_out_ppl"]
    out = json.loads(re.search(r"outlier reparametrization: (\{.*\})", res.stdout).group(1))
    assert len(out["channels"]) == 3 and out["max_logit_diff"] < 1e-3 * out["max_abs_logit"]
    rows = re.findall(r"^\| (fp16|int8-sq a=0.5|fp8) \| ([\d.]+) \| ([\d.]+)% \| (\S+) \|$", res.stdout, re.M)
    assert [r[0] for r in rows] == ["fp16", "int8-sq a=0.5", "fp8"] * 2
    assert all(float(r[2]) == 100.0 for r in rows if r[0] == "fp16")
