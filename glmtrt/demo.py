"""`glmtrt demo`: the whole pipeline on an embedded tiny model (filled in as stages land)."""
from __future__ import annotations

import click


def register(group: click.Group) -> None:
    """Add the demo command."""
