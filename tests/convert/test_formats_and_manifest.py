"""Both HF layouts give identical checkpoints; manifests are complete; real configs parse."""
import json

from glmtrt.checkpoint.manifest import read_manifest, verify_files
from glmtrt.convert.pipeline import convert_checkpoint
from glmtrt.models.chatglm.tiny import make_tiny_checkpoint
from glmtrt.models.registry import load_model_spec
from tests.conftest import shared_model


def test_both_formats_identical(tmp_path):
    a = make_tiny_checkpoint(tmp_path / "chatglm", "chatglm", seed=3, rope_ratio=500.0)
    b = make_tiny_checkpoint(tmp_path / "glm", "hf-glm", seed=3, rope_ratio=500.0, shards=3)
    for tp in (1, 2):
        oa = convert_checkpoint(a, tmp_path / f"a{tp}", dtype="float16", tp_size=tp, progress=False)
        ob = convert_checkpoint(b, tmp_path / f"b{tp}", dtype="float16", tp_size=tp, progress=False)
        for name in ["config.json"] + [f"rank{r}.safetensors" for r in range(tp)]:
            assert (oa / name).read_bytes() == (ob / name).read_bytes(), name


def test_manifest(tmp_path):
    src = make_tiny_checkpoint(tmp_path / "hf")
    out = convert_checkpoint(src, tmp_path / "out", dtype="float16", tp_size=2, progress=False)
    m = read_manifest(out, "trtllm-checkpoint")
    assert set(m["files"]) == {"config.json", "rank0.safetensors", "rank1.safetensors"}
    assert m["options"]["tp_size"] == 2 and m["options"]["dtype"] == "float16"
    assert m["model"]["chatglm_version"] == "chatglm3" and m["source"]["sha256"]
    assert verify_files(out) == []
    (out / "rank1.safetensors").write_bytes(b"x")
    assert verify_files(out) == ["rank1.safetensors"]


def test_output_permissions_and_no_temp_left(tmp_path):
    src = make_tiny_checkpoint(tmp_path / "hf")
    out = convert_checkpoint(src, tmp_path / "out", progress=False)
    assert out.stat().st_mode & 0o055  # group/other can read/enter
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_real_configs():
    c3 = load_model_spec(shared_model("chatglm3-6b"))
    assert (c3.chatglm_version, c3.num_layers, c3.num_kv_heads, c3.vocab_size, c3.rotary_base) == \
        ("chatglm3", 28, 2, 65024, 10000.0)
    g4 = load_model_spec(shared_model("glm-4-9b-chat"))
    assert (g4.chatglm_version, g4.num_layers, g4.vocab_size, g4.rotary_base, g4.norm_eps) == \
        ("glm4", 40, 151552, 5_000_000.0, 1.5625e-07)
    assert 6.2e9 < c3.num_params() < 6.3e9 and 9.3e9 < g4.num_params() < 9.5e9


def test_inspect_cli(tmp_path):
    from click.testing import CliRunner

    from glmtrt.cli import main

    src = make_tiny_checkpoint(tmp_path / "hf")
    res = CliRunner().invoke(main, ["inspect", str(src), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output[res.output.index("{"):])
    assert info["chatglm_version"] == "chatglm3" and info["layers"] == 2
