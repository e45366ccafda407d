"""Fixtures: tiny random GLM sources (glmtrt.models.chatglm.tiny) converted by the real pipeline."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from glmtrt.convert.pipeline import convert_checkpoint
from glmtrt.models.chatglm.tiny import make_tiny_checkpoint


class TinyFactory:
    """Builds (and caches per session) tiny sources, their conversions and loaded models."""

    def __init__(self, root: Path):
        self.root = root
        self._cache: dict = {}

    def _cached(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def source(self, fmt: str = "chatglm", seed: int = 0, **dims) -> Path:
        name = f"src-{fmt}-{seed}-" + "-".join(f"{k}{v}" for k, v in sorted(dims.items()))
        return self._cached(("src", name), lambda: make_tiny_checkpoint(self.root / name, fmt=fmt,
                                                                        seed=seed, **dims))

    def checkpoint(self, fmt: str = "chatglm", seed: int = 0, dtype: str = "float32", tp: int = 1,
                   **dims) -> Path:
        src = self.source(fmt, seed, **dims)
        out = self.root / f"ckpt-{src.name}-{dtype}-tp{tp}"
        return self._cached(("ckpt", out), lambda: convert_checkpoint(src, out, dtype=dtype, tp_size=tp,
                                                                      progress=False))

    def hf_model(self, fmt: str = "chatglm", seed: int = 0, **dims):
        from glmtrt.models.chatglm.hf_glm import load_hf_glm

        src = self.source(fmt, seed, **dims)
        return self._cached(("hf", src), lambda: load_hf_glm(src))


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> TinyFactory:
    return TinyFactory(tmp_path_factory.mktemp("reference"))


@pytest.fixture(scope="session")
def prompt_ids() -> torch.Tensor:
    """Two fixed prompts of 19 tokens in the tiny vocabulary (128)."""
    return torch.randint(0, 128, (2, 19), generator=torch.Generator().manual_seed(7))


def hf_logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(ids).logits.float()
