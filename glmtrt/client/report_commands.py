"""Click commands `glmtrt report` and `glmtrt eval`."""
from __future__ import annotations

import click


def register(group: click.Group) -> None:
    """Add report / eval to the top-level group."""
