"""The README's main job (`glmtrt demo`): every stage for real, ending in a streamed answer."""
import os

import pytest
from click.testing import CliRunner

from glmtrt.cli import main
from glmtrt.demo import SCRIPTED_ANSWER

pytestmark = [pytest.mark.triton, pytest.mark.slow]


def test_demo_end_to_end(tmp_path):
    if os.uname().machine != "x86_64":
        pytest.skip("nvidia-pytriton's tritonserver is x86_64 only")
    res = CliRunner().invoke(main, ["demo", "--workdir", str(tmp_path / "demo")])
    assert res.exit_code == 0, res.output
    assert "PASS" in res.output                       # verify against transformers passed
    assert f"assistant> {SCRIPTED_ANSWER}" in res.output
    assert "\ufffd" not in res.output
    for produced in ("convert/manifest.json", "triton_repo/glmtrt_repo.json", "hf-tiny-chatglm3/tokenizer.model"):
        assert (tmp_path / "demo" / produced).is_file()


def test_demo_without_server(tmp_path):
    res = CliRunner().invoke(main, ["demo", "--workdir", str(tmp_path / "d"), "--no-serve", "--no-verify"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "d" / "triton_repo" / "ensemble" / "config.pbtxt").is_file()
