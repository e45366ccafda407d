"""One error type for everything a user can cause.

Messages say what was found, what was expected and how to fix it; the CLI prints
them without a traceback and exits non-zero.
"""
from __future__ import annotations


class GlmtrtError(Exception):
    """A user-facing error: bad input, a missing file, an impossible configuration."""

    def __init__(self, what: str, *, expected: str | None = None, fix: str | None = None):
        self.what = what
        self.expected = expected
        self.fix = fix
        parts = [what]
        if expected:
            parts.append(f"expected: {expected}")
        if fix:
            parts.append(f"fix: {fix}")
        super().__init__("\n  ".join(parts))
