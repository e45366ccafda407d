"""Test support shared by tests/api and tests/ui: a scripted reasoning model served by a real CPU Triton.

The tiny ChatGLM3 checkpoint's greedy chat answer is THINK_ANSWER, a GLM-4.1V-style reasoning
answer (`<think>...</think>` then the reply). Scripted answers need distinct tokens, so a
repeated token is spelled with SentencePiece byte-fallback pieces instead (same text when
decoded; checked).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

THINK_ANSWER = "<think>用户在打招呼。</think>你好，世界！Hello 𠮷"
REASONING, CONTENT = "用户在打招呼。", "你好，世界！Hello 𠮷"
REAL_TOKENIZER = Path(__file__).resolve().parents[2] / ".." / "shared" / "models" / "chatglm3-6b"


def tokenizer_dir(tmp: Path) -> Path:
    """The real ChatGLM3 tokenizer when ../shared/models has it, else the tiny trained one."""
    if (REAL_TOKENIZER / "tokenizer.model").is_file():
        return REAL_TOKENIZER.resolve()
    from glmtrt.tokenizer.tiny import make_tiny_chatglm3_tokenizer

    return make_tiny_chatglm3_tokenizer(tmp / "tiny-tok")


def distinct_chain(tok, text: str) -> list[int]:
    """Ids that decode to `text` with no id twice (repeats spelled as byte-fallback pieces)."""
    used, chain = set(), []
    for t in tok.encode(text):
        if t not in used:
            used.add(t)
            chain.append(t)
            continue
        piece = tok.sp.id_to_piece(t).replace("\u2581", " ")
        for b in piece.encode("utf-8"):
            bid = tok.sp.piece_to_id(f"<0x{b:02X}>")
            if bid in used or bid == tok.sp.unk_id():
                raise AssertionError(f"cannot spell {piece!r} with unused byte pieces")
            used.add(bid)
            chain.append(bid)
    assert tok.decode(chain) == text, (tok.decode(chain), text)
    return chain


def make_repo(tmp: Path, *, max_batch_size: int = 64) -> tuple[Path, Path, list[int]]:
    """(repository, tokenizer dir, answer ids): a reference-engine repository of the scripted reasoning model."""
    from glmtrt.convert.pipeline import convert_checkpoint
    from glmtrt.models.chatglm.tiny import make_tiny_checkpoint
    from glmtrt.tokenizer import load_tokenizer, padded_vocab_size
    from glmtrt.triton.generator import RepoOptions, generate_repository

    tdir = tokenizer_dir(tmp)
    tok = load_tokenizer(tdir)
    chain = distinct_chain(tok, THINK_ANSWER)
    hf = make_tiny_checkpoint(tmp / "hf", seed=0, vocab_size=padded_vocab_size(tok.vocab_size), num_layers=1,
                              script=(tok.special_tokens["<|assistant|>"], chain, tok.eos_id))
    ckpt = convert_checkpoint(hf, tmp / "ckpt", dtype="float32", progress=False)
    repo = generate_repository(RepoOptions(source=ckpt, tokenizer=tdir, output=tmp / "repo", engine="reference",
                                           max_batch_size=max_batch_size, max_input_len=96, max_seq_len=160))
    return repo, tdir, chain


def start_server(repo: Path):
    """A TritonServer context manager for `repo`, or skip where the CPU Triton cannot run."""
    pytest.importorskip("tritonclient.grpc")
    if os.uname().machine != "x86_64":
        pytest.skip("nvidia-pytriton's tritonserver is x86_64 only")
    from glmtrt.triton.server import TritonServer

    return TritonServer(repo, ready_timeout=240)
