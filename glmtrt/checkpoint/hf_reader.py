"""Lazy reader of Hugging Face checkpoints: one tensor at a time.

Safetensors tensors are read with positioned reads straight from the file (header parsed once),
so only the tensor being converted is in memory: a memory map would keep every touched page
resident (and counted in RSS) until the file is closed.

Safetensors (single file, several files, or sharded with `model.safetensors.index.json`).
Pickle `.bin` checkpoints are refused unless `allow_pickle=True`, then read with
`torch.load(weights_only=True, mmap=True)`. No checkpoint code is ever executed.
"""
from __future__ import annotations

import hashlib
import json
import logging
import struct
from pathlib import Path
from typing import Any

import torch

from glmtrt.errors import GlmtrtError
from glmtrt.models.registry import read_hf_config

log = logging.getLogger(__name__)

_ST_INDEX = "model.safetensors.index.json"
_BIN_INDEX = "pytorch_model.bin.index.json"


_ST_TORCH = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
             "I8": torch.int8, "U8": torch.uint8, "I16": torch.int16, "I32": torch.int32, "I64": torch.int64,
             "BOOL": torch.bool}


class _SafetensorsFile:
    """Header of one safetensors file + positioned reads of single tensors."""

    def __init__(self, path: Path):
        self.path = path
        raw = _safetensors_header(path)
        self.data_start = len(raw)
        self.meta = {k: v for k, v in json.loads(raw[8:]).items() if k != "__metadata__"}
        for name, info in self.meta.items():
            if info.get("dtype") not in _ST_TORCH:
                raise GlmtrtError(f"{path.name}: tensor {name} has unsupported dtype {info.get('dtype')}")

    def read(self, name: str) -> torch.Tensor:
        info = self.meta[name]
        begin, end = info["data_offsets"]
        buf = bytearray(end - begin)
        with open(self.path, "rb", buffering=0) as f:
            f.seek(self.data_start + begin)
            view, got = memoryview(buf), 0
            while got < len(buf):
                n = f.readinto(view[got:])
                if not n:
                    raise GlmtrtError(f"{self.path} ended while reading {name}", fix="download the file again")
                got += n
        dtype = _ST_TORCH[info["dtype"]]
        if not buf:
            return torch.empty(info["shape"], dtype=dtype)
        return torch.frombuffer(buf, dtype=dtype).reshape(info["shape"])


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
        self._handles: dict[Path, Any] = {}
        self._pickled: dict[Path, dict[str, torch.Tensor]] = {}
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
                    self._add(name, path, tuple(info["shape"]), info["dtype"])
            else:
                try:
                    sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
                except Exception as exc:  # torch raises many types for bad pickles
                    raise GlmtrtError(f"{path} cannot be loaded with weights_only=True ({exc})") from exc
                self._pickled[path] = sd
                for name, t in sd.items():
                    self._add(name, path, tuple(t.shape), str(t.dtype).replace("torch.", ""))

    def _add(self, name: str, path: Path, shape: tuple[int, ...], dtype: str) -> None:
        if name in self._where:
            raise GlmtrtError(f"tensor {name} appears in both {self._where[name].name} and {path.name}")
        self._where[name], self._shapes[name], self._dtypes[name] = path, shape, dtype

    # ---- access -----------------------------------------------------------------
    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return dict(self._shapes)

    def dtype(self, name: str) -> str:
        return self._dtypes[name]

    def get(self, name: str) -> torch.Tensor:
        """Load one tensor (copied out of the memory map)."""
        path = self._where.get(name)
        if path is None:
            raise GlmtrtError(f"tensor {name} is not in the checkpoint")
        if path in self._pickled:
            return self._pickled[path][name]
        return self._handles[path].read(name)

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
