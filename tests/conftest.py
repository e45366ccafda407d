"""Shared fixtures: paths to the real model files in ../shared/models (skip when absent)."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_MODELS = (REPO / ".." / "shared" / "models").resolve()


def shared_model(name: str) -> Path:
    """Path of a real model folder in ../shared/models, or skip the test with the reason."""
    path = SHARED_MODELS / name
    if not (path / "config.json").is_file():
        pytest.skip(f"real model files absent: {path} (only present in the glmtrt workplace; see "
                    "shared/models/README.md)")
    return path
