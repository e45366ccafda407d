"""`manifest.json` of every stage output: what is in the directory and where it came from."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from glmtrt import TRTLLM_TARGET_VERSION, __version__
from glmtrt.errors import GlmtrtError
from glmtrt.fileio import read_json_object, sha256_file

MANIFEST = "manifest.json"


def write_manifest(directory: Path, kind: str, files: dict[str, str], **sections: Any) -> Path:
    """Write `manifest.json` listing `files` ({name: sha256}) plus free-form sections."""
    directory = Path(directory)
    body = {
        "kind": kind,
        "glmtrt_version": __version__,
        "trtllm_target": TRTLLM_TARGET_VERSION,
        "files": {n: {"sha256": s, "bytes": (directory / n).stat().st_size} for n, s in sorted(files.items())},
        **sections,
    }
    path = directory / MANIFEST
    path.write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def read_manifest(directory: str | Path, kind: str | None = None) -> dict[str, Any]:
    """Parse a stage manifest; `kind` checks what sort of directory it is."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise GlmtrtError(f"{directory} has no {MANIFEST}",
                          expected=f"a directory written by glmtrt ({kind or 'any stage'})",
                          fix="produce it with `glmtrt convert` (checkpoints) or `glmtrt build` (engines)")
    body = read_json_object(path, MANIFEST)
    if kind is not None and body.get("kind") != kind:
        raise GlmtrtError(f"{path} describes a '{body.get('kind')}'", expected=f"a '{kind}' directory")
    return body


def verify_files(directory: str | Path) -> list[str]:
    """Names of files whose sha256 differs from the manifest (empty when intact)."""
    directory = Path(directory)
    body = read_manifest(directory)
    bad = []
    for name, info in body["files"].items():
        p = directory / name
        if not p.is_file() or sha256_file(p) != info["sha256"]:
            bad.append(name)
    return bad
