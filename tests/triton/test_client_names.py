"""The client sends the input names of the repository it talks to (issue 7 item 4).

A T4 (0.13) repository's ensemble / BLS declare `min_length` / `random_seed` (tensorrtllm_backend
v0.13.0 all_models/inflight_batcher_llm/ensemble/config.pbtxt and tensorrt_llm_bls/config.pbtxt);
1.2.x declares `min_tokens` / `seed` (TensorRT-LLM 1.2.x triton_backend/all_models/...). The client
reads the model config from the server; here the config comes from a generated repository,
converted to JSON the way tritonclient's get_model_config(as_json=True) returns it.
"""
from __future__ import annotations

import pytest
from google.protobuf import json_format

from glmtrt.client.stream import build_inputs, request_names
from glmtrt.errors import GlmtrtError
from glmtrt.tokenizer.tiny import make_tiny_chatglm3_tokenizer
from glmtrt.triton.check import parse_config
from glmtrt.triton.generator import RepoOptions, generate_repository
from tests.triton.test_generator import make_engine


def _config_json(repo, model):
    cfg = parse_config((repo / model / "config.pbtxt").read_text(encoding="utf-8"))
    return {"config": json_format.MessageToDict(cfg, preserving_proto_field_name=True)}


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("names")
    tok = make_tiny_chatglm3_tokenizer(tmp / "tok")
    out = {}
    for toolchain, guided in (("0.13.0", None), ("1.2.1", None), ("1.2.1", "xgrammar")):
        eng = make_engine(tmp / f"e{toolchain}{guided}", tp=1, toolchain=toolchain, paged_fmha=False)
        out[(toolchain, guided)] = generate_repository(RepoOptions(source=eng, tokenizer=tok, guided_decoding=guided,
                                                                   output=tmp / f"r{toolchain}{guided}"))
    return out


@pytest.mark.parametrize("model", ["ensemble", "tensorrt_llm_bls"])
def test_names_follow_the_repository(repos, model):
    old = request_names(_config_json(repos[("0.13.0", None)], model))
    new = request_names(_config_json(repos[("1.2.1", None)], model))
    assert old == {"seed": "random_seed", "min_tokens": "min_length"}
    assert new == {"seed": "seed", "min_tokens": "min_tokens"}
    sent = {t.name() for t in build_inputs("你好", max_tokens=4, seed=7, min_tokens=2, names=old)}
    assert {"random_seed", "min_length"} <= sent and not {"seed", "min_tokens"} & sent
    declared = set(request_names(_config_json(repos[("1.2.1", "xgrammar")], model)).values())
    assert {"guided_decoding_guide_type", "guided_decoding_guide"} <= declared


def test_guided_decoding_inputs(repos):
    names = request_names(_config_json(repos[("1.2.1", "xgrammar")], "ensemble"))
    inputs = {t.name(): t for t in build_inputs("x", max_tokens=4, names=names,
                                                guided_decoding=("json_schema", '{"type": "object"}'))}
    assert inputs["guided_decoding_guide_type"].datatype() == "BYTES" and "guided_decoding_guide" in inputs
    assert "guided_decoding_guide" not in {t.name() for t in build_inputs("x", max_tokens=4, names=names,
                                                                          guided_decoding=("json", None))}
    plain = request_names(_config_json(repos[("1.2.1", None)], "ensemble"))
    with pytest.raises(GlmtrtError, match="--guided-decoding xgrammar"):
        build_inputs("x", max_tokens=4, names=plain, guided_decoding=("json", None))
    with pytest.raises(GlmtrtError, match="guide type"):
        build_inputs("x", max_tokens=4, names=names, guided_decoding=("yaml", "a"))
