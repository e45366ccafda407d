"""Sizes every decoder spec derives the same way from its head counts (mixin of the family specs)."""
from __future__ import annotations


class AttentionSizes:
    """q/kv/fused-qkv row counts from num_heads, num_kv_heads and head_size."""

    num_heads: int
    num_kv_heads: int
    head_size: int

    @property
    def q_size(self) -> int:
        return self.num_heads * self.head_size

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_size

    @property
    def qkv_rows(self) -> int:
        return self.q_size + 2 * self.kv_size
