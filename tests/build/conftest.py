"""Fixtures of the build-stage tests: tiny converted checkpoints (made once per session)."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_ckpts(tmp_path_factory):
    """{name: converted checkpoint dir} for fp16 tp1, bf16 tp1, int8-wo tp2."""
    from glmtrt.convert.pipeline import convert_checkpoint
    from glmtrt.models.chatglm.tiny import make_tiny_checkpoint

    root = tmp_path_factory.mktemp("build-ckpts")
    hf = make_tiny_checkpoint(root / "hf", fmt="chatglm", seed=0)
    out = {}
    for name, kw in {"fp16": dict(dtype="float16"), "bf16": dict(dtype="bfloat16"),
                     "int8wo-tp2": dict(dtype="float16", tp_size=2, quant="int8-wo")}.items():
        out[name] = convert_checkpoint(hf, root / name, progress=False, **kw)
    return out
