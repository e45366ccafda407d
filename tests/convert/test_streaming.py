"""The streaming converter: traced segments equal the transforms on real data, every copy path
(file to file, through memory with a cast or a column split, the pread/pwrite fallback) writes the
same bytes, the writer takes any dtype, and convert never imports torch."""
import errno
import hashlib
import os
import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from glmtrt.checkpoint.hf_reader import HFCheckpoint
from glmtrt.checkpoint.safetensors_stream import StreamingSafetensorsWriter
from glmtrt.convert.mapping import Row, ShardContext, materialize, shard_tensor, trace_row
from glmtrt.convert.pipeline import ConvertOptions, convert_checkpoint, plan_conversion
from glmtrt.errors import GlmtrtError
from glmtrt.fileio import sha256_file
from glmtrt.models.chatglm.tiny import make_tiny_checkpoint


def _recast(src, dtype):
    """Rewrite every safetensors file of a tiny checkpoint in another dtype (numpy/ml_dtypes)."""
    for f in src.glob("*.safetensors"):
        t = load_file(str(f))
        save_file({k: v.astype(dtype) for k, v in t.items()}, str(f), metadata={"format": "pt"})
    return src


def _expected(src, dtype, tp):
    """Each rank's tensors through the transforms on fully loaded arrays (the oracle)."""
    ckpt, _, _, rows, ctx, _, _ = plan_conversion(src, ConvertOptions(dtype=dtype, tp_size=tp))
    with ckpt:
        return [{row.target: np.ascontiguousarray(shard_tensor(materialize(row, ckpt.array, dtype), row.shard, r, ctx))
                 for row in rows} for r in range(tp)]


def _check_against_oracle(src, out, dtype, tp):
    want = _expected(src, dtype, tp)
    for r in range(tp):
        got = load_file(str(out / f"rank{r}.safetensors"))
        assert set(got) == set(want[r])
        for name, arr in want[r].items():
            assert got[name].dtype == arr.dtype and got[name].shape == arr.shape, name
            assert got[name].tobytes() == arr.tobytes(), name


@pytest.mark.parametrize("fmt,src_dtype,dtype,tp", [
    ("chatglm", "float32", "float32", 1),      # file to file
    ("chatglm", "float32", "float32", 2),      # file to file + column splits through memory
    ("hf-glm", "float32", "float16", 2),       # casts through memory, q/k/v concatenated
    ("chatglm", "bfloat16", "float16", 1),     # GLM-4 case: bf16 source to fp16
    ("hf-glm", "float16", "bfloat16", 4),      # 4 ranks: kv heads tiled (2 kv heads)
])
def test_streamed_equals_transforms_on_arrays(tmp_path, fmt, src_dtype, dtype, tp):
    src = make_tiny_checkpoint(tmp_path / "hf", fmt, seed=5, shards=2, vocab_size=126)   # vocab padded for tp
    if src_dtype != "float32":
        _recast(src, {"bfloat16": ml_dtypes.bfloat16, "float16": np.float16}[src_dtype])
    out = convert_checkpoint(src, tmp_path / "out", dtype=dtype, tp_size=tp, progress=False)
    _check_against_oracle(src, out, dtype, tp)


@pytest.mark.parametrize("dtype", ["float16", "float32"])      # cast blocks / scattered column reads
def test_small_blocks_and_window(tmp_path, monkeypatch, dtype):
    """Blocks of one row and a one-byte window still give the same bytes (ordering, back-pressure)."""
    from glmtrt.convert import pipeline

    src = make_tiny_checkpoint(tmp_path / "hf", seed=2)
    monkeypatch.setattr(pipeline, "BLOCK_BYTES", 1)
    out = convert_checkpoint(src, tmp_path / "out", dtype=dtype, tp_size=2, progress=False, window_bytes=1)
    _check_against_oracle(src, out, dtype, 2)


def test_scattered_read_survives_short_reads(tmp_path, monkeypatch):
    """preadv may return fewer bytes than asked: the rest is read, nothing is lost or repeated."""
    from glmtrt.convert import pipeline

    src = make_tiny_checkpoint(tmp_path / "hf", seed=4)
    real = os.preadv

    def short(fd, views, offset):
        return real(fd, [views[0][:max(1, views[0].nbytes // 2)]], offset)

    monkeypatch.setattr(pipeline.os, "preadv", short)
    out = convert_checkpoint(src, tmp_path / "out", dtype="float32", tp_size=2, progress=False)
    _check_against_oracle(src, out, "float32", 2)


def test_copy_fallback_without_copy_file_range(tmp_path, monkeypatch):
    """Where copy_file_range is refused (e.g. across file systems), the bytes go through memory."""
    src = make_tiny_checkpoint(tmp_path / "hf", seed=1)
    a = convert_checkpoint(src, tmp_path / "a", dtype="float32", progress=False)

    def refuse(*args):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "copy_file_range", refuse)
    b = convert_checkpoint(src, tmp_path / "b", dtype="float32", progress=False)
    assert (a / "rank0.safetensors").read_bytes() == (b / "rank0.safetensors").read_bytes()


def test_manifest_hash_is_the_file_hash(tmp_path):
    from glmtrt.checkpoint.manifest import read_manifest

    src = make_tiny_checkpoint(tmp_path / "hf")
    out = convert_checkpoint(src, tmp_path / "out", dtype="float32", tp_size=2, progress=False)
    files = read_manifest(out)["files"]
    for name in ("rank0.safetensors", "rank1.safetensors", "config.json"):
        assert files[name]["sha256"] == sha256_file(out / name)


def test_trace_matches_transforms_on_random_rows():
    """trace_row's segments rebuild exactly what the transforms give on real arrays."""
    rng = np.random.default_rng(0)
    ctx = ShardContext(tp_size=4, num_heads=8, num_kv_heads=2, head_size=3)
    qkv = (8 + 2 * 2) * 3
    cases = [Row("qkv", ("q", "k", "v"), (qkv, 8), combine="concat_rows", shard="qkv"),
             Row("qkvb", ("qb", "kb", "vb"), (qkv,), combine="concat_rows", shard="qkv"),
             Row("fc", ("fc",), (16, 8), prepare="swap_gate_up", shard="halves"),
             Row("dense", ("dense",), (8, 12), shard="cols"), Row("head", ("head",), (13, 8), shard="vocab_rows"),
             Row("emb", ("head",), (13, 8)), Row("rows", ("fc",), (16, 8), shard="rows")]
    shapes = {"q": (24, 8), "k": (6, 8), "v": (6, 8), "qb": (24,), "kb": (6,), "vb": (6,), "fc": (16, 8),
              "dense": (8, 12), "head": (13, 8)}
    data = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    for row in cases:
        full = materialize(row, data.__getitem__, "float32")
        for r, segs in enumerate(trace_row(row, ctx, shapes)):
            parts = []
            for s in segs:
                if s.source < 0:
                    parts.append(np.zeros((s.stop - s.start,) + full.shape[1:], np.float32))
                else:
                    block = data[row.sources[s.source]][s.start:s.stop]
                    parts.append(block if s.cols is None else block[:, s.cols[0]:s.cols[1]])
            assert np.array_equal(np.concatenate(parts), shard_tensor(full, row.shard, r, ctx)), (row.target, r)


def test_trace_refuses_a_transform_that_is_not_a_layout():
    from glmtrt.convert import transforms as T

    T.PREPARE["_test_reverse_cols"] = lambda t: t[:, ::-1]
    try:
        with pytest.raises(ValueError, match="not a selection"):
            trace_row(Row("x", ("a",), (4, 4), prepare="_test_reverse_cols"), ShardContext(2, 2, 2, 1),
                      {"a": (4, 4)})
    finally:
        del T.PREPARE["_test_reverse_cols"]


def test_writer_takes_any_dtype_from_numpy_torch_or_pieces(tmp_path):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    tensors = {
        "i8": rng.integers(-128, 128, (3, 5)).astype(np.int8),
        "u8_packed_int4": rng.integers(0, 256, (4, 2)).astype(np.uint8),
        "f8": rng.standard_normal((2, 3)).astype(ml_dtypes.float8_e4m3fn),
        "bf16": rng.standard_normal((7,)).astype(ml_dtypes.bfloat16),
        "t_f8": torch.randn(3, 3).to(torch.float8_e4m3fn),
        "t_bf16": torch.randn(2, 2).bfloat16(),
        "t_i32": torch.arange(6, dtype=torch.int32).reshape(2, 3),
        "scalar": np.array(1.5, dtype=np.float32),
        "pieces": np.arange(10, dtype=np.float16),
    }
    entries = [(k, v.dtype, tuple(v.shape)) for k, v in tensors.items()]
    w = StreamingSafetensorsWriter(tmp_path / "x.safetensors", entries)
    for k, v in tensors.items():
        if k == "pieces":
            w.begin(k)
            w.append(v[:3])
            w.append_zeros(2 * 2)
            w.append(v[5:].tobytes())
            w.end()
        else:
            w.write(k, v)
    digest = w.close()
    assert digest == sha256_file(tmp_path / "x.safetensors")
    with safe_open(str(tmp_path / "x.safetensors"), framework="pt") as f:
        for k, v in tensors.items():
            got = f.get_tensor(k)
            want = v if isinstance(v, torch.Tensor) else None
            if want is None:
                raw = torch.from_numpy(np.ascontiguousarray(v).reshape(-1).view(np.uint8).copy())
                got_raw = got.reshape(-1).view(torch.uint8)
                if k == "pieces":
                    raw = torch.from_numpy(np.concatenate([v[:3], np.zeros(2, np.float16), v[5:]]).view(np.uint8))
                assert torch.equal(got_raw, raw), k
                assert tuple(got.shape) == v.shape, k
            else:
                assert got.dtype == want.dtype and torch.equal(got.view(torch.uint8), want.view(torch.uint8)), k


def test_writer_refuses_wrong_pieces(tmp_path):
    w = StreamingSafetensorsWriter(tmp_path / "x.safetensors", [("a", "float16", (4,)), ("b", "int8", (2,))])
    with pytest.raises(GlmtrtError, match="expected"):
        w.write("a", np.zeros(3, np.float16))
    w.begin("a")
    with pytest.raises(GlmtrtError, match="more bytes"):
        w.append(np.zeros(5, np.float16))
    w.append(np.zeros(2, np.float16))
    with pytest.raises(GlmtrtError, match="got 4 of 8 bytes"):
        w.end()
    w.append(np.zeros(2, np.float16))
    w.end()
    with pytest.raises(GlmtrtError, match="never written"):
        w.close()


def test_hf_reader_reads_rows_and_locations(tmp_path):
    src = make_tiny_checkpoint(tmp_path / "hf", shards=2)
    ref = {}
    for f in src.glob("*.safetensors"):
        ref.update(load_file(str(f)))
    with HFCheckpoint(src) as ckpt:
        name = "transformer.encoder.layers.0.mlp.dense_h_to_4h.weight"
        assert np.array_equal(ckpt.read_rows(name, 3, 9), ref[name][3:9])
        assert np.array_equal(ckpt.array(name), ref[name])
        loc = ckpt.location(name)
        with open(loc.path, "rb") as f:
            f.seek(loc.offset)
            assert f.read(loc.nbytes) == ref[name].tobytes()
        assert ckpt.get(name).numpy().tobytes() == ref[name].tobytes()


def test_convert_never_imports_torch(tmp_path):
    """The CLI convert path runs on numpy: a CUDA build of torch costs no memory there."""
    src = make_tiny_checkpoint(tmp_path / "hf", shards=2)
    glmtrt = os.path.join(os.path.dirname(sys.executable), "glmtrt")
    res = subprocess.run([sys.executable, "-X", "importtime", glmtrt, "convert", str(src), "-o",
                          str(tmp_path / "out"), "--dtype", "float16", "--tp-size", "2", "--quant", "int8-wo"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in res.stderr.splitlines() if line.startswith("import time:")}
    assert "numpy" in imported          # the check sees imports at all
    assert "torch" not in imported


def test_sha256_is_over_the_bytes_in_file_order(tmp_path):
    """A file written from several ranges of another file hashes like the file it becomes."""
    data = os.urandom(3 << 20)
    (tmp_path / "src.bin").write_bytes(data)
    fd = os.open(tmp_path / "src.bin", os.O_RDONLY)
    try:
        w = StreamingSafetensorsWriter(tmp_path / "x.safetensors", [("a", "uint8", (len(data),))])
        w.begin("a")
        w.append_range(fd, 2 << 20, 1 << 20)
        w.append_range(fd, 0, 2 << 20)
        w.end()
        digest = w.close()
    finally:
        os.close(fd)
    out = (tmp_path / "x.safetensors").read_bytes()
    assert out.endswith(data[2 << 20:] + data[:2 << 20])
    assert digest == hashlib.sha256(out).hexdigest()
