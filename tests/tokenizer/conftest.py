"""Fixtures of the tokenizer tests: the real tokenizer files (skipped when absent) and the tiny one."""
from __future__ import annotations

from pathlib import Path

import pytest

# tests/tokenizer/conftest.py -> parents[2] is the repo root; the real files live beside it.
MODELS = Path(__file__).resolve().parents[2] / ".." / "shared" / "models"
CHATGLM3_DIR = MODELS / "chatglm3-6b"
GLM4_DIR = MODELS / "glm-4-9b-chat"

# Chinese, English, emoji (4-byte UTF-8), a rare CJK character, whitespace runs and newlines.
TEXTS = [
    "你好，世界! Hello",
    "TensorRT-LLM 把检查点编译成引擎，Triton 负责提供服务。",
    "The quick brown fox 🦊 jumps over the lazy dog 🐶!",
    "emoji mix: 😀😃😄 👨‍👩‍👧 ❤️ 🇨🇳 and 龘靐齉 (rare)",
    "  leading spaces\n\nnew lines\tand tabs  \n  ",
    "代码：def f(x):\n    return x ** 2  # 平方\n",
    "数字 1234567890 与符号 ¥€£ ½ ≠ ≤ ∑ ∫",
]


def _need(path: Path) -> Path:
    if not (path / "tokenizer.model").is_file():
        pytest.skip(f"real tokenizer files not available at {path.resolve()} (../shared/models of the repo)")
    return path


@pytest.fixture(scope="session")
def chatglm3_dir() -> Path:
    return _need(CHATGLM3_DIR)


@pytest.fixture(scope="session")
def glm4_dir() -> Path:
    return _need(GLM4_DIR)


@pytest.fixture(scope="session")
def chatglm3(chatglm3_dir):
    from glmtrt.tokenizer import load_tokenizer

    return load_tokenizer(chatglm3_dir)


@pytest.fixture(scope="session")
def glm4(glm4_dir):
    from glmtrt.tokenizer import load_tokenizer

    return load_tokenizer(glm4_dir)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    from glmtrt.tokenizer.tiny import make_tiny_chatglm3_tokenizer

    return make_tiny_chatglm3_tokenizer(tmp_path_factory.mktemp("tiny_tok"))


@pytest.fixture(scope="session")
def tiny(tiny_dir):
    from glmtrt.tokenizer import load_tokenizer

    return load_tokenizer(tiny_dir)


@pytest.fixture(scope="session")
def texts() -> list[str]:
    return list(TEXTS)
