"""The mapping engine: weight maps (data) -> checked per-rank plan.

A family declares `Row`s (target pattern, sources, named transforms, shard kind, full shape).
This module expands them over layers, checks completeness both ways (every source used or
explicitly ignored, every source present, every target shape right), and traces each row: the
transforms run on an index grid (one cell per source row and column block) and tell, for every
rank, which source rows and columns make up each output row (`trace_row` -> `Segment`s). The
writer lays out the files from those shapes before reading any weight, and the converter copies
the segments without ever building the full tensor.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from glmtrt.checkpoint.dtypes import numpy_dtype
from glmtrt.convert import transforms as T
from glmtrt.errors import GlmtrtError

SHARDS = ("replicate", "rows", "cols", "halves", "qkv", "vocab_rows")


@dataclass(frozen=True)
class Row:
    """One target tensor: `sources` -> combine -> prepare -> cast -> shard -> `target`."""

    target: str
    sources: tuple[str, ...]
    shape: tuple[int, ...]              # full (unsharded) target shape
    combine: str = "single"             # key of transforms.COMBINE
    prepare: str = "none"               # key of transforms.PREPARE
    shard: str = "replicate"            # one of SHARDS

    def for_layer(self, i: int) -> "Row":
        return replace(self, target=self.target.format(i=i),
                       sources=tuple(s.format(i=i) for s in self.sources))


@dataclass(frozen=True)
class ShardContext:
    """What the shard functions need to know about the model."""

    tp_size: int
    num_heads: int
    num_kv_heads: int
    head_size: int


def shard_tensor(t: np.ndarray, kind: str, rank: int, ctx: ShardContext) -> np.ndarray:
    """Rank `rank`'s piece of a full target array (TensorRT-LLM chatglm/convert.py layout)."""
    tp = ctx.tp_size
    if kind == "replicate":
        return t
    if kind == "rows":
        return T.split_dim(t, rank, tp, 0)
    if kind == "cols":
        return T.split_dim(t, rank, tp, 1)
    if kind == "halves":
        return T.split_halves(t, rank, tp)
    if kind == "qkv":
        return T.split_qkv(t, rank, tp, num_heads=ctx.num_heads, num_kv_heads=ctx.num_kv_heads,
                           head_size=ctx.head_size)
    if kind == "vocab_rows":
        return T.split_dim(T.pad_rows(t, tp), rank, tp, 0)
    raise ValueError(f"unknown shard kind {kind!r}; known: {SHARDS}")


def expand_rows(layer_rows: Sequence[Row], global_rows: Sequence[Row], num_layers: int) -> list[Row]:
    """Global rows first, then every layer's rows in layer order."""
    rows = list(global_rows)
    for i in range(num_layers):
        rows.extend(r.for_layer(i) for r in layer_rows)
    return rows


def combined_shape(row: Row, source_shapes: Mapping[str, tuple[int, ...]]) -> tuple[int, ...]:
    shapes = [tuple(source_shapes[s]) for s in row.sources]
    if row.combine == "single":
        return shapes[0]
    if row.combine == "concat_rows":
        if any(s[1:] != shapes[0][1:] for s in shapes):
            raise GlmtrtError(f"sources of {row.target} cannot be concatenated: "
                              + ", ".join(f"{n} {s}" for n, s in zip(row.sources, shapes)),
                              expected="equal trailing dimensions")
        return (sum(s[0] for s in shapes),) + shapes[0][1:]
    raise ValueError(f"unknown combine {row.combine!r}")


def name_list(names: Sequence[str], show: int = 8) -> str:
    """The first `show` names, comma-separated, with " ..." when there are more."""
    return ", ".join(names[:show]) + (" ..." if len(names) > show else "")


def lacks_error(missing: Sequence[str], *, expected: str, fix: str, what: str = "tensor(s)",
                show: int = 8) -> GlmtrtError:
    """The error for a checkpoint without some tensors, naming the first `show` of them."""
    return GlmtrtError(f"the checkpoint lacks {len(missing)} {what}: {name_list(missing, show)}",
                       expected=expected, fix=fix)


def check_plan(rows: Sequence[Row], source_shapes: Mapping[str, tuple[int, ...]],
               ignored: Iterable[str]) -> None:
    """Completeness both ways plus shapes; raises GlmtrtError naming the offending tensors."""
    ignored = tuple(ignored)
    wanted = {s for r in rows for s in r.sources}
    missing = sorted(wanted - set(source_shapes))
    if missing:
        raise lacks_error(missing, expected="every weight of the architecture named in config.json",
                          fix="check that all shards listed in the index are present and that config.json "
                              "matches the weights")
    extra = sorted(n for n in source_shapes
                   if n not in wanted and not any(fnmatch.fnmatchcase(n, p) for p in ignored))
    if extra:
        raise GlmtrtError(
            f"the checkpoint has {len(extra)} tensor(s) the map does not use: {name_list(extra)}",
            expected="only the weights of the architecture in config.json",
            fix="the weights do not match config.json (e.g. more layers than num_layers) or the model "
                "is a variant glmtrt does not know")
    for r in rows:
        got = combined_shape(r, source_shapes)
        if tuple(got) != tuple(r.shape):
            raise GlmtrtError(
                f"tensor {r.sources[0] if len(r.sources) == 1 else r.sources} has shape {tuple(got)} "
                f"(for {r.target})", expected=f"{tuple(r.shape)} from config.json",
                fix="config.json and the weights disagree; use the checkpoint's own config.json")


def materialize(row: Row, load: Callable[[str], np.ndarray], dtype) -> np.ndarray:
    """Load, combine, cast and prepare one full target array (the reference for `trace_row`;
    the converter streams segments instead)."""
    sources = [load(s) for s in row.sources]
    t = T.COMBINE[row.combine](sources).astype(numpy_dtype(dtype), copy=False)
    return np.ascontiguousarray(T.PREPARE[row.prepare](t))


@dataclass(frozen=True)
class Segment:
    """Consecutive output rows taken from one source: rows [start, stop) of `row.sources[source]`
    (its 2-D rows; a 1-D tensor's rows are its elements), element columns `cols` of each
    (None: whole rows). `source == -1`: `stop - start` rows of zeros."""

    source: int
    start: int
    stop: int
    cols: tuple[int, int] | None = None


def _grids(shapes: Sequence[tuple[int, ...]], blocks: int) -> tuple[list[np.ndarray], np.ndarray]:
    """One index grid per source: cell (i, j) = 1 + global id of (source, row i, column block j);
    0 is left for padding. Returns the grids and each source's first id."""
    grids, firsts, nxt = [], [], 0
    for shape in shapes:
        g = 1 if len(shape) < 2 else blocks
        ids = np.arange(nxt, nxt + shape[0] * g, dtype=np.int64) + 1
        grids.append(ids.reshape((shape[0], g)) if len(shape) >= 2 else ids)
        firsts.append(nxt)
        nxt += shape[0] * g
    return grids, np.asarray(firsts, dtype=np.int64)


def trace_row(row: Row, ctx: ShardContext, source_shapes: Mapping[str, tuple[int, ...]]) -> list[list[Segment]]:
    """Each rank's output rows as `Segment`s, found by running the row's transforms on index grids.

    2-D sources get `tp_size` column blocks (the only column operation is the 1/tp split);
    raises ValueError when a transform is not such a layout (then it cannot be streamed).
    """
    shapes = [tuple(source_shapes[s]) for s in row.sources]
    blocks = ctx.tp_size
    grids, firsts = _grids(shapes, blocks)
    full = T.PREPARE[row.prepare](T.COMBINE[row.combine](grids))
    out = []
    for r in range(ctx.tp_size):
        g = shard_tensor(full, row.shard, r, ctx)
        out.append(_segments(g if g.ndim == 2 else g[:, None], firsts, shapes, blocks, row.target))
    return out


def _segments(g: np.ndarray, firsts: np.ndarray, shapes, blocks: int, target: str) -> list[Segment]:
    zero = g == 0
    zrow = zero.all(axis=1)
    if (zero.any(axis=1) & ~zrow).any():
        raise ValueError(f"{target}: a transform mixes padding and data in one row")
    v = np.where(zero, 1, g) - 1
    src = np.searchsorted(firsts, v, side="right") - 1
    local = v - firsts[src]
    widths = np.array([1 if len(s) < 2 else blocks for s in shapes], dtype=np.int64)
    w = widths[src]
    i, j = local // w, local % w
    s0, i0, j0 = src[:, 0], i[:, 0], j[:, 0]
    ok = (src == s0[:, None]) & (i == i0[:, None]) & (j == j0[:, None] + np.arange(g.shape[1]))
    if not ok[~zrow].all():
        raise ValueError(f"{target}: a transform is not a selection of source rows and column blocks")
    s0, i0, j0 = np.where(zrow, -1, s0), np.where(zrow, 0, i0), np.where(zrow, 0, j0)
    n = len(s0)
    if n == 0:
        return []
    brk = np.ones(n, dtype=bool)
    brk[1:] = (s0[1:] != s0[:-1]) | (j0[1:] != j0[:-1]) | ((i0[1:] != i0[:-1] + 1) & (s0[1:] >= 0))
    starts = np.flatnonzero(brk)
    stops = np.append(starts[1:], n)
    segs = []
    for a, b in zip(starts.tolist(), stops.tolist()):
        s = int(s0[a])
        if s < 0:
            segs.append(Segment(-1, 0, b - a))
            continue
        shape = shapes[s]
        cols = None
        if len(shape) >= 2 and g.shape[1] != blocks:
            T.check_divisible(shape[1], blocks, f"dimension 1 of shape {shape}")
            cw = shape[1] // blocks
            cols = (int(j0[a]) * cw, (int(j0[a]) + g.shape[1]) * cw)
        segs.append(Segment(s, int(i0[a]), int(i0[a]) + b - a, cols))
    return segs


def segments_shape(segs: Sequence[Segment], full_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of the rank tensor that `segs` make up (`full_shape`: the unsharded target)."""
    rows = sum(s.stop - s.start for s in segs)
    if len(full_shape) < 2:
        return (rows,)
    cols = next((s.cols[1] - s.cols[0] for s in segs if s.cols is not None), full_shape[1])
    return (rows, cols) + tuple(full_shape[2:])


def rank_shapes(row: Row, ctx: ShardContext) -> list[tuple[int, ...]]:
    """Each rank's shape (validates divisibility), from the trace of the full target shape."""
    one = replace(row, sources=("full",), combine="single")
    traced = trace_row(one, ctx, {"full": tuple(row.shape)})
    return [segments_shape(segs, tuple(row.shape)) for segs in traced]
