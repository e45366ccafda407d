"""Multimodal (GLM-4.1V) repository on a real CPU Triton: images through preprocessing -> vision_encoder
(onnxruntime on vision/encoder.onnx) -> the Glm4v reference engine, via the ensemble and the BLS.

One tiny random Glm4vForConditionalGeneration (transformers' class, the numerical truth) with the tiny
ChatGLM3 tokenizer's vocab; one server for the module. Greedy answers are compared with transformers'
greedy `generate` on the same image and prompt ids (the ids the server builds: mmproc).
"""
from __future__ import annotations

import asyncio
import io
import json
import os
import uuid

import numpy as np
import pytest

pytestmark = [pytest.mark.triton, pytest.mark.slow]

MAX_IMAGES = 2
MAX_PIXELS = 2 * 112 * 112          # small budget: a 300x200 image is resized
MAX_TOKENS = 20
MODELS = ("ensemble", "tensorrt_llm_bls")


def _png(w: int, h: int, seed: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _jpeg(w: int, h: int, seed: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


IMAGES = [_png(84, 84, 1), _jpeg(112, 84, 2), _png(70, 98, 3), _png(98, 70, 4)]


@pytest.fixture(scope="module")
def mm_tok(tmp_path_factory):
    from glmtrt.tokenizer import load_tokenizer
    from glmtrt.tokenizer.tiny import make_tiny_chatglm3_tokenizer

    d = make_tiny_chatglm3_tokenizer(tmp_path_factory.mktemp("mm-tok"))
    return d, load_tokenizer(d)


@pytest.fixture(scope="module")
def mm_model(tmp_path_factory, mm_tok):
    """(hf model, converted dir): a tiny Glm4v whose image ids sit just past the tokenizer's vocab."""
    import torch
    from transformers import Glm4vConfig, Glm4vForConditionalGeneration

    from glmtrt.convert.pipeline import convert_checkpoint
    from glmtrt.tokenizer import padded_vocab_size

    _, tok = mm_tok
    base = tok.vocab_size                       # 1009: boi, eoi, image, video ids follow
    text = dict(vocab_size=padded_vocab_size(base + 6), hidden_size=128, intermediate_size=96, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5,
                                 "mrope_section": [2, 3, 3]}, eos_token_id=[tok.eos_id])
    vision = dict(depth=2, hidden_size=32, num_heads=2, out_hidden_size=128, intermediate_size=48, image_size=56,
                  patch_size=14, spatial_merge_size=2, temporal_patch_size=2)
    cfg = Glm4vConfig(text_config=text, vision_config=vision, image_start_token_id=base, image_end_token_id=base + 1,
                      image_token_id=base + 2, video_start_token_id=base + 3, video_end_token_id=base + 4,
                      video_token_id=base + 5)
    torch.manual_seed(0)
    model = Glm4vForConditionalGeneration(cfg).eval()
    with torch.no_grad():  # as tests/glm4v/conftest.py: non-trivial norms, O(1) image features
        for name, p in model.named_parameters():
            if p.dim() == 1 and "norm" in name:
                p.add_(torch.randn_like(p) * 0.2)
            if "visual.merger." in name and name.endswith(("gate_proj.weight", "up_proj.weight", "down_proj.weight")):
                p.mul_(10.0)
        # favour two Chinese tokens (你, 好) so answers hold Chinese text to stream (still prompt-dependent)
        chinese = [i for i in tok.encode("你好") if tok.decode([i]).strip()]
        model.lm_head.weight[chinese] *= 4.0
    work = tmp_path_factory.mktemp("mm-model")
    model.save_pretrained(work / "hf")
    return model, convert_checkpoint(work / "hf", work / "conv", dtype="float32", progress=False)


@pytest.fixture(scope="module")
def mm_repo(tmp_path_factory, mm_model, mm_tok):
    from glmtrt.triton.generator import RepoOptions, generate_repository

    out = tmp_path_factory.mktemp("mm-repo") / "repo"
    return generate_repository(RepoOptions(source=mm_model[1], tokenizer=mm_tok[0], output=out, engine="reference",
                                           max_batch_size=16, max_input_len=256, max_seq_len=512,
                                           max_images=MAX_IMAGES, max_pixels=MAX_PIXELS))


@pytest.fixture(scope="module")
def facts(mm_repo):
    from glmtrt.triton.pymodels.mmproc import MultimodalFacts

    return MultimodalFacts.load(mm_repo / "preprocessing" / "multimodal.json")


@pytest.fixture(scope="module")
def repo(mm_repo):
    """The repository that conftest's module-scoped `server` fixture serves here."""
    return mm_repo


def expected_tokens(model, tok, facts, text: str, images: list[bytes], *, chat: bool = True) -> list[int]:
    """transformers' greedy answer for the prompt the server builds, cut like the engine cuts it."""
    import torch

    from glmtrt.models.glm4v.positions import expand_image_tokens
    from glmtrt.models.glm4v.preprocess import preprocess_image
    from glmtrt.triton.pymodels.mmproc import prompt_ids_with_images

    ids = prompt_ids_with_images(tok, text, len(images), facts, chat=chat, messages=None, add_special_tokens=True)
    inps = [preprocess_image(b, min_pixels=facts.min_pixels, max_pixels=facts.max_pixels) for b in images]
    full, types = expand_image_tokens(ids, [i.grid_thw for i in inps], facts.image_token_id)
    kw = dict(input_ids=torch.tensor([full]), mm_token_type_ids=torch.tensor([types]))
    if inps:
        kw.update(pixel_values=torch.tensor(np.concatenate([i.patches for i in inps])),
                  image_grid_thw=torch.tensor([i.grid_thw for i in inps]))
    model.generation_config.eos_token_id = None
    with torch.no_grad():
        out = model.generate(**kw, max_new_tokens=MAX_TOKENS, do_sample=False, pad_token_id=0)[0, len(full):].tolist()
    cut = []
    for t in out:               # end_id ends (not emitted); a stop token is emitted, then ends
        if t == tok.eos_id:
            break
        cut.append(t)
        if t in tok.stop_ids:
            break
    return cut


async def _request(url: str, model: str, text: str, images: list[bytes] | None, *, stream: bool, chat: bool = True,
                   max_tokens: int = MAX_TOKENS):
    """(text pieces, parameters of the first response) of one request; raises on an error response."""
    import tritonclient.grpc.aio as grpcclient
    from tritonclient.utils import np_to_triton_dtype

    arrays = {"text_input": np.array([[text.encode("utf-8")]], dtype=object),
              "max_tokens": np.array([[max_tokens]], dtype=np.int32), "stream": np.array([[stream]], dtype=bool)}
    if images is not None:
        arrays["images"] = np.array([list(images)], dtype=object)
    inputs = []
    for name, arr in arrays.items():
        t = grpcclient.InferInput(name, list(arr.shape), "BYTES" if arr.dtype == object else np_to_triton_dtype(arr.dtype))
        t.set_data_from_numpy(arr)
        inputs.append(t)
    client = grpcclient.InferenceServerClient(url)
    pieces, params = [], None
    try:
        async def gen():
            # a request id per request: the ensemble's postprocessing keys its stream detokenizer on it
            yield {"model_name": model, "inputs": inputs, "request_id": uuid.uuid4().hex,
                   "parameters": {"apply_chat_template": chat} if chat else {}}

        async for result, error in client.stream_infer(gen()):
            if error is not None:
                raise RuntimeError(str(error))
            resp = result.get_response()
            info = result.as_numpy("image_info") if any(o.name == "image_info" for o in resp.outputs) else None
            if params is None and info is not None:
                params = json.loads(info.reshape(-1)[0].decode("utf-8"))
            out = result.as_numpy("text_output")
            if out is not None:
                pieces.extend(x.decode("utf-8") for x in out.reshape(-1))
            if not stream or (resp.parameters.get("triton_final_response") and
                              resp.parameters["triton_final_response"].bool_param):
                break
    finally:
        await client.close()
    return pieces, params or {}


def run(coro):
    return asyncio.run(coro)


def test_repository_is_valid_and_multimodal(mm_repo, facts):
    from glmtrt.triton.check import check_repository

    assert check_repository(mm_repo) == []
    man = json.loads((mm_repo / "glmtrt_repo.json").read_text(encoding="utf-8"))
    assert "vision_encoder" in man["models"] and man["multimodal"]["max_images"] == MAX_IMAGES
    engine = (mm_repo / "tensorrt_llm" / "config.pbtxt").read_text(encoding="utf-8")
    for name in ("prompt_embedding_table", "prompt_vocab_size", "prompt_table_extra_ids", "mrope_rotary_cos_sin",
                 "mrope_position_deltas"):
        assert f'name: "{name}"' in engine
    assert 'name: "images"  data_type: TYPE_STRING  dims: [ -1 ]' in (mm_repo / "ensemble" / "config.pbtxt").read_text()
    assert facts.vocab_size == 1024 and facts.image_token_id == 1011


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("stream", [True, False])
def test_image_greedy_equals_transformers(server, mm_model, mm_tok, facts, model, stream):
    _, tok = mm_tok
    want = expected_tokens(mm_model[0], tok, facts, "这张图里有什么？", IMAGES[:1])
    pieces, _ = run(_request(server.grpc_url, model, "这张图里有什么？", IMAGES[:1], stream=stream))
    assert want and "".join(pieces) == tok.decode(want)
    if stream:  # UTF-8-safe streaming: the pieces are the full decode cut at character boundaries
        assert len(pieces) > 1 and "".join(pieces).count("\ufffd") == tok.decode(want).count("\ufffd")


@pytest.mark.parametrize("model", MODELS)
def test_text_only_request_and_chinese_stream(server, mm_model, mm_tok, facts, model):
    """No images: the M-RoPE inputs still go to the engine (text positions, delta 0)."""
    _, tok = mm_tok
    prompt = "你好，请用中文回答：今天天气怎么样？"
    want = expected_tokens(mm_model[0], tok, facts, prompt, [])
    pieces, _ = run(_request(server.grpc_url, model, prompt, None, stream=True))
    full, _ = run(_request(server.grpc_url, model, prompt, [], stream=False))
    assert want and "".join(pieces) == full[0] == tok.decode(want)
    assert any("\u4e00" <= c <= "\u9fff" for c in full[0])   # Chinese characters arrived intact


def test_sixteen_concurrent_image_requests(server, mm_model, mm_tok, facts):
    _, tok = mm_tok
    want = {k: tok.decode(expected_tokens(mm_model[0], tok, facts, "描述图片", [IMAGES[k]])) for k in range(len(IMAGES))}
    jobs = [(MODELS[i % 2], i % len(IMAGES), bool(i % 3)) for i in range(16)]

    async def all_requests():
        return await asyncio.gather(*(_request(server.grpc_url, m, "描述图片", [IMAGES[k]], stream=s)
                                      for m, k, s in jobs))

    results = run(all_requests())
    for (m, k, s), (pieces, _) in zip(jobs, results):
        assert "".join(pieces) == want[k], (m, k, s)


def test_bad_images_fail_alone_and_server_stays_healthy(server, mm_model, mm_tok, facts):
    _, tok = mm_tok
    url = server.grpc_url
    bad = {"corrupt": [IMAGES[0][:60]], "not an image": [b"hello, I am not a PNG"],
           "too many": IMAGES[:MAX_IMAGES + 1]}
    for model in MODELS:
        for what, imgs in bad.items():
            with pytest.raises(RuntimeError) as err:
                run(_request(url, model, "看图", imgs, stream=model == "ensemble"))
            msg = str(err.value)
            assert ("at most 2" in msg) if what == "too many" else ("not a readable image" in msg), (model, what, msg)
        with pytest.raises(RuntimeError, match="placeholder"):
            run(_request(url, model, "a <|begin_of_image|><|image|><|end_of_image|> b <|begin_of_image|><|image|>"
                         "<|end_of_image|>", IMAGES[:1], stream=False, chat=False))
    # over the pixel budget: resized (not refused), and the BLS says so
    big = _png(300, 200, 9)
    pieces, params = run(_request(url, "tensorrt_llm_bls", "看图", [big], stream=False))
    assert "resized" in params["image_notes"] and "max_pixels 25088" in params["image_notes"]
    assert params["image_tokens"] > 0 and params["prompt_tokens"] > params["image_tokens"]
    assert params["image_decode_us"] > 0 and params["vision_encoder_us"] > 0
    assert "".join(pieces) == tok.decode(expected_tokens(mm_model[0], tok, facts, "看图", [big]))
    # plain prompt with one placeholder per image, in place
    text = "左<|begin_of_image|><|image|><|end_of_image|>右"
    pieces, _ = run(_request(url, "ensemble", text, IMAGES[1:2], stream=False, chat=False))
    assert "".join(pieces) == tok.decode(expected_tokens(mm_model[0], tok, facts, text, IMAGES[1:2], chat=False))
    assert server.health() is None


def test_gpu_multimodal_repository_and_serve_command(tmp_path, mm_model, mm_tok):
    """A GPU repository from a (fake) engine built from the Glm4v conversion: the vision plan model, the
    engine's prompt-table / M-RoPE inputs, --check, and the container command of `glmtrt serve`."""
    from glmtrt.triton.check import check_repository
    from glmtrt.triton.generator import RepoOptions, generate_repository
    from glmtrt.triton.launch import gpu_command

    eng = tmp_path / "engine"
    (eng / "vision").mkdir(parents=True)
    (eng / "config.json").write_text("{}")
    (eng / "rank0.engine").write_bytes(b"not a real engine")
    (eng / "vision" / "encoder.plan").write_bytes(b"not a real plan")
    (eng / "vision" / "manifest.json").write_text(json.dumps({"kind": "trt-vision-engine", "max_images": 1}))
    build = {"max_batch_size": 8, "max_input_len": 4096, "max_seq_len": 8192, "max_beam_width": 1, "tp_size": 1,
             "pp_size": 1, "dtype": "float16", "use_paged_context_fmha": True, "max_prompt_embedding_table_size": 3188}
    (eng / "manifest.json").write_text(json.dumps({
        "kind": "trtllm-engine", "profile": "rtx4090", "toolchain": {"tensorrt_llm": "1.2.0"},
        "checkpoint": {"dir": str(mm_model[1] / "llm"), "manifest_sha256": "0"}, "build": build, "command": [],
        "model": {"family": "glm4v"}}))
    repo = generate_repository(RepoOptions(source=eng, tokenizer=mm_tok[0], output=tmp_path / "repo",
                                           engine_path="/engines/autoglm"))
    assert check_repository(repo, engine_dir=eng) == []
    vision = (repo / "vision_encoder" / "config.pbtxt").read_text(encoding="utf-8")
    assert 'platform: "tensorrt_plan"' in vision and "KIND_GPU" in vision
    assert os.readlink(repo / "vision_encoder" / "1" / "model.plan") == "/engines/autoglm/vision/encoder.plan"
    with pytest.raises(Exception, match="--max-images 2"):
        generate_repository(RepoOptions(source=eng, tokenizer=mm_tok[0], output=tmp_path / "r2", max_images=2))
    cmd = " ".join(gpu_command(repo, http_port=8000, grpc_port=8001, metrics_port=8002, image="glmtrt:rtx4090"))
    assert f"{eng}:/engines/autoglm:ro" in cmd and "glmtrt:rtx4090" in cmd


def test_check_finds_broken_multimodal_repository(tmp_path, mm_repo):
    import shutil

    from glmtrt.triton.check import check_repository

    broken = tmp_path / "broken"
    shutil.copytree(mm_repo, broken)
    (broken / "preprocessing" / "multimodal.json").unlink()
    cfg = broken / "tensorrt_llm" / "config.pbtxt"
    cfg.write_text(cfg.read_text(encoding="utf-8").replace('name: "mrope_position_deltas"  data_type: TYPE_INT64',
                                                           'name: "mrope_position_deltas"  data_type: TYPE_INT32'))
    shutil.rmtree(broken / "vision_encoder")
    problems = [str(p) for p in check_repository(broken)]
    assert any("multimodal_config" in p and "preprocessing/config.pbtxt" in p for p in problems)
    assert any("mrope_position_deltas" in p and "TYPE_INT32" in p for p in problems)
    assert any(p.startswith("vision_encoder/config.pbtxt: (file): missing") for p in problems)


def test_cli_repo_and_check(tmp_path, mm_model, mm_tok):
    from click.testing import CliRunner

    from glmtrt.cli import main

    out = tmp_path / "cli-repo"
    res = CliRunner().invoke(main, ["repo", str(mm_model[1]), "--engine", "reference", "--tokenizer", str(mm_tok[0]),
                                    "-o", str(out), "--max-images", "3", "--max-pixels", "50000"])
    assert res.exit_code == 0, res.output
    facts = json.loads((out / "preprocessing" / "multimodal.json").read_text(encoding="utf-8"))
    assert facts["max_images"] == 3 and facts["max_pixels"] == 50000
    check = CliRunner().invoke(main, ["repo", "--check", str(out)])
    assert check.exit_code == 0 and "6 models" in check.output, check.output
    bad = CliRunner().invoke(main, ["repo", str(mm_model[1]), "--engine", "reference", "--tokenizer", str(mm_tok[0]),
                                    "-o", str(tmp_path / "x"), "--max-pixels", "10"])
    assert bad.exit_code == 2 and "--max-pixels" in bad.output
