"""What a model family declares for calibrated quantization: its smoothing groups."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SmoothGroup:
    """One quantized linear of a decoder layer and what feeds it.

    linear: target prefix of the linear inside a layer ("attention.qkv").
    norm: the norm that feeds it (its smoothing is folded into the norm weight, which gains
        `scale_to_int`); None when the linear keeps its own `smoother` (1, in) instead.
    input_scale: name of the static input scale of a linear without a norm
        ("attention.quantization_scaling_factor").
    segments: output-row sizes of a fused linear quantized per tensor piecewise (q, k, v);
        None = one tensor.
    shard: how the linear's weight rows/columns split over TP ranks (glmtrt.convert.mapping kinds).
    in_features: input width.
    """

    linear: str
    in_features: int
    shard: str
    norm: str | None = None
    input_scale: str | None = None
    segments: tuple[int, ...] | None = None

    @property
    def column_parallel(self) -> bool:
        """True when the weight splits by output rows (the input is replicated on every rank)."""
        return self.shard != "cols"

    @property
    def scale_to_int_name(self) -> str:
        """The tensor that holds the static input scale (or the per-token placeholder)."""
        return f"{self.norm}.scale_to_int" if self.norm else str(self.input_scale)
