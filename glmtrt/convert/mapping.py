"""The mapping engine: weight maps (data) -> checked per-rank plan.

A family declares `Row`s (target pattern, sources, named transforms, shard kind, full shape).
This module expands them over layers, checks completeness both ways (every source used or
explicitly ignored, every source present, every target shape right) and computes each rank's
tensor shapes on the meta device, so the writer can lay out files before reading any weight.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Mapping, Sequence

import torch

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


def shard_tensor(t: torch.Tensor, kind: str, rank: int, ctx: ShardContext) -> torch.Tensor:
    """Rank `rank`'s piece of a full target tensor (TensorRT-LLM chatglm/convert.py layout)."""
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


def check_plan(rows: Sequence[Row], source_shapes: Mapping[str, tuple[int, ...]],
               ignored: Iterable[str]) -> None:
    """Completeness both ways plus shapes; raises GlmtrtError naming the offending tensors."""
    ignored = tuple(ignored)
    wanted = {s for r in rows for s in r.sources}
    missing = sorted(wanted - set(source_shapes))
    if missing:
        raise GlmtrtError(
            f"the checkpoint lacks {len(missing)} tensor(s): {', '.join(missing[:8])}"
            + (" ..." if len(missing) > 8 else ""),
            expected="every weight of the architecture named in config.json",
            fix="check that all shards listed in the index are present and that config.json matches the weights")
    extra = sorted(n for n in source_shapes
                   if n not in wanted and not any(fnmatch.fnmatchcase(n, p) for p in ignored))
    if extra:
        raise GlmtrtError(
            f"the checkpoint has {len(extra)} tensor(s) the map does not use: {', '.join(extra[:8])}"
            + (" ..." if len(extra) > 8 else ""),
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


def rank_shapes(row: Row, ctx: ShardContext) -> list[tuple[int, ...]]:
    """Each rank's shape, computed by running the real shard function on a meta tensor."""
    meta = torch.empty(row.shape, device="meta")
    meta = T.PREPARE[row.prepare](meta)
    return [tuple(shard_tensor(meta, row.shard, r, ctx).shape) for r in range(ctx.tp_size)]


def materialize(row: Row, load: Callable[[str], torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    """Load, combine, cast and prepare one full target tensor."""
    sources = [load(s) for s in row.sources]
    t = T.COMBINE[row.combine](sources).to(dtype)
    return T.PREPARE[row.prepare](t).contiguous()
