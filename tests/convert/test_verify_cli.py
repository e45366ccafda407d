"""`glmtrt verify`: exit 0 and PASS on a good conversion, exit 1 on a wrong one; --json."""
import json

import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from glmtrt.cli import main
from glmtrt.convert.pipeline import convert_checkpoint
from glmtrt.models.chatglm.tiny import make_tiny_checkpoint


def test_verify_cli_pass_and_fail(tmp_path):
    src = make_tiny_checkpoint(tmp_path / "hf", rope_ratio=500.0)
    ckpt = convert_checkpoint(src, tmp_path / "ckpt", dtype="float16", tp_size=2, progress=False)
    runner = CliRunner()
    res = runner.invoke(main, ["verify", str(ckpt), "--hf", str(src)])
    assert res.exit_code == 0, res.output
    assert "PASS" in res.output
    res = runner.invoke(main, ["verify", str(ckpt), "--hf", str(src), "--json", "--compute-dtype", "float32"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output[res.output.index("{"):])
    assert report["passed"] is True and report["max_abs"] < 0.05

    # a conversion bug (gate/up halves left unswapped on rank 0) must fail verification
    w = load_file(str(ckpt / "rank0.safetensors"))
    fc = w["transformer.layers.0.mlp.fc.weight"]
    w["transformer.layers.0.mlp.fc.weight"] = torch.cat(fc.chunk(2)[::-1]).contiguous()
    save_file(w, str(ckpt / "rank0.safetensors"))
    res = runner.invoke(main, ["verify", str(ckpt), "--hf", str(src)])
    assert res.exit_code == 1, res.output
    assert "FAIL" in res.output
