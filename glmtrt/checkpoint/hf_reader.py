"""Lazy reader of Hugging Face checkpoints: one tensor (or a block of rows) at a time.

Safetensors headers are parsed once; tensors are located by byte range so the converter can copy
them file to file, and read with positioned reads straight into the array that is used (no memory
map, whose touched pages would stay resident and counted in RSS until the file is closed; no
second copy). torch is not imported for safetensors sources.

Safetensors (single file, several files, or sharded with `model.safetensors.index.json`).
Pickle `.bin` checkpoints are refused unless `allow_pickle=True`, then read with
`torch.load(weights_only=True, mmap=True)`. No checkpoint code is ever executed.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glmtrt.checkpoint.dtypes import DTYPES, dtype_name, itemsize, numpy_dtype
from glmtrt.errors import GlmtrtError
from glmtrt.models.registry import read_hf_config

log = logging.getLogger(__name__)

_ST_INDEX = "model.safetensors.index.json"
_BIN_INDEX = "pytorch_model.bin.index.json"
_ST_CODES = {code for code, _ in DTYPES.values()}


@dataclass(frozen=True)
class TensorLocation:
    """Where a safetensors tensor's bytes are: `nbytes` from absolute `offset` of `path`."""

    path: Path
    offset: int
    nbytes: int
    dtype: str               # canonical name (glmtrt/checkpoint/dtypes.py)
    shape: tuple[int, ...]


class _SafetensorsFile:
    """Header of one safetensors file: tensor name -> location."""

    def __init__(self, path: Path):
        self.path = path
        raw = _safetensors_header(path)
        self.data_start = len(raw)
        self.meta = {k: v for k, v in json.loads(raw[8:]).items() if k != "__metadata__"}
        for name, info in self.meta.items():
            if info.get("dtype") not in _ST_CODES:
                raise GlmtrtError(f"{path.name}: tensor {name} has unsupported dtype {info.get('dtype')}")

    def location(self, name: str) -> TensorLocation:
        info = self.meta[name]
        begin, end = info["data_offsets"]
        shape = tuple(info["shape"])
        dtype = dtype_name(info["dtype"])
        want = itemsize(dtype)
        for d in shape:
            want *= d
        if end - begin != want:
            raise GlmtrtError(f"{self.path.name}: tensor {name} has {end - begin} bytes for shape {shape} "
                              f"{info['dtype']}", expected=f"{want} bytes", fix="download the file again")
        return TensorLocation(self.path, self.data_start + begin, end - begin, dtype, shape)


def _safetensors_header(path: Path) -> bytes:
    """The raw header bytes (length prefix included), validated against the file size."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise GlmtrtError(f"{path} is truncated ({size} bytes)", expected="a safetensors file",
                              fix="download the file again")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8 or n > 100 * 2**20:
            raise GlmtrtError(f"{path} has a corrupt header (claims {n} header bytes in a {size}-byte file)",
                              expected="a safetensors file", fix="download the file again")
        header = f.read(n)
    try:
        meta = json.loads(header)
        end = max((v["data_offsets"][1] for k, v in meta.items() if k != "__metadata__"), default=0)
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, IndexError) as exc:
        raise GlmtrtError(f"{path} has a corrupt header ({exc})", fix="download the file again") from exc
    if 8 + n + end > size:
        raise GlmtrtError(f"{path} is truncated: its header needs {8 + n + end} bytes, the file has {size}",
                          expected="a complete safetensors file", fix="download the file again")
    return head + header


class HFCheckpoint:
    """Names, shapes and lazily-loaded tensors of an HF model directory."""

    def __init__(self, model_dir: str | Path, *, allow_pickle: bool = False):
        self.dir = Path(model_dir)
        self.config: dict[str, Any] = read_hf_config(self.dir)
        self._where: dict[str, Path] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._dtypes: dict[str, str] = {}
        self._handles: dict[Path, _SafetensorsFile] = {}
        self._pickled: dict[Path, dict[str, Any]] = {}     # torch tensors (pickle sources only)
        self._fds: dict[Path, int] = {}
        self.weight_files: list[Path] = self._discover(allow_pickle)
        self._index()

    # ---- discovery --------------------------------------------------------------
    def _discover(self, allow_pickle: bool) -> list[Path]:
        d = self.dir
        if (d / _ST_INDEX).is_file():
            return self._from_index(d / _ST_INDEX)
        st = sorted(d.glob("*.safetensors"))
        if st:
            return st
        bins = sorted(d.glob("*.bin"))
        if (d / _BIN_INDEX).is_file() or bins:
            if not allow_pickle:
                raise GlmtrtError(
                    f"{d} holds only pickle (.bin) weights",
                    expected="safetensors weights (pickle files can execute code when loaded)",
                    fix="pass --allow-pickle to read them with torch.load(weights_only=True), "
                        "or convert them to safetensors first")
            return self._from_index(d / _BIN_INDEX) if (d / _BIN_INDEX).is_file() else bins
        raise GlmtrtError(f"no weights found in {d}",
                          expected="model.safetensors, model-0000x-of-0000y.safetensors (+ index) or *.bin")

    def _from_index(self, index: Path) -> list[Path]:
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (json.JSONDecodeError, KeyError, UnicodeDecodeError) as exc:
            raise GlmtrtError(f"{index} is not a valid index ({exc})", expected="a JSON object with 'weight_map'")
        files = sorted({self.dir / f for f in weight_map.values()})
        absent = [f.name for f in files if not f.is_file()]
        if absent:
            raise GlmtrtError(f"{index.name} lists missing shard(s): {', '.join(absent)}",
                              fix="download every shard of the checkpoint")
        return files

    def _index(self) -> None:
        for path in self.weight_files:
            if path.suffix == ".safetensors":
                handle = _SafetensorsFile(path)
                self._handles[path] = handle
                for name, info in handle.meta.items():
                    self._add(name, path, tuple(info["shape"]), dtype_name(info["dtype"]))
            else:
                import torch

                try:
                    sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
                except Exception as exc:  # torch raises many types for bad pickles
                    raise GlmtrtError(f"{path} cannot be loaded with weights_only=True ({exc})") from exc
                self._pickled[path] = sd
                for name, t in sd.items():
                    self._add(name, path, tuple(t.shape), dtype_name(t.dtype))

    def _add(self, name: str, path: Path, shape: tuple[int, ...], dtype: str) -> None:
        if name in self._where:
            raise GlmtrtError(f"tensor {name} appears in both {self._where[name].name} and {path.name}")
        self._where[name], self._shapes[name], self._dtypes[name] = path, shape, dtype

    # ---- access -----------------------------------------------------------------
    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return dict(self._shapes)

    def dtype(self, name: str) -> str:
        """Canonical dtype name of a tensor ("float16", "bfloat16", ...)."""
        return self._dtypes[name]

    def _path(self, name: str) -> Path:
        path = self._where.get(name)
        if path is None:
            raise GlmtrtError(f"tensor {name} is not in the checkpoint")
        return path

    def location(self, name: str) -> TensorLocation | None:
        """Byte range of a safetensors tensor; None for a pickled one."""
        path = self._path(name)
        return None if path in self._pickled else self._handles[path].location(name)

    def fd(self, path: Path) -> int:
        """A read-only descriptor of a weight file (opened once, closed by `close()`)."""
        if path not in self._fds:
            self._fds[path] = os.open(path, os.O_RDONLY)
        return self._fds[path]

    def read_rows(self, name: str, start: int, stop: int):
        """Rows [start, stop) of a tensor as a numpy array (a 1-D tensor's rows are its elements),
        read with one positioned read straight into the returned array."""
        path = self._path(name)
        if path in self._pickled:
            return _torch_to_numpy(self._pickled[path][name])[start:stop]
        loc = self._handles[path].location(name)
        row_bytes = loc.nbytes // loc.shape[0] if loc.shape[0] else 0
        return self._pread(path, loc, (stop - start,) + loc.shape[1:], loc.offset + start * row_bytes)

    def array(self, name: str):
        """One whole tensor as a numpy array (bfloat16/float8 through ml_dtypes)."""
        path = self._path(name)
        if path in self._pickled:
            return _torch_to_numpy(self._pickled[path][name])
        loc = self._handles[path].location(name)
        return self._pread(path, loc, loc.shape, loc.offset)

    def _pread(self, path: Path, loc: TensorLocation, shape: tuple[int, ...], offset: int):
        import numpy as np

        out = np.empty(shape, dtype=numpy_dtype(loc.dtype))
        view = memoryview(out.reshape(-1).view(np.uint8))
        pos = 0
        while pos < view.nbytes:
            n = os.preadv(self.fd(path), [view[pos:]], offset + pos)
            if not n:
                raise GlmtrtError(f"{path} ended while reading it", fix="download the file again")
            pos += n
        return out

    def get(self, name: str):
        """One tensor as a torch tensor (imports torch; the converter uses `array`/`read_rows`)."""
        from glmtrt.checkpoint.dtypes import numpy_to_torch

        path = self._path(name)
        if path in self._pickled:
            return self._pickled[path][name]
        return numpy_to_torch(self.array(name))

    def close(self) -> None:
        """Close the file descriptors opened by `fd`."""
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __enter__(self) -> "HFCheckpoint":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def fingerprint(self) -> dict[str, Any]:
        """Cheap identity of the source: sha256 of config.json, and of each weight file's
        name, size and safetensors header (reading whole weight files would double the cost)."""
        h = hashlib.sha256((self.dir / "config.json").read_bytes())
        files = []
        for path in self.weight_files:
            size = path.stat().st_size
            header = _safetensors_header(path) if path.suffix == ".safetensors" else b""
            h.update(path.name.encode() + str(size).encode() + header)
            files.append({"name": path.name, "bytes": size})
        return {"dir": str(self.dir.resolve()), "sha256": h.hexdigest(), "files": files,
                "architectures": self.config.get("architectures")}


def _torch_to_numpy(t):
    """numpy view of a CPU torch tensor, bfloat16/float8 reinterpreted through ml_dtypes."""
    import torch

    name = dtype_name(t.dtype)
    if name in ("bfloat16", "float8_e4m3fn", "float8_e5m2"):
        as_int = {1: torch.uint8, 2: torch.int16}[t.element_size()]
        return t.contiguous().view(as_int).numpy().view(numpy_dtype(name))
    return t.contiguous().numpy()
