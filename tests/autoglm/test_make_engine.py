"""`make engine` for a GLM-4.1V checkpoint: plan, convert, then both builds (LLM engine with trtllm-build, vision
engine with trtexec), run for real with fake trtllm-build / trtexec on PATH that record their arguments and
write what the real tools write (rank*.engine + config.json; the --saveEngine plan)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]

FAKE_TRTLLM_BUILD = '''#!{python}
import json, os, sys
argv = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps({{"tool": "trtllm-build", "argv": argv}}) + "\\n")
val = lambda k: argv[argv.index(k) + 1]
cfg = json.load(open(os.path.join(val("--checkpoint_dir"), "config.json")))
out = val("--output_dir")
os.makedirs(out, exist_ok=True)
for r in range(cfg["mapping"]["tp_size"]):
    open(os.path.join(out, f"rank{{r}}.engine"), "wb").write(b"fake engine")
json.dump({{"pretrained_config": cfg, "build_config": {{}}}}, open(os.path.join(out, "config.json"), "w"))
'''

FAKE_TRTEXEC = '''#!{python}
import json, os, sys
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps({{"tool": "trtexec", "argv": sys.argv[1:]}}) + "\\n")
path = [a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--saveEngine=")][0]
open(path, "wb").write(b"fake plan")
'''


@pytest.fixture
def fake_tools(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("trtllm-build", FAKE_TRTLLM_BUILD), ("trtexec", FAKE_TRTEXEC)):
        p = bin_dir / name
        p.write_text(text.format(python=sys.executable))
        p.chmod(0o755)
    return bin_dir


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.skipif(Path("/usr/src/tensorrt/bin/trtexec").exists(), reason="a real trtexec would be used")
def test_make_engine_autoglm_int8wo_tp2(tmp_path, fake_tools):
    from tests.glm4v.conftest import make_tiny_glm4v

    hf = tmp_path / "AutoGLM-tiny"
    make_tiny_glm4v(hf)
    log = tmp_path / "tools.jsonl"
    env = {**os.environ, "PATH": f"{fake_tools}:{os.environ['PATH']}", "FAKE_LOG": str(log)}
    glmtrt = Path(sys.executable).parent / "glmtrt"
    args = ["make", "-s", "-C", str(ROOT), "engine", f"MODEL={hf}", "PRECISION=int8-wo", "GPU=rtx4090", "TP=2",
            "MAX_SEQ=512", "MAX_PIXELS=200000", f"GLMTRT={glmtrt}", f"CKPT={tmp_path / 'ckpt'}",
            f"ENGINE={tmp_path / 'engine'}", "BUILD_FLAGS=--ignore-toolchain --timing-cache-dir "
            f"{tmp_path / 'tc'} --log-dir {tmp_path / 'logs'}"]
    r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "FITS" in out and "prompt table / GPU" in out              # the plan ran first
    man = json.loads((tmp_path / "ckpt" / "manifest.json").read_text())
    assert (tmp_path / "ckpt" / "llm" / "rank1.safetensors").is_file() and (tmp_path / "ckpt" / "vision" / "encoder.onnx").is_file()
    assert json.loads((tmp_path / "ckpt" / "llm" / "config.json").read_text())["quantization"]["quant_algo"] == "W8A16"
    calls = [json.loads(x) for x in log.read_text().splitlines()]
    assert [c["tool"] for c in calls] == ["trtllm-build", "trtexec"]
    llm, vis = calls[0]["argv"], calls[1]["argv"]
    assert llm[llm.index("--checkpoint_dir") + 1] == str(tmp_path / "ckpt" / "llm")
    assert "--model_cls_name" in llm and llm[llm.index("--model_cls_name") + 1] == "Glm4vForCausalLM"
    # 200,000 px -> (200000 // 2) // 784 * 4 = 508 patches, 127 image tokens; x 8 requests x 1 image
    assert llm[llm.index("--max_prompt_embedding_table_size") + 1] == str(8 * 127)
    assert any(a.startswith("--onnx=") and a.endswith("vision/encoder.onnx") for a in vis)
    assert any(a.startswith("--maxShapes=patches:508x1176") for a in vis) and "--fp16" in vis
    eng = tmp_path / "engine"
    assert (eng / "rank0.engine").is_file() and (eng / "rank1.engine").is_file()
    assert (eng / "vision" / "encoder.plan").is_file() and (eng / "vision" / "manifest.json").is_file()
    em = json.loads((eng / "manifest.json").read_text())
    assert em["build"]["max_prompt_embedding_table_size"] == 8 * 127 and em["build"]["tp_size"] == 2
    assert man["kind"]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_plan_autoglm_fp16_one_4090_says_tp2_or_int8(tmp_path):
    from tests.autoglm.conftest import write_autoglm_config

    d = write_autoglm_config(tmp_path / "AutoGLM-Phone-9B")
    glmtrt = Path(sys.executable).parent / "glmtrt"
    r = subprocess.run(["make", "-s", "-C", str(ROOT), "plan", f"MODEL={d}", "PRECISION=fp16", "GPU=rtx4090",
                        "MAX_SEQ=8192", f"GLMTRT={glmtrt}"], capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "DOES NOT FIT" in out
    assert "--precision int8-wo fits" in out and "--tp 2 (2 x rtx4090) fits" in out
