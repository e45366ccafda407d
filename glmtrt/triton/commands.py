"""Click commands of the triton stage (thin: validate, log settings, call the library)."""
from __future__ import annotations

import click


def register(group: click.Group) -> None:
    """Add this stage's commands to the top-level group."""
