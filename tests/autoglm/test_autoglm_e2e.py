"""The client side against the real multimodal repository on a CPU Triton (tiny Glm4v, the j11s stand-in):
generate --image, bench --image (per-stage latency from real statistics and the BLS image_info), and the OpenAI
endpoint's image_url — each answer equal to transformers' greedy answer for the same image and prompt."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from glmtrt.cli import main
from tests.triton.test_multimodal import (IMAGES, MAX_TOKENS, expected_tokens, facts, mm_model, mm_repo,  # noqa: F401
                                          mm_tok)

pytestmark = [pytest.mark.triton, pytest.mark.slow]
PROMPT = "这张截图里有什么？"


@pytest.fixture(scope="module")
def mm_server(mm_repo):  # noqa: F811
    """One real CPU Triton serving the tiny multimodal repository for this module."""
    pytest.importorskip("tritonclient.grpc")
    import os

    from glmtrt.triton.server import TritonServer

    if os.uname().machine != "x86_64":
        pytest.skip("nvidia-pytriton's tritonserver is x86_64 only")
    with TritonServer(mm_repo, ready_timeout=240) as srv:
        yield srv


@pytest.fixture(scope="module")
def shot(tmp_path_factory):
    p = tmp_path_factory.mktemp("shot") / "shot.png"
    p.write_bytes(IMAGES[0])
    return p


@pytest.fixture(scope="module")
def want(mm_model, mm_tok, facts, shot):  # noqa: F811
    return mm_tok[1].decode(expected_tokens(mm_model[0], mm_tok[1], facts, PROMPT, [shot.read_bytes()]))


def test_generate_image_equals_transformers(mm_server, shot, want, tmp_path):  # noqa: F811
    from glmtrt.client.stream import generate

    got = generate(mm_server.grpc_url, PROMPT, images=[shot.read_bytes()], max_tokens=MAX_TOKENS, temperature=0.0)
    assert got == want and got
    r = CliRunner().invoke(main, ["generate", mm_server.grpc_url, PROMPT, "--image", str(shot), "--max-tokens",
                                  str(MAX_TOKENS), "--temperature", "0", "--autoglm"])
    assert want in r.output
    # a random tiny model does not speak AutoGLM: the parser says so (exit 1), with the JSON result
    assert r.exit_code == 1 and "not a valid AutoGLM action" in r.output and '"error":' in r.output


def test_bench_image_stages_from_the_server(mm_server, shot, tmp_path):  # noqa: F811
    out = tmp_path / "b"
    r = CliRunner().invoke(main, ["bench", mm_server.grpc_url, "--out", str(out), "--image", str(shot),
                                  "--num-requests", "3", "--warmup", "0", "--concurrency", "1", "--max-tokens", "4",
                                  "--metrics-url", "", "--no-progress", "--dataset", "builtin-zh-en"])
    assert r.exit_code == 0, r.output
    lv = json.loads((out / "c1" / "summary.json").read_text("utf-8"))
    st = lv["stage_latency"]
    assert lv["requests"]["successful"] == 3 and st["per_request"]
    for key in ("upload_decode", "preprocessing", "vision_encoder", "first_token", "full_answer"):
        assert st[key]["count"] == 3 and st[key]["p50"] > 0, key
    assert st["first_token"]["p50"] <= st["full_answer"]["p50"]
    models = {s["model"] for s in lv["stages"]}
    assert {"preprocessing", "vision_encoder", "tensorrt_llm"} <= models
    # the BLS reports its own per-request decode and encoder time (image_info), at any concurrency
    out2 = tmp_path / "bls"
    r = CliRunner().invoke(main, ["bench", mm_server.grpc_url, "--model", "tensorrt_llm_bls", "--out", str(out2),
                                  "--image", str(shot), "--num-requests", "2", "--warmup", "0", "--concurrency", "2",
                                  "--max-tokens", "4", "--metrics-url", "", "--no-progress"])
    assert r.exit_code == 0, r.output
    st2 = json.loads((out2 / "c2" / "summary.json").read_text("utf-8"))["stage_latency"]
    assert "image_info" in st2["sources"]["vision_encoder"] and st2["vision_encoder"]["count"] == 2
    assert st2["vision_encoder"]["p50"] > 0 and "p50" in st2["preprocessing"]


def test_openai_image_url(mm_server, shot, want, facts, mm_tok):  # noqa: F811
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from glmtrt.api.app import create_app
    from glmtrt.api.backend import TritonBackend
    from glmtrt.client.images import read_image

    url = read_image(shot).data_url()
    body = {"model": "autoglm", "max_tokens": MAX_TOKENS, "temperature": 0,
            "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                                      {"type": "text", "text": PROMPT}]}]}
    with TestClient(create_app(TritonBackend(mm_server.grpc_url, timeout=120), served_model_name="autoglm")) as c:
        r = c.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == want
        from glmtrt.models.glm4v.preprocess import preprocess_image

        t, h, w = preprocess_image(shot.read_bytes(), min_pixels=facts.min_pixels, max_pixels=facts.max_pixels).grid_thw
        text_only = len(mm_tok[1].build_chat_ids([{"role": "user", "content": PROMPT}]))
        # preprocessing counts the prompt as the engine sees it: image tokens (t*h*w/4) and their markers too
        assert r.json()["usage"]["prompt_tokens"] >= text_only + t * h * w // 4
        bad = c.post("/v1/chat/completions", json={**body, "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}, {"type": "text", "text": "x"}]}]})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "image_url_not_supported"
