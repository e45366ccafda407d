"""Every error path of issue 13 item 5: one paragraph, exit code 2 (a numeric verify FAIL is 1),
no traceback, nothing half-written; every CLI value validated at the boundary with its range."""
from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from glmtrt.checkpoint.atomic import atomic_output_dir
from glmtrt.cli import main
from glmtrt.convert.pipeline import convert_checkpoint
from glmtrt.models.chatglm.tiny import make_tiny_checkpoint


def _cli(*args, input=None):
    res = CliRunner().invoke(main, [str(a) for a in args], input=input)
    assert "Traceback" not in res.output, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    return res


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(hf dir, converted checkpoint) of the tiny model (both formats share the checks)."""
    work = tmp_path_factory.mktemp("tiny")
    src = make_tiny_checkpoint(work / "hf")
    return src, convert_checkpoint(src, work / "ckpt", dtype="float32", progress=False)


def _copy_hf(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


# ---- verify --hf ----------------------------------------------------------------------------
def _truncate(d):
    f = d / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-1000])


def _corrupt(d):
    f = d / "model.safetensors"
    raw = bytearray(f.read_bytes())
    raw[8:40] = b"{" * 32   # header no longer JSON
    f.write_bytes(bytes(raw))


def _missing(d):
    w = load_file(str(d / "model.safetensors"))
    w.pop(next(k for k in w if "dense_h_to_4h" in k))
    save_file(w, str(d / "model.safetensors"))


def _wrong_shape(d):
    w = load_file(str(d / "model.safetensors"))
    k = next(k for k in w if "dense_4h_to_h" in k)
    w[k] = w[k][:, :-2].contiguous()
    save_file(w, str(d / "model.safetensors"))


def _bad_pickle(d):
    os.remove(d / "model.safetensors")
    (d / "pytorch_model.bin").write_bytes(pickle.dumps({"x": 1})[:-3] + b"garbage")


@pytest.mark.parametrize("edit, needle", [(_truncate, "cannot read the weights"), (_corrupt, "cannot read the weights"),
                                          (_missing, "Missing key(s)"), (_wrong_shape, "size mismatch for model.layers.0.mlp.down_proj"),
                                          (_bad_pickle, "cannot read the weights")])
def test_verify_bad_hf_weights_exit_2(tiny, tmp_path, edit, needle):
    src, ckpt = tiny
    bad = _copy_hf(src, tmp_path / "hf")
    edit(bad)
    extra = ["--allow-pickle"] if edit is _bad_pickle else []
    res = _cli("verify", ckpt, "--hf", bad, *extra)
    assert res.exit_code == 2 and needle in res.output and "\nerror: " in "\n" + res.output, res.output


def test_verify_refuses_pickles_without_allow_pickle(tiny, tmp_path):
    src, ckpt = tiny
    hf = _copy_hf(src, tmp_path / "hf")
    torch.save(load_file(str(hf / "model.safetensors")), hf / "pytorch_model.bin")
    os.remove(hf / "model.safetensors")
    res = _cli("verify", ckpt, "--hf", hf)
    assert res.exit_code == 2 and "--allow-pickle" in res.output
    res = _cli("verify", ckpt, "--hf", hf, "--allow-pickle")
    assert res.exit_code == 0 and "PASS" in res.output, res.output


# ---- convert ----------------------------------------------------------------------------------
@pytest.mark.parametrize("edit, needle", [
    (lambda w, k: w.__setitem__(k, w[k].to(torch.int32)), "not a floating-point weight"),
    (lambda w, k: w[k].view(-1).__setitem__(3, float("nan")), "NaN/Inf"),
])
def test_convert_refuses_int_and_nan_weights(tmp_path, edit, needle):
    src = make_tiny_checkpoint(tmp_path / "hf")
    w = load_file(str(src / "model.safetensors"))
    edit(w, next(k for k in w if "dense_h_to_4h" in k))
    save_file(w, str(src / "model.safetensors"))
    res = _cli("convert", src, "-o", tmp_path / "out", "--no-progress")
    assert res.exit_code == 2 and needle in res.output, res.output
    assert [p.name for p in tmp_path.iterdir()] == ["hf"]   # nothing half-written


def test_readonly_output_dir_is_one_paragraph(tiny, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only directories")
    src, _ = tiny
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        res = _cli("convert", src, "-o", ro / "out", "--no-progress")
    finally:
        ro.chmod(0o755)
    assert res.exit_code == 2 and "nothing was written" in res.output


def test_read_only_filesystem_is_one_paragraph(tiny, tmp_path, monkeypatch):
    """EROFS (issue 13: `OSError [Errno 30]` traceback from convert and repo), simulated so it runs as root."""
    import errno

    import glmtrt.checkpoint.atomic as atomic

    def erofs(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path))

    monkeypatch.setattr(atomic.tempfile, "mkdtemp", erofs)
    src, ckpt = tiny
    res = _cli("convert", src, "-o", tmp_path / "out", "--no-progress")
    assert res.exit_code == 2 and "Read-only file system" in res.output and "not writable" in res.output
    tok = tmp_path / "tok"
    from glmtrt.tokenizer.tiny import make_tiny_chatglm3_tokenizer

    make_tiny_chatglm3_tokenizer(tok)
    res = _cli("repo", ckpt, "--engine", "reference", "--tokenizer", tok, "-o", tmp_path / "r")
    assert res.exit_code == 2 and "Read-only file system" in res.output, res.output


def test_unwritable_output_location_is_one_paragraph(tiny, tmp_path):
    """A file where the parent directory should be (works as root too): ENOTDIR, not a traceback."""
    src, ckpt = tiny
    (tmp_path / "file").write_text("x")
    res = _cli("convert", src, "-o", tmp_path / "file" / "out", "--no-progress")
    assert res.exit_code == 2 and "nothing was written" in res.output, res.output
    res = _cli("repo", ckpt, "--engine", "reference", "--tokenizer", tmp_path / "nope", "-o", tmp_path / "file" / "r")
    assert res.exit_code == 2


def test_stale_temp_dirs_of_dead_runs_are_removed(tmp_path):
    out = tmp_path / "out"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".out.tmp-{dead.pid}-abc"
    live = tmp_path / f".out.tmp-{os.getpid()}-def"
    other = tmp_path / f".other.tmp-{dead.pid}-ghi"
    for d in (stale, live, other):
        d.mkdir()
    with atomic_output_dir(out) as tmp:
        (tmp / "f").write_text("x")
    assert not stale.exists() and live.exists() and other.exists() and (out / "f").is_file()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_signal_during_convert_leaves_no_temp_dir(tmp_path, sig):
    src = make_tiny_checkpoint(tmp_path / "hf")
    code = ("import sys, time; import glmtrt.convert.pipeline as p; from glmtrt.cli import main\n"
            "orig = p.trace_row\n"
            "def slow(*a, **k):\n    time.sleep(0.5)\n    return orig(*a, **k)\n"
            "p.trace_row = slow\nmain(sys.argv[1:])\n")
    proc = subprocess.Popen([sys.executable, "-c", code, "convert", str(src), "-o", str(tmp_path / "out"),
                             "--no-progress"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".out.tmp-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(tmp_path.glob(".out.tmp-*")), "convert never started writing"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"], err


# ---- boundary validation ---------------------------------------------------------------------
@pytest.mark.parametrize("args, needle", [
    (["generate", "127.0.0.1:1", "hi", "--seed", str(2 ** 64)], "0<=x<=18446744073709551615"),
    (["generate", "127.0.0.1:1", "hi", "--seed", "-1"], "0<=x<=18446744073709551615"),
    (["generate", "127.0.0.1:1", "hi", "--max-tokens", "99999999999"], "1<=x<=2147483647"),
    (["generate", "127.0.0.1:1", "hi", "--top-k", "-1"], "0<=x<=2147483647"),
    (["generate", "127.0.0.1:1", "hi", "--timeout", "0"], "x>0"),
    (["generate", "127.0.0.1:1", "bad \udcff text"], "not valid UTF-8"),
    (["generate", "127.0.0.1:1", "hi", "--stop", "\udce4"], "not valid UTF-8"),
    (["plan", "{hf}", "--gpu", "t4", "--extra-params", "-100"], "0<=x<=1000"),
    (["plan", "{hf}", "--gpu", "t4", "--tp", "0"], "1<=x<=2147483647"),
    (["plan", "{hf}", "--gpu", "t4", "--max-seq-len", "0"], "1<=x<=2147483647"),
    (["plan", "{hf}", "--gpu", "t4", "--kv-cache-free-gpu-mem-fraction", "1.5"], "0<x<=1"),
    (["repo", "{ckpt}", "--engine", "reference", "--tokenizer", "{hf}", "-o", "{tmp}/r", "--max-batch-size", "0"],
     "1<=x<=2147483647"),
    (["build", "{ckpt}", "-o", "{tmp}/e", "--gpu", "t4", "--workers", "0"], "1<=x<=2147483647"),
    (["convert", "{hf}", "-o", "{tmp}/c", "--tp-size", "0"], "1<=x<=64"),
    (["serve", "{tmp}", "--grpc-port", "70000"], "1<=x<=65535"),
])
def test_cli_values_are_validated_at_the_boundary(tiny, tmp_path, args, needle):
    src, ckpt = tiny
    args = [a.format(hf=src, ckpt=ckpt, tmp=tmp_path) for a in args]
    res = _cli(*args)
    assert res.exit_code == 2 and needle in res.output, res.output
    assert not (tmp_path / "r").exists() and not (tmp_path / "c").exists()


def test_plan_warns_beyond_the_models_context(tiny):
    src, _ = tiny
    from glmtrt.build.inputs import load_dims

    ctx = load_dims(src)[0].max_position_embeddings
    res = _cli("plan", src, "--gpu", "rtx4090", "--max-seq-len", str(ctx * 2), "--max-batch-size", "1")
    assert f"beyond the model's context of {ctx}" in res.output, res.output
    res = _cli("plan", src, "--gpu", "rtx4090", "--max-seq-len", str(ctx), "--max-batch-size", "1")
    assert "beyond" not in res.output
