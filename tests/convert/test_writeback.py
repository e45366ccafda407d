"""Bounded write-back (glmtrt/checkpoint/writeback.py): which ranges are started, waited for and
dropped, errors, and the real syscall on a real file through FileSink."""
import errno
import hashlib
import os
import sys

import numpy as np
import pytest

from glmtrt.checkpoint import file_sink, writeback
from glmtrt.checkpoint.file_sink import ByteBudget, FileSink
from glmtrt.checkpoint.writeback import START, WAIT, Writeback
from glmtrt.errors import GlmtrtError


class Recorder:
    def __init__(self, fail_with=None):
        self.calls, self.fail_with = [], fail_with

    def __call__(self, fd, off, n, flags):
        self.calls.append((off, n, flags))
        if self.fail_with:
            import ctypes
            ctypes.set_errno(self.fail_with)
            return -1
        return 0


def test_whole_chunks_started_and_old_ones_waited_for_and_dropped(monkeypatch):
    dropped = []
    monkeypatch.setattr(os, "posix_fadvise", lambda fd, off, n, advice: dropped.append((off, n, advice)),
                        raising=False)
    rec = Recorder()
    wb = Writeback(7, chunk=100, lag=2, sync=rec)
    wb.advance(99)                      # not a whole chunk yet
    assert rec.calls == []
    wb.advance(250)                     # chunks [0,100) and [100,200)
    assert rec.calls == [(0, 100, START), (100, 100, START)]
    wb.advance(520)                     # [200,300) .. [400,500): waits once more than 2 are in flight
    assert rec.calls[2:] == [(200, 100, START), (0, 100, WAIT), (300, 100, START), (100, 100, WAIT),
                             (400, 100, START), (200, 100, WAIT)]
    assert wb.started == 500
    assert dropped == [(0, 100, os.POSIX_FADV_DONTNEED), (100, 100, os.POSIX_FADV_DONTNEED),
                       (200, 100, os.POSIX_FADV_DONTNEED)]


def test_drop_off_keeps_pages(monkeypatch):
    monkeypatch.setattr(os, "posix_fadvise", lambda *a: pytest.fail("dropped"), raising=False)
    rec = Recorder()
    Writeback(7, chunk=10, lag=0, drop=False, sync=rec).advance(30)
    assert [c[2] for c in rec.calls] == [START, WAIT, START, WAIT, START, WAIT]


@pytest.mark.parametrize("err", [errno.EINVAL, errno.ESPIPE, errno.ENOSYS, errno.EOPNOTSUPP])
def test_unsupported_file_turns_it_off(err):
    rec = Recorder(fail_with=err)
    wb = Writeback(7, chunk=10, lag=1, sync=rec)
    wb.advance(100)
    wb.advance(200)
    assert len(rec.calls) == 1          # refused once, never asked again; the fsync at close does it all


def test_io_error_is_raised():
    with pytest.raises(OSError) as e:
        Writeback(7, chunk=10, lag=0, sync=Recorder(fail_with=errno.EIO)).advance(10)
    assert e.value.errno == errno.EIO


def test_no_syscall_is_a_no_op():
    wb = Writeback(7, chunk=10, sync=None)
    wb.advance(1000)
    assert wb.started == 0


@pytest.mark.parametrize("kw", [{"chunk": 0}, {"lag": -1}])
def test_bad_parameters(kw):
    with pytest.raises(ValueError):
        Writeback(7, sync=None, **kw)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range(2) is Linux-only")
def test_real_file_through_file_sink(tmp_path, monkeypatch):
    """FileSink drives the real syscall (small chunks) for memory pieces and file ranges; the file
    and its sha256 are exact and every whole chunk went to disk."""
    assert writeback._SYNC_FILE_RANGE is not None
    made = []

    def small(fd):
        made.append(Writeback(fd, chunk=64 << 10, lag=2))
        return made[-1]
    monkeypatch.setattr(file_sink, "Writeback", small)
    src = tmp_path / "src.bin"
    data = np.random.default_rng(1).integers(0, 0x7000, 1 << 20, dtype=np.uint16).tobytes()   # 2 MiB
    src.write_bytes(data)
    sink = FileSink(tmp_path / "out.bin", memory=ByteBudget(1 << 20), queued=ByteBudget(4 << 20))
    fd = os.open(src, os.O_RDONLY)
    try:
        sink.append(memoryview(data)[:300_002])
        sink.append_range(fd, 300_002, len(data) - 300_002, finite=("t", "float16"))
        digest = sink.close()
    finally:
        os.close(fd)
    assert (tmp_path / "out.bin").read_bytes() == data
    assert digest == hashlib.sha256(data).hexdigest()
    wb, = made
    assert wb._sync is not None, "sync_file_range was refused on this file system"
    assert wb.started == len(data) // (64 << 10) * (64 << 10)


def test_write_error_from_write_back_is_a_glmtrt_error(tmp_path, monkeypatch):
    monkeypatch.setattr(file_sink, "Writeback",
                        lambda fd: Writeback(fd, chunk=4096, lag=0, sync=Recorder(fail_with=errno.EIO)))
    sink = FileSink(tmp_path / "out.bin", memory=ByteBudget(1 << 20), queued=ByteBudget(4 << 20))
    sink.append(memoryview(bytes(8192)))
    with pytest.raises(GlmtrtError, match="writing .*out.bin failed"):
        sink.close()
