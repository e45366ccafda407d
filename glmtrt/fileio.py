"""Small file helpers shared by every stage: JSON objects with clear errors, streaming sha256."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from glmtrt.errors import GlmtrtError


def read_json_object(path: str | Path, what: str = "file", *, missing_ok: bool = False) -> dict[str, Any]:
    """Parse a JSON object; errors name the file. `missing_ok` returns {} for an absent file."""
    path = Path(path)
    if not path.is_file():
        if missing_ok:
            return {}
        raise GlmtrtError(f"{what} not found: {path}", fix="check the path; it is written by the previous stage")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:     # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise GlmtrtError(f"{path} is not valid JSON ({exc})", expected="a JSON object",
                          fix="restore or regenerate the file") from None
    if not isinstance(data, dict):
        raise GlmtrtError(f"{path} holds a {type(data).__name__}", expected="a JSON object")
    return data


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
