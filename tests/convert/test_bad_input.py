"""Bad input: clear message naming the problem, non-zero exit, no partial output."""
import json
import os
import struct

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from glmtrt.cli import main
from glmtrt.convert.pipeline import convert_checkpoint
from glmtrt.errors import GlmtrtError
from glmtrt.models.chatglm.tiny import make_tiny_checkpoint


def _run(*args):
    return CliRunner().invoke(main, ["convert", *map(str, args), "--no-progress"])


def _no_output(tmp_path, name="out"):
    return not (tmp_path / name).exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(f".{name}")]


def _edit_weights(src, fn):
    w = load_file(str(src / "model.safetensors"))
    fn(w)
    save_file(w, str(src / "model.safetensors"))


def test_unknown_architecture_lists_supported(tmp_path):
    src = make_tiny_checkpoint(tmp_path / "hf")
    cfg = json.loads((src / "config.json").read_text())
    cfg["architectures"] = ["LlamaForCausalLM"]
    (src / "config.json").write_text(json.dumps(cfg))
    res = _run(src, "-o", tmp_path / "out")
    assert res.exit_code == 2
    assert "LlamaForCausalLM" in res.output and "ChatGLMModel" in res.output and "GlmForCausalLM" in res.output
    assert _no_output(tmp_path)


@pytest.mark.parametrize("edit, needle", [
    (lambda w: w.pop("transformer.encoder.layers.1.mlp.dense_4h_to_h.weight"), "layers.1.mlp.dense_4h_to_h"),
    (lambda w: w.__setitem__("transformer.encoder.layers.2.mlp.extra.weight", torch.zeros(2)), "layers.2.mlp.extra"),
    (lambda w: w.__setitem__("transformer.encoder.layers.0.self_attention.dense.weight", torch.zeros(64, 60)),
     "layers.0.self_attention.dense.weight"),
])
def test_missing_extra_misshaped_tensor(tmp_path, edit, needle):
    src = make_tiny_checkpoint(tmp_path / "hf")
    _edit_weights(src, edit)
    res = _run(src, "-o", tmp_path / "out")
    assert res.exit_code == 2 and needle in res.output, res.output
    assert _no_output(tmp_path)


def test_truncated_and_corrupt_safetensors(tmp_path):
    src = make_tiny_checkpoint(tmp_path / "hf")
    f = src / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    res = _run(src, "-o", tmp_path / "out")
    assert res.exit_code == 2 and "truncated" in res.output
    f.write_bytes(struct.pack("<Q", 50) + b"{not json" + b" " * 41 + data[100:])
    res = _run(src, "-o", tmp_path / "out")
    assert res.exit_code == 2 and "corrupt" in res.output
    assert _no_output(tmp_path)


def test_missing_config_key(tmp_path):
    src = make_tiny_checkpoint(tmp_path / "hf")
    cfg = json.loads((src / "config.json").read_text())
    del cfg["ffn_hidden_size"]
    (src / "config.json").write_text(json.dumps(cfg))
    res = _run(src, "-o", tmp_path / "out")
    assert res.exit_code == 2 and "ffn_hidden_size" in res.output


def test_missing_config_and_dir(tmp_path):
    res = _run(tmp_path / "nope", "-o", tmp_path / "out")
    assert res.exit_code == 2 and "does not exist" in res.output
    (tmp_path / "empty").mkdir()
    res = _run(tmp_path / "empty", "-o", tmp_path / "out")
    assert res.exit_code == 2 and "config.json" in res.output


def test_output_exists_needs_force(tmp_path):
    src = make_tiny_checkpoint(tmp_path / "hf")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep").write_text("x")
    res = _run(src, "-o", tmp_path / "out")
    assert res.exit_code == 2 and "--force" in res.output
    assert (tmp_path / "out" / "keep").exists()
    res = _run(src, "-o", tmp_path / "out", "--force")
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "out" / "keep").exists() and (tmp_path / "out" / "rank0.safetensors").exists()


def test_pickle_refused_unless_allowed(tmp_path):
    src = make_tiny_checkpoint(tmp_path / "hf")
    w = load_file(str(src / "model.safetensors"))
    os.remove(src / "model.safetensors")
    torch.save(w, src / "pytorch_model.bin")
    res = _run(src, "-o", tmp_path / "out")
    assert res.exit_code == 2 and "--allow-pickle" in res.output
    res = _run(src, "-o", tmp_path / "out", "--allow-pickle", "--dtype", "float32")
    assert res.exit_code == 0, res.output


def test_tp_not_dividing_heads(tmp_path):
    src = make_tiny_checkpoint(tmp_path / "hf")
    res = _run(src, "-o", tmp_path / "out", "--tp-size", "3")
    assert res.exit_code == 2 and "tp_size" in res.output
    assert _no_output(tmp_path)


def test_disk_error_mid_write_leaves_nothing(tmp_path, monkeypatch):
    """ENOSPC on the background write thread reaches the caller as one GlmtrtError; no output left."""
    src = make_tiny_checkpoint(tmp_path / "hf")
    from glmtrt.checkpoint import file_sink

    calls = {"n": 0}
    real = file_sink.FileSink._write

    def failing(self, piece):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError(28, "No space left on device")
        return real(self, piece)

    monkeypatch.setattr(file_sink.FileSink, "_write", failing)
    with pytest.raises(GlmtrtError, match="free disk space"):
        convert_checkpoint(src, tmp_path / "out", progress=False)
    assert calls["n"] >= 5
    assert _no_output(tmp_path)
