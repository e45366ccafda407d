"""`convert_checkpoint`: HF checkpoint -> TensorRT-LLM 1.2.x checkpoint directory.

Streaming at copy speed, without torch: each row of the weight map is traced into segments of
source rows (glmtrt/convert/mapping.py `trace_row`). A segment that is whole rows of the target
dtype is copied file to file (kernel-side, like `cp`); one that needs a column split or a cast goes
through memory in blocks of rows. Each rank file is written and hashed on its own background
threads (glmtrt/checkpoint/file_sink.py) with a bound on bytes in flight, so peak memory is a
fixed window, not a tensor, and reading, writing and hashing overlap. The output appears
atomically with a manifest (sha256 of every file computed while writing, source fingerprint,
glmtrt version, resolved options).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from glmtrt.checkpoint.atomic import atomic_output_dir, check_output_dir
from glmtrt.checkpoint.dtypes import itemsize, numpy_dtype
from glmtrt.checkpoint.file_sink import ByteBudget
from glmtrt.checkpoint.hf_reader import HFCheckpoint
from glmtrt.checkpoint.manifest import write_manifest
from glmtrt.checkpoint.safetensors_stream import QUEUED_COPY_BYTES, WINDOW_BYTES, StreamingSafetensorsWriter
from glmtrt.convert.mapping import Row, Segment, ShardContext, check_plan, expand_rows, rank_shapes, trace_row
from glmtrt.errors import GlmtrtError
from glmtrt.models.registry import read_hf_config, resolve

log = logging.getLogger(__name__)

#: checkpoint dtypes `glmtrt convert` writes (names as in glmtrt/checkpoint/dtypes.py)
DTYPES = ("float32", "float16", "bfloat16")
#: bytes of source rows read per step when a segment goes through memory (column split or cast)
BLOCK_BYTES = 8 << 20
_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024
#: Source dtypes a GLM checkpoint's weights may have (safetensors codes and torch names).
FLOAT_SOURCE_DTYPES = {"F16", "BF16", "F32", "F64", "float16", "bfloat16", "float32", "float64"}


def check_source_dtypes(ckpt, rows) -> None:
    """Every source tensor is floating point (int32 weights are a broken or foreign checkpoint)."""
    for row in rows:
        for name in row.sources:
            dt = ckpt.dtype(name)
            if dt not in FLOAT_SOURCE_DTYPES:
                raise GlmtrtError(f"tensor {name} has dtype {dt}: not a floating-point weight",
                                  expected="float16, bfloat16 or float32 weights (as HF ships GLM checkpoints)",
                                  fix="use the original checkpoint; quantized sources (GPTQ/AWQ) are not supported")


@dataclass(frozen=True)
class ConvertOptions:
    """Resolved options of one conversion (recorded in the manifest)."""

    dtype: str = "float16"
    tp_size: int = 1
    quant: str | None = None
    kv_cache_dtype: str | None = None
    chatglm_version: str | None = None
    allow_pickle: bool = False


def plan_conversion(src: str | Path, options: ConvertOptions):
    """Open the source, resolve the family and check the full plan; no weight is read."""
    if options.dtype not in DTYPES:
        raise GlmtrtError(f"unsupported dtype '{options.dtype}'", expected=" | ".join(DTYPES))
    if options.tp_size < 1:
        raise GlmtrtError(f"tp_size {options.tp_size}", expected="an integer >= 1")
    ckpt = HFCheckpoint(src, allow_pickle=options.allow_pickle)
    entry = resolve(ckpt.config)
    spec = entry.spec_from_config(ckpt.config, options.chatglm_version)
    rows = expand_rows(entry.layer_rows(spec), entry.global_rows(spec), spec.num_layers)
    check_plan(rows, ckpt.shapes, entry.ignored)
    check_source_dtypes(ckpt, rows)
    ctx = ShardContext(options.tp_size, spec.num_heads, spec.num_kv_heads, spec.head_size)
    shapes = {r.target: rank_shapes(r, ctx) for r in rows}   # validates divisibility up front
    config = entry.trtllm_config(spec, dtype=options.dtype, tp_size=options.tp_size,
                                 quant=options.quant, kv_cache_dtype=options.kv_cache_dtype)
    return ckpt, entry, spec, rows, ctx, shapes, config


def write_checkpoint_meta(tmp: Path, config: dict, hashes: dict, ckpt, entry, spec, options: dict) -> None:
    """config.json plus the manifest (sha256 of every file, source fingerprint, options, model facts)."""
    cfg_path = tmp / "config.json"
    cfg_path.write_text(json.dumps(config, indent=4) + "\n", encoding="utf-8")
    hashes["config.json"] = hashlib.sha256(cfg_path.read_bytes()).hexdigest()
    write_manifest(tmp, "trtllm-checkpoint", hashes, source=ckpt.fingerprint(), options=options,
                   model={"family": entry.family, "hf_architecture": entry.architecture,
                          "source_format": entry.source_format, "chatglm_version": spec.chatglm_version,
                          "num_params": spec.num_params(), "eos_token_ids": list(spec.eos_token_ids),
                          "pad_token_id": spec.pad_token_id})


def convert_checkpoint(src: str | Path, out: str | Path, *, dtype: str = "float16", tp_size: int = 1,
                       quant: str | None = None, kv_cache_dtype: str | None = None,
                       chatglm_version: str | None = None, allow_pickle: bool = False,
                       force: bool = False, progress: bool = True,
                       window_bytes: int = WINDOW_BYTES) -> Path:
    """Convert an HF ChatGLM3/GLM-4 checkpoint at `src` into a TRT-LLM checkpoint at `out`.

    `window_bytes` bounds the tensor bytes held in memory at once (all rank files together).
    """
    if quant in ("int8-sq", "int4-awq", "fp8") or kv_cache_dtype:
        raise GlmtrtError(f"quant={quant} kv_cache_dtype={kv_cache_dtype} needs calibration",
                          expected="int8-wo, int4-wo or no quant here",
                          fix="use glmtrt.quant.convert_calibrated (`glmtrt convert --precision int8-sq|int4-awq`)")
    options = ConvertOptions(dtype, tp_size, quant, kv_cache_dtype, chatglm_version, allow_pickle)
    family_convert = resolve(read_hf_config(src)).convert
    if family_convert is not None:   # e.g. glm4v: llm/ + vision/ under one manifest
        return family_convert(src, out, options, force=force, progress=progress)
    check_output_dir(out, force)
    ckpt, entry, spec, rows, ctx, shapes, config = plan_conversion(src, options)
    log.info("converting %s (%s, %s, %d layers) -> %s [%s, tp=%d]", src, entry.architecture,
             spec.chatglm_version, spec.num_layers, out, dtype, tp_size)
    source_shapes = ckpt.shapes
    memory, queued = ByteBudget(window_bytes), ByteBudget(QUEUED_COPY_BYTES)
    with ckpt, atomic_output_dir(out, force) as tmp:
        writers = [StreamingSafetensorsWriter(tmp / f"rank{r}.safetensors",
                                              [(row.target, dtype, shapes[row.target][r]) for row in rows],
                                              memory=memory, queued=queued)
                   for r in range(tp_size)]
        try:
            for row in _progress(rows, progress):
                plans = trace_row(row, ctx, source_shapes)
                for w in writers:
                    w.begin(row.target)
                if _column_split(ckpt, row, plans, dtype):
                    for segs in zip(*plans):
                        _emit_columns(writers, ckpt, row.sources[segs[0].source], segs)
                else:
                    for r, w in enumerate(writers):
                        for seg in plans[r]:
                            _emit(w, ckpt, row, seg, dtype, shapes[row.target][r])
                for w in writers:
                    w.end()
            hashes = {w.path.name: w.close() for w in writers}
        except BaseException:
            for w in writers:
                w.abort()
            raise
        log.debug("peak bytes in memory %d (window %d)", memory.peak, window_bytes)
        write_checkpoint_meta(tmp, config, hashes, ckpt, entry, spec, asdict(options))
    log.info("wrote %s (%d rank file(s))", out, tp_size)
    return Path(out)


def _progress(rows: list[Row], show: bool):
    if not show:
        return rows
    from tqdm import tqdm

    return tqdm(rows, desc="convert", unit="tensor")


def _emit(w: StreamingSafetensorsWriter, ckpt: HFCheckpoint, row: Row, seg: Segment, dtype: str,
          rank_shape: Sequence[int]) -> None:
    """Append one segment of a rank tensor: zeros, a file-to-file copy, or blocks of rows that are
    column-split and/or cast in memory."""
    if seg.source < 0:
        w.append_zeros((seg.stop - seg.start) * math.prod(rank_shape[1:]) * itemsize(dtype))
        return
    name = row.sources[seg.source]
    loc = ckpt.location(name)
    shape = loc.shape if loc is not None else ckpt.shapes[name]
    row_bytes = math.prod(shape[1:]) * itemsize(ckpt.dtype(name))
    if loc is not None and seg.cols is None and loc.dtype == dtype:
        w.append_range(ckpt.fd(loc.path), loc.offset + seg.start * row_bytes, (seg.stop - seg.start) * row_bytes)
        return
    target = numpy_dtype(dtype)
    step = max(1, BLOCK_BYTES // max(1, row_bytes))
    for a in range(seg.start, seg.stop, step):
        block = ckpt.read_rows(name, a, min(seg.stop, a + step))
        if seg.cols is not None:
            block = block[:, seg.cols[0]:seg.cols[1]]
        w.append(np.ascontiguousarray(block.astype(target, copy=False)))
        del block


def _column_split(ckpt: HFCheckpoint, row: Row, plans: list[list[Segment]], dtype: str) -> bool:
    """True when the ranks take consecutive column ranges of the same source rows in the target
    dtype (row-parallel weights: dense, proj): then one read scatters every row to all ranks."""
    if len(plans) < 2 or len({len(p) for p in plans}) != 1:
        return False
    for segs in zip(*plans):
        first = segs[0]
        loc = ckpt.location(row.sources[first.source]) if first.source >= 0 else None
        if loc is None or loc.dtype != dtype or len(loc.shape) != 2:
            return False
        edges = [0] + [s.cols[1] if s.cols else -1 for s in segs]
        if any(s.source != first.source or (s.start, s.stop) != (first.start, first.stop) or s.cols is None
               or s.cols[0] != edges[k] for k, s in enumerate(segs)) or edges[-1] != loc.shape[1]:
            return False
    return True


def _emit_columns(writers: Sequence[StreamingSafetensorsWriter], ckpt: HFCheckpoint, name: str,
                  segs: Sequence[Segment]) -> None:
    """Blocks of rows read with one scattering `preadv` each: row i's column range of rank r lands
    in rank r's buffer, so the split costs no copy beyond the read."""
    loc = ckpt.location(name)
    dt = numpy_dtype(loc.dtype)
    row_bytes = loc.nbytes // loc.shape[0]
    fd = ckpt.fd(loc.path)
    step = max(1, min(BLOCK_BYTES // row_bytes, _IOV_MAX // len(segs)))
    for a in range(segs[0].start, segs[0].stop, step):
        n = min(step, segs[0].stop - a)
        parts = [np.empty((n, s.cols[1] - s.cols[0]), dtype=dt) for s in segs]
        views = [memoryview(p[i].view(np.uint8)) for i in range(n) for p in parts]
        _preadv_all(fd, views, loc.offset + a * row_bytes)
        del views
        for w, p in zip(writers, parts):
            w.append(p)


def _preadv_all(fd: int, views: list[memoryview], offset: int) -> None:
    first = 0
    while first < len(views):
        got = os.preadv(fd, views[first:first + _IOV_MAX], offset)
        if got == 0:
            raise GlmtrtError("a source file ended while reading it", fix="download the file again")
        offset += got
        while first < len(views) and got >= views[first].nbytes:
            got -= views[first].nbytes
            first += 1
        if got:
            views[first] = views[first][got:]
