"""Fixtures for the Triton runtime tests: a "scripted" tiny checkpoint, a generated repository
and one real Triton server on CPU per module.

The scripted checkpoint is a tiny random ChatGLM3 (hidden 64, the real 65024 padded vocab)
whose attention/MLP outputs are zeroed, so each next token depends only on the current one;
embedding and lm_head rows are then set so that after `<|assistant|>` the greedy answer is
exactly ANSWER (which includes SentencePiece byte-fallback pieces of 4- and 3-byte characters)
followed by eos. Other prompts produce random-looking tokens from the full vocab.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_TOKENIZER = Path(__file__).resolve().parents[2] / ".." / "shared" / "models" / "chatglm3-6b"
ANSWER = "你好，世界! Hello 𠮷鿏"
ASSISTANT = 64796  # <|assistant|> of ChatGLM3 (shared/models/README.md)


def need_shared_tokenizer() -> Path:
    """The real ChatGLM3 tokenizer dir, or skip."""
    if not (SHARED_TOKENIZER / "tokenizer.model").is_file():
        pytest.skip("../shared/models/chatglm3-6b is absent (real ChatGLM3 tokenizer needed)")
    return SHARED_TOKENIZER.resolve()


def make_scripted_checkpoint(work: Path, tok) -> tuple[Path, list[int]]:
    """Tiny TRT-LLM checkpoint whose greedy chat answer is ANSWER; returns (dir, answer ids)."""
    import torch
    from safetensors.torch import load_file, save_file

    from glmtrt.convert.pipeline import convert_checkpoint
    from glmtrt.models.chatglm.tiny import make_tiny_checkpoint

    hf = make_tiny_checkpoint(work / "hf", seed=0, vocab_size=65024, num_layers=1)
    ckpt = convert_checkpoint(hf, work / "ckpt", dtype="float32", progress=False)
    chain = tok.encode(ANSWER)
    assert len(set(chain)) == len(chain), "the scripted answer needs distinct tokens"
    path = Path(ckpt) / "rank0.safetensors"
    w = load_file(str(path))
    hidden = w["transformer.vocab_embedding.weight"].shape[1]
    for name, t in w.items():  # attention and MLP add nothing: h stays the token's embedding
        if name.endswith(("attention.dense.weight", "attention.dense.bias", "mlp.proj.weight", "mlp.proj.bias")):
            w[name] = torch.zeros_like(t)
    w["transformer.ln_f.weight"] = torch.ones_like(w["transformer.ln_f.weight"])
    emb, head = w["transformer.vocab_embedding.weight"].clone(), w["lm_head.weight"].clone()
    seq = [ASSISTANT] + chain + [tok.eos_id]
    assert len(seq) - 1 <= hidden
    for k, (cur, nxt) in enumerate(zip(seq[:-1], seq[1:])):
        emb[cur] = 0.0
        emb[cur, k] = 1.0
        head[nxt] = 0.0
        head[nxt, k] = 10.0
    w["transformer.vocab_embedding.weight"], w["lm_head.weight"] = emb, head
    save_file(w, str(path), metadata={"format": "pt"})
    _refresh_manifest(Path(ckpt))
    return Path(ckpt), chain


def _refresh_manifest(ckpt: Path) -> None:
    """Keep the checkpoint manifest's file hashes true after the edit."""
    import hashlib
    import json

    mpath = ckpt / "manifest.json"
    m = json.loads(mpath.read_text(encoding="utf-8"))
    for name, entry in m.get("files", {}).items():
        data = (ckpt / name).read_bytes()
        entry["sha256"] = hashlib.sha256(data).hexdigest()
        entry["bytes"] = len(data)
    mpath.write_text(json.dumps(m, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def shared_tok():
    from glmtrt.tokenizer import load_tokenizer

    return load_tokenizer(need_shared_tokenizer())


@pytest.fixture(scope="module")
def scripted(tmp_path_factory, shared_tok):
    """(checkpoint dir, answer ids)."""
    return make_scripted_checkpoint(tmp_path_factory.mktemp("scripted"), shared_tok)


@pytest.fixture(scope="module")
def answer():
    """The scripted model's chat answer."""
    return ANSWER


@pytest.fixture(scope="module")
def repo(tmp_path_factory, scripted):
    from glmtrt.triton.generator import RepoOptions, generate_repository

    out = tmp_path_factory.mktemp("repo") / "triton_repo"
    return generate_repository(RepoOptions(source=scripted[0], tokenizer=need_shared_tokenizer(), output=out,
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
