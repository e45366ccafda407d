"""A streaming safetensors writer: the header is laid out from (name, dtype, shape) first, then
tensors are written one at a time in that order, so peak memory is one tensor, not the model.

Format (https://github.com/huggingface/safetensors, "Format" section): 8-byte little-endian header
length N, N bytes of JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}
padded with spaces so the data starts 8-byte aligned, then the raw little-endian tensor bytes.
"""
from __future__ import annotations

import hashlib
import json
import math
import struct
from pathlib import Path
from typing import BinaryIO, Sequence

import torch

from glmtrt.errors import GlmtrtError

ST_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int8: "I8",
             torch.uint8: "U8", torch.int32: "I32", torch.int64: "I64", torch.float64: "F64"}


class StreamingSafetensorsWriter:
    """Write tensors declared up front; `write` must follow the declared order."""

    def __init__(self, path: Path, entries: Sequence[tuple[str, torch.dtype, tuple[int, ...]]],
                 metadata: dict[str, str] | None = None):
        self.path = Path(path)
        self._entries = list(entries)
        header: dict[str, object] = {"__metadata__": dict(metadata or {"format": "pt"})}
        offset = 0
        for name, dtype, shape in self._entries:
            nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
            header[name] = {"dtype": ST_DTYPES[dtype], "shape": list(shape),
                            "data_offsets": [offset, offset + nbytes]}
            offset += nbytes
        raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
        raw += b" " * ((-len(raw)) % 8)
        self._next = 0
        self._sha = hashlib.sha256()
        self._f: BinaryIO = open(self.path, "wb")
        self._emit(struct.pack("<Q", len(raw)) + raw)

    def _emit(self, data) -> None:
        self._sha.update(data)
        self._f.write(data)

    def write(self, name: str, tensor: torch.Tensor) -> None:
        """Append the next declared tensor (checked for name, dtype and shape)."""
        if self._next >= len(self._entries):
            raise RuntimeError(f"{self.path.name}: unexpected extra tensor {name}")
        want_name, want_dtype, want_shape = self._entries[self._next]
        if name != want_name or tensor.dtype != want_dtype or tuple(tensor.shape) != tuple(want_shape):
            raise GlmtrtError(
                f"{self.path.name}: got {name} {tensor.dtype} {tuple(tensor.shape)}",
                expected=f"{want_name} {want_dtype} {tuple(want_shape)} (internal planning error)")
        data = tensor.detach().contiguous().reshape(-1).view(torch.uint8).numpy()
        self._emit(memoryview(data))
        self._next += 1

    def close(self) -> str:
        """Finish the file; returns its sha256. Raises if a declared tensor was not written."""
        if self._next != len(self._entries):
            missing = [e[0] for e in self._entries[self._next:]]
            self._f.close()
            raise GlmtrtError(f"{self.path.name}: {len(missing)} declared tensor(s) never written: {missing[:5]}")
        self._f.flush()
        import os
        os.fsync(self._f.fileno())
        self._f.close()
        return self._sha.hexdigest()

    def abort(self) -> None:
        if not self._f.closed:
            self._f.close()
