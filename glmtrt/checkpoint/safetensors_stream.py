"""A streaming safetensors writer: the header is laid out from (name, dtype, shape) first, then
tensors are appended in that order, whole or piece by piece, so no file is ever held in memory.

Format (https://github.com/huggingface/safetensors, "Format" section): 8-byte little-endian header
length N, N bytes of JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}
padded with spaces so the data starts 8-byte aligned, then the raw little-endian tensor bytes.

Pieces go to a `FileSink` (glmtrt/checkpoint/file_sink.py): written and hashed on background
threads, byte ranges of a source file copied kernel-side, with a bound on bytes in flight.
Any dtype of glmtrt/checkpoint/dtypes.py is accepted (int8/uint8 packed int4, float8, ...), from
numpy arrays, torch CPU tensors or raw bytes.
"""
from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any, Sequence

from glmtrt.checkpoint.dtypes import as_bytes, dtype_name, itemsize, st_code
from glmtrt.checkpoint.file_sink import ByteBudget, FileSink
from glmtrt.errors import GlmtrtError

#: Default bound on bytes held in memory by pending writes (shared by the rank files of one convert).
WINDOW_BYTES = 64 << 20
#: Default bound on bytes of queued file-to-file copies (no memory; keeps the producer near the writers).
QUEUED_COPY_BYTES = 256 << 20


class StreamingSafetensorsWriter:
    """Write tensors declared up front; tensors must follow the declared order.

    `write(name, tensor)` appends one whole tensor; `begin(name)`, then `append` / `append_range` /
    `append_zeros`, then `end()` build one from pieces. `close()` returns the file's sha256.
    """

    def __init__(self, path: Path, entries: Sequence[tuple[str, Any, tuple[int, ...]]],
                 metadata: dict[str, str] | None = None, *, memory: ByteBudget | None = None,
                 queued: ByteBudget | None = None):
        self.path = Path(path)
        self._entries = [(name, dtype_name(dt), tuple(int(d) for d in shape)) for name, dt, shape in entries]
        header: dict[str, object] = {"__metadata__": dict(metadata or {"format": "pt"})}
        offset = 0
        self._sizes = []
        for name, dt, shape in self._entries:
            nbytes = math.prod(shape) * itemsize(dt)
            header[name] = {"dtype": st_code(dt), "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
            self._sizes.append(nbytes)
            offset += nbytes
        raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
        raw += b" " * ((-len(raw)) % 8)
        self._next = 0
        self._open: str | None = None        # tensor being appended
        self._finite: tuple[str, str] | None = None   # (name, float dtype) checked for NaN/Inf
        self._tensor_end = 0
        self._sink = FileSink(self.path, memory=memory or ByteBudget(WINDOW_BYTES),
                              queued=queued or ByteBudget(QUEUED_COPY_BYTES))
        self._sink.append(memoryview(struct.pack("<Q", len(raw)) + raw))

    # ---- piecewise ------------------------------------------------------------------
    def begin(self, name: str, dtype: Any = None, shape: Sequence[int] | None = None) -> None:
        """Start the next declared tensor (dtype/shape, when given, are checked)."""
        if self._open is not None:
            raise RuntimeError(f"{self.path.name}: {self._open} is not finished")
        if self._next >= len(self._entries):
            raise RuntimeError(f"{self.path.name}: unexpected extra tensor {name}")
        want_name, want_dtype, want_shape = self._entries[self._next]
        if name != want_name or (dtype is not None and dtype_name(dtype) != want_dtype) or \
                (shape is not None and tuple(shape) != want_shape):
            got = f"{name} {dtype_name(dtype) if dtype is not None else ''} {tuple(shape) if shape else ''}"
            raise GlmtrtError(f"{self.path.name}: got {got.strip()}",
                              expected=f"{want_name} {want_dtype} {want_shape} (internal planning error)")
        self._open = name
        self._finite = (name, want_dtype) if want_dtype.startswith(("float", "bfloat")) else None
        self._tensor_end = self._sink.pos + self._sizes[self._next]

    def _room(self, n: int) -> None:
        if self._open is None:
            raise RuntimeError(f"{self.path.name}: append outside begin()/end()")
        if self._sink.pos + n > self._tensor_end:
            raise GlmtrtError(f"{self.path.name}: {self._open} got more bytes than its declared "
                              f"{self._sizes[self._next]}", expected="the declared shape (internal planning error)")

    def append(self, data: Any) -> None:
        """Append raw bytes of a C-ordered numpy array, torch CPU tensor or bytes-like."""
        view = as_bytes(data)
        self._room(view.nbytes)
        self._sink.append(view, finite=self._finite)

    def append_range(self, src_fd: int, src_off: int, nbytes: int) -> None:
        """Append `nbytes` of an open file from `src_off` (copied file to file, never through Python)."""
        self._room(nbytes)
        self._sink.append_range(src_fd, src_off, nbytes, finite=self._finite)

    def append_zeros(self, nbytes: int) -> None:
        """Append zero bytes (padding rows)."""
        self._room(nbytes)
        self._sink.append_zeros(nbytes)

    def end(self) -> None:
        """Finish the current tensor; raises if it got fewer bytes than declared."""
        if self._sink.pos != self._tensor_end:
            want = self._sizes[self._next]
            raise GlmtrtError(f"{self.path.name}: {self._open} got {want - (self._tensor_end - self._sink.pos)} "
                              f"of {want} bytes", expected="the declared shape (internal planning error)")
        self._open = None
        self._next += 1

    # ---- whole tensors ----------------------------------------------------------------
    def write(self, name: str, tensor: Any) -> None:
        """Append the next declared tensor (numpy array or torch tensor; name, dtype and shape checked)."""
        self.begin(name, tensor.dtype, tuple(tensor.shape))
        self.append(tensor)
        self.end()

    def close(self) -> str:
        """Finish the file (fsync); returns its sha256. Raises if a declared tensor was not written."""
        if self._next != len(self._entries):
            missing = [e[0] for e in self._entries[self._next:]]
            self._sink.abort()
            raise GlmtrtError(f"{self.path.name}: {len(missing)} declared tensor(s) never written: {missing[:5]}")
        return self._sink.close()

    def abort(self) -> None:
        """Stop writing (the caller removes the file); never raises."""
        self._sink.abort()
