"""Build a random ChatGLM3-shaped checkpoint and its CPU stand-in repository for bench_standin.py.

    python scripts/make_standin_repo.py WORKDIR [--layers 12 --hidden 512 --heads 8 --kv-heads 2 --ffn 1536]

Writes WORKDIR/hf (tiny ChatGLM3 tokenizer + random HF checkpoint, seed 0), WORKDIR/ckpt (FP32
convert) and WORKDIR/repo (`--engine reference`, max batch 128, max input 256, max seq 512).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from glmtrt.convert.pipeline import convert_checkpoint
from glmtrt.models.chatglm.tiny import make_tiny_checkpoint
from glmtrt.tokenizer.tiny import TINY_VOCAB_PADDED, make_tiny_chatglm3_tokenizer
from glmtrt.triton.generator import RepoOptions, generate_repository


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--ffn", type=int, default=1536)
    a = ap.parse_args()
    hf, ckpt = a.workdir / "hf", a.workdir / "ckpt"
    if not ckpt.exists():
        make_tiny_chatglm3_tokenizer(hf)
        make_tiny_checkpoint(hf, "chatglm", seed=0, vocab_size=TINY_VOCAB_PADDED, num_layers=a.layers,
                             hidden_size=a.hidden, num_heads=a.heads, num_kv_heads=a.kv_heads,
                             head_size=a.hidden // a.heads, intermediate_size=a.ffn)
        convert_checkpoint(hf, ckpt, dtype="float32", force=True, progress=False)
    generate_repository(RepoOptions(source=ckpt, tokenizer=hf, output=a.workdir / "repo", engine="reference",
                                    force=True, max_batch_size=128, max_input_len=256, max_seq_len=512,
                                    bls_instances=8))
    print(a.workdir / "repo")


if __name__ == "__main__":
    main()
