"""Fixtures for the deployment tests: GPU repositories generated from fake engine dirs."""
from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("yaml")
pytest.importorskip("kubernetes_validate")


@pytest.fixture(scope="session")
def deploy_tok(tmp_path_factory) -> Path:
    from glmtrt.tokenizer.tiny import make_tiny_chatglm3_tokenizer

    return make_tiny_chatglm3_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="session")
def make_repo(tmp_path_factory, deploy_tok):
    """make_repo(tp, toolchain) -> a `glmtrt repo` GPU repository of a fake engine (cached)."""
    from glmtrt.triton.generator import RepoOptions, generate_repository
    from tests.triton.test_generator import make_engine

    cache: dict = {}

    def make(tp: int = 1, toolchain: str = "0.13.0") -> Path:
        if (tp, toolchain) not in cache:
            work = tmp_path_factory.mktemp(f"repo-tp{tp}-{toolchain}")
            eng = make_engine(work / "engine", tp=tp, toolchain=toolchain, paged_fmha=toolchain != "0.13.0")
            cache[tp, toolchain] = generate_repository(RepoOptions(
                source=eng, tokenizer=deploy_tok, output=work / "chatglm3_int8", engine_path="/engines/chatglm3",
                max_batch_size=8))
        return cache[tp, toolchain]

    return make
