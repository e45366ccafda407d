"""FileSink's hash lane over file ranges: mapped from the page cache, or read into a buffer; a source
that is shorter than the range is a clear error (never a SIGBUS from a mapped page past the end)."""
import contextlib
import hashlib
import os

import numpy as np
import pytest

from glmtrt.checkpoint import file_sink
from glmtrt.checkpoint.file_sink import ByteBudget, FileSink
from glmtrt.errors import GlmtrtError


def _copy(tmp_path, src, ranges, name="out.bin"):
    sink = FileSink(tmp_path / name, memory=ByteBudget(1 << 20), queued=ByteBudget(4 << 20))
    fd = os.open(src, os.O_RDONLY)
    try:
        for off, n in ranges:
            sink.append_range(fd, off, n, finite=("t", "float16"))
        return sink.close()
    finally:
        os.close(fd)


@pytest.fixture()
def src(tmp_path):
    p = tmp_path / "src.bin"
    p.write_bytes(np.random.default_rng(0).integers(0, 0x7000, 3 << 19, dtype=np.uint16).tobytes())  # 3 MiB
    return p


RANGES = [(6, 1_500_000), (4096 * 3 + 2, 2 << 20), (0, 10)]     # unaligned starts, chunk-crossing lengths


def test_mapped_and_read_hash_agree_with_hashlib(tmp_path, src, monkeypatch):
    data = src.read_bytes()
    want = hashlib.sha256(b"".join(data[o:o + n] for o, n in RANGES)).hexdigest()
    assert _copy(tmp_path, src, RANGES, "a.bin") == want
    assert (tmp_path / "a.bin").read_bytes() == b"".join(data[o:o + n] for o, n in RANGES)

    @contextlib.contextmanager
    def unmappable(fd, off, nbytes):
        yield None
    monkeypatch.setattr(file_sink, "_mapped", unmappable)
    assert _copy(tmp_path, src, RANGES, "b.bin") == want


def test_nan_found_through_the_mapped_path(tmp_path, src):
    raw = bytearray(src.read_bytes())
    raw[2_000_000:2_000_002] = np.array([0x7E00], np.uint16).tobytes()   # a float16 NaN
    src.write_bytes(bytes(raw))
    with pytest.raises(GlmtrtError, match="NaN/Inf"):
        _copy(tmp_path, src, [(0, len(raw))])


def test_source_shorter_than_range_is_an_error(tmp_path, src):
    with pytest.raises(GlmtrtError, match="ended while"):
        _copy(tmp_path, src, [(1 << 20, 3 << 20)])          # 1 MiB past the end
