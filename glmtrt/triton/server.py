"""`glmtrt serve`: a real Triton on CPU (placeholder until filled)."""
from __future__ import annotations

import click


def register(group: click.Group) -> None:
    """Add the serve command."""
