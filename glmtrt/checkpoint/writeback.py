"""Bounded write-back: push an output file's pages to disk while it is being written, then let
the kernel reuse them.

A plain sequence of writes lets dirty pages pile up in the page cache until the kernel's
background threshold (10% of available memory by default: gigabytes) and then throttles the
writer (`balance_dirty_pages`), and the final fsync waits for whatever is still dirty. Starting
write-back of each `CHUNK` as soon as it is written (`sync_file_range(SYNC_FILE_RANGE_WRITE)`),
and waiting for the chunk `LAG` chunks behind it, keeps at most `CHUNK * (LAG + 1)` bytes dirty
per file, so the disk works from the first chunk on and the fsync at the end has almost nothing
left to do. Once a chunk is on disk its (now clean) pages are dropped from the page cache
(`posix_fadvise(POSIX_FADV_DONTNEED)`): a multi-gigabyte output would otherwise push the source
and everything else out of the cache, and the kernel hands the freed pages straight back to the
next chunk instead of allocating new ones. The cost: the output is not in the page cache when the
conversion ends (the next stage reads it from disk once).

Measured on the CI machine kind (2 cores, 24 GiB, ext4 on virtio in a Firecracker VM), copying the
12.49 GB bench checkpoint into one file with copy_file_range in 16 MiB steps, then fsync, three
rounds alternated (scripts/bench_writeback.py; docs/BENCHMARKS.md): median 8.3 s with write-back
and dropping, 20.3 s with write-back alone, 19.1 s with neither, `cp -r` 28.2 s; system time
7.9 s against 17.6-27.8 s. On this VM, allocating fresh page-cache pages is what makes a copy slow.

`sync_file_range(2)` is Linux-only; elsewhere (or if the call is refused) this is a no-op and the
fsync at close does all the work, as before.
"""
from __future__ import annotations

import collections
import ctypes
import errno
import os
import sys
from typing import Callable

#: bytes per write-back request (one chunk of the output file)
CHUNK = 16 << 20
#: chunks whose write-back may still be running before the writer waits for the oldest
LAG = 4
# linux/fs.h: SYNC_FILE_RANGE_WAIT_BEFORE = 1, SYNC_FILE_RANGE_WRITE = 2, SYNC_FILE_RANGE_WAIT_AFTER = 4
START = 2
WAIT = 1 | 2 | 4
#: errors that mean "not for this file" (the fsync at close does all the work instead)
_UNSUPPORTED = {errno.EBADF, errno.EINVAL, errno.ESPIPE, errno.ENOSYS, errno.EOPNOTSUPP}


def _libc_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range   # the process's own libc
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn            # a CDLL call releases the GIL while it runs


_SYNC_FILE_RANGE = _libc_sync_file_range()


class Writeback:
    """Tracks how far one file (written in increasing offsets) has been handed to the disk.

    Call `advance(end)` after the bytes up to offset `end` are written; it starts write-back of
    every whole `chunk` below `end` and waits for those more than `lag` chunks behind; `drop`:
    a chunk that is on disk leaves the page cache. `sync` is the `sync_file_range(fd, offset,
    nbytes, flags)` function (None: do nothing).
    """

    def __init__(self, fd: int, *, chunk: int = CHUNK, lag: int = LAG, drop: bool = True,
                 sync: Callable[[int, int, int, int], int] | None = _SYNC_FILE_RANGE):
        if chunk <= 0 or lag < 0:
            raise ValueError(f"chunk {chunk} must be > 0 and lag {lag} >= 0")
        self.fd, self.chunk, self.lag = fd, chunk, lag
        self.started = 0                     # write-back requested for [0, started)
        self._pending: collections.deque[int] = collections.deque()   # offsets of started chunks
        self._sync = sync
        self._drop = drop and hasattr(os, "posix_fadvise")

    def advance(self, end: int) -> None:
        """Bytes [0, end) are written: start write-back of whole chunks, wait for old ones."""
        if self._sync is None:
            return
        while end - self.started >= self.chunk:
            if not self._call(self.started, self.chunk, START):
                return
            self._pending.append(self.started)
            self.started += self.chunk
            while len(self._pending) > self.lag:
                off = self._pending.popleft()
                if not self._call(off, self.chunk, WAIT):
                    return
                if self._drop:            # clean now: dropping cannot lose data
                    os.posix_fadvise(self.fd, off, self.chunk, os.POSIX_FADV_DONTNEED)

    def _call(self, off: int, n: int, flags: int) -> bool:
        if self._sync(self.fd, off, n, flags) == 0:
            return True
        err = ctypes.get_errno()
        if err in (0, errno.EINTR):          # the fsync at close still covers these bytes
            return True
        if err in _UNSUPPORTED:
            self._sync = None
            return False
        raise OSError(err, f"sync_file_range: {os.strerror(err)}")
