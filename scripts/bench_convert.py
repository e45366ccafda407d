#!/usr/bin/env python3
"""Benchmark `glmtrt convert` on a ChatGLM3-6B-shaped random checkpoint against `cp`.

    .venv/bin/python scripts/bench_convert.py --workdir /tmp/glmtrt-bench [--keep]

1. writes a random FP16 checkpoint with the exact tensor names/shapes of THUDM/chatglm3-6b
   (7 safetensors shards + index, ~12.5 GB) unless it is already there;
2. times `cp` of the shards to the same disk (after one warm-up read, so both runs see the same
   page cache state), then `glmtrt convert --dtype float16` with GNU time for peak RSS;
3. prints a Markdown table (paste into docs/BENCHMARKS.md).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from glmtrt.checkpoint.safetensors_stream import StreamingSafetensorsWriter

# THUDM/chatglm3-6b config.json (shared/models/chatglm3-6b/config.json), the fields that matter.
CHATGLM3_6B = {
    "architectures": ["ChatGLMModel"], "model_type": "chatglm", "add_bias_linear": False, "add_qkv_bias": True,
    "apply_residual_connection_post_layernorm": False, "ffn_hidden_size": 13696, "hidden_size": 4096,
    "kv_channels": 128, "layernorm_epsilon": 1e-05, "multi_query_attention": True, "multi_query_group_num": 2,
    "num_attention_heads": 32, "num_layers": 28, "padded_vocab_size": 65024, "rmsnorm": True,
    "seq_length": 8192, "torch_dtype": "float16", "tie_word_embeddings": False, "eos_token_id": 2,
    "pad_token_id": 0,
}


def tensor_shapes(cfg: dict) -> list[tuple[str, tuple[int, ...]]]:
    h, f, v = cfg["hidden_size"], cfg["ffn_hidden_size"], cfg["padded_vocab_size"]
    qkv = (cfg["num_attention_heads"] + 2 * cfg["multi_query_group_num"]) * cfg["kv_channels"]
    out = [("transformer.embedding.word_embeddings.weight", (v, h)), ("transformer.rotary_pos_emb.inv_freq", (32,))]
    for i in range(cfg["num_layers"]):
        p = f"transformer.encoder.layers.{i}"
        out += [(f"{p}.input_layernorm.weight", (h,)), (f"{p}.self_attention.query_key_value.weight", (qkv, h)),
                (f"{p}.self_attention.query_key_value.bias", (qkv,)),
                (f"{p}.self_attention.dense.weight", (h, cfg["num_attention_heads"] * cfg["kv_channels"])),
                (f"{p}.post_attention_layernorm.weight", (h,)), (f"{p}.mlp.dense_h_to_4h.weight", (2 * f, h)),
                (f"{p}.mlp.dense_4h_to_h.weight", (h, f))]
    out += [("transformer.encoder.final_layernorm.weight", (h,)), ("transformer.output_layer.weight", (v, h))]
    return out


def make_checkpoint(d: Path, shards: int = 7) -> None:
    d.mkdir(parents=True, exist_ok=True)
    shapes = tensor_shapes(CHATGLM3_6B)
    per = -(-len(shapes) // shards)
    g = torch.Generator().manual_seed(0)
    weight_map = {}
    for k in range(shards):
        part = shapes[k * per:(k + 1) * per]
        name = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        w = StreamingSafetensorsWriter(d / name, [(n, torch.float16, s) for n, s in part])
        for n, s in part:
            w.write(n, (torch.randn(s, generator=g) * 0.02).half())
            weight_map[n] = name
        w.close()
        print(f"wrote {name}", file=sys.stderr)
    (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (d / "config.json").write_text(json.dumps(CHATGLM3_6B, indent=2))


def timed(cmd: list[str]) -> tuple[float, int | None]:
    """Wall seconds and peak RSS (KiB, from GNU time) of a command."""
    tv = shutil.which("time") or "/usr/bin/time"
    use_time = os.path.exists(tv)
    full = ([tv, "-v"] if use_time else []) + cmd
    t0 = time.perf_counter()
    res = subprocess.run(full, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode:
        sys.exit(f"{cmd} failed:\n{res.stderr[-3000:]}")
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", res.stderr)
    return wall, int(m.group(1)) if m else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/glmtrt-bench"))
    ap.add_argument("--keep", action="store_true", help="keep the outputs")
    args = ap.parse_args()
    src, cp_dst, out = args.workdir / "chatglm3-6b-random", args.workdir / "copy", args.workdir / "converted"
    if not (src / "config.json").exists():
        t0 = time.perf_counter()
        make_checkpoint(src)
        print(f"generated in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    size = sum(p.stat().st_size for p in src.glob("*.safetensors"))
    for p in (cp_dst, out):
        shutil.rmtree(p, ignore_errors=True)
    subprocess.run(["cat", *map(str, sorted(src.glob("*.safetensors")))], stdout=subprocess.DEVNULL, check=True)
    cp_s, cp_rss = timed(["cp", "-r", str(src), str(cp_dst)])
    subprocess.run(["sync"], check=True)
    glmtrt = str(Path(sys.executable).with_name("glmtrt"))
    cv_s, cv_rss = timed([glmtrt, "convert", str(src), "-o", str(out), "--dtype", "float16", "--no-progress"])
    subprocess.run(["sync"], check=True)
    print(f"| source | {size / 1e9:.2f} GB in {len(list(src.glob('*.safetensors')))} shards |")
    print(f"| cp -r (same disk) | {cp_s:.1f} s, peak RSS {cp_rss and cp_rss / 1024:.0f} MiB |")
    print(f"| glmtrt convert fp16 | {cv_s:.1f} s, peak RSS {cv_rss and cv_rss / 1024:.0f} MiB |")
    print(f"| ratio convert/cp | {cv_s / cp_s:.2f}x (target <= 1.5x; peak RSS target <= 2048 MiB) |")
    if not args.keep:
        shutil.rmtree(cp_dst, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
