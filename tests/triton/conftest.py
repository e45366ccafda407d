"""Fixtures for the Triton runtime tests: a "scripted" tiny checkpoint, a generated repository
and one real Triton server on CPU per module.

The scripted checkpoint is a tiny random ChatGLM3 (hidden 64, the tokenizer's padded vocab) whose
greedy chat answer after `<|assistant|>` is exactly `answer` followed by eos
(`glmtrt.models.chatglm.tiny.script_greedy_answer`). Other prompts produce random-looking tokens
from the full vocab. The real ChatGLM3 tokenizer is used when ../shared/models has it, else the
tiny trained one, so the server tests run on a fresh clone too.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_TOKENIZER = Path(__file__).resolve().parents[2] / ".." / "shared" / "models" / "chatglm3-6b"
# The scripted chat answer: with the real ChatGLM3 tokenizer it holds 4- and 3-byte characters
# that SentencePiece splits into byte-fallback pieces (𠮷, 鿏); with the tiny tokenizer 微 and 经
# are byte-fallback pieces.
REAL_ANSWER = "你好，世界! Hello 𠮷鿏"
TINY_ANSWER = "你好！我是微型GLM模型，经Triton流式输出。 Hello!"


def need_shared_tokenizer() -> Path:
    """The real ChatGLM3 tokenizer dir, or skip."""
    if not (SHARED_TOKENIZER / "tokenizer.model").is_file():
        pytest.skip("../shared/models/chatglm3-6b is absent (real ChatGLM3 tokenizer needed)")
    return SHARED_TOKENIZER.resolve()


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory) -> Path:
    """The real ChatGLM3 tokenizer when ../shared/models has it, else the tiny trained one."""
    if (SHARED_TOKENIZER / "tokenizer.model").is_file():
        return SHARED_TOKENIZER.resolve()
    from glmtrt.tokenizer.tiny import make_tiny_chatglm3_tokenizer

    return make_tiny_chatglm3_tokenizer(tmp_path_factory.mktemp("tiny-tok"))


@pytest.fixture(scope="module")
def tok(tok_dir):
    from glmtrt.tokenizer import load_tokenizer

    return load_tokenizer(tok_dir)


@pytest.fixture(scope="module")
def answer(tok_dir):
    """The scripted model's chat answer."""
    return REAL_ANSWER if tok_dir == SHARED_TOKENIZER.resolve() else TINY_ANSWER


@pytest.fixture(scope="module")
def scripted(tmp_path_factory, tok, answer):
    """(TRT-LLM checkpoint dir, answer ids): a tiny model whose greedy chat answer is `answer`."""
    from glmtrt.convert.pipeline import convert_checkpoint
    from glmtrt.models.chatglm.tiny import make_tiny_checkpoint
    from glmtrt.tokenizer import padded_vocab_size

    work = tmp_path_factory.mktemp("scripted")
    chain = tok.encode(answer)
    hf = make_tiny_checkpoint(work / "hf", seed=0, vocab_size=padded_vocab_size(tok.vocab_size), num_layers=1,
                              script=(tok.special_tokens["<|assistant|>"], chain, tok.eos_id))
    return convert_checkpoint(hf, work / "ckpt", dtype="float32", progress=False), chain


@pytest.fixture(scope="module")
def repo(tmp_path_factory, scripted, tok_dir):
    from glmtrt.triton.generator import RepoOptions, generate_repository

    out = tmp_path_factory.mktemp("repo") / "triton_repo"
    return generate_repository(RepoOptions(source=scripted[0], tokenizer=tok_dir, output=out,
                                           engine="reference", max_batch_size=16, max_input_len=64,
                                           max_seq_len=128))


@pytest.fixture(scope="module")
def server(repo):
    """One real Triton on CPU for the module."""
    pytest.importorskip("tritonclient.grpc")
    from glmtrt.triton.server import TritonServer

    if os.uname().machine != "x86_64":
        pytest.skip("nvidia-pytriton's tritonserver is x86_64 only")
    with TritonServer(repo, ready_timeout=180) as srv:
        yield srv


def engine_inputs(ids, output_len: int, **extra):
    """tritonclient.grpc InferInputs for the `tensorrt_llm` model (the engine's tensors): input_ids,
    input_lengths, request_output_len, plus `extra` {tensor name: numpy array [1, 1]}."""
    import numpy as np
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import np_to_triton_dtype

    arrays = {"input_ids": np.array([ids], np.int32), "input_lengths": np.array([[len(ids)]], np.int32),
              "request_output_len": np.array([[output_len]], np.int32), **extra}
    out = []
    for name, arr in arrays.items():
        t = grpcclient.InferInput(name, list(arr.shape), np_to_triton_dtype(arr.dtype))
        t.set_data_from_numpy(arr)
        out.append(t)
    return out
