#!/usr/bin/env python3
"""Benchmark `glmtrt convert` on a ChatGLM3-6B-shaped random checkpoint against `cp`.

    .venv/bin/python scripts/bench_convert.py --workdir /work/benchdata [--runs 3]
    make bench BENCH_DIR=/work/benchdata

1. writes a random FP16 checkpoint with the exact tensor names/shapes of THUDM/chatglm3-6b
   (7 safetensors shards + index, 12.49 GB) unless it is already there (not timed);
2. reads the source once (warm page cache) and again before every timed run;
3. runs `cp -r` of the source and the conversions (fp16 tp1, fp16 tp2, int8-wo and int4-wo tp1) alternately,
   `--runs` rounds of [cp, tp1, tp2, int8-wo, int4-wo], on the same disk; after each run (not timed) the
   output is flushed with `sync` (reported for cp: cp + sync) and deleted, so no run pays for the
   previous one's write-back; `glmtrt convert` fsyncs its files itself, inside its time;
4. checks the first converted output against its manifest (sha256 of every file, not timed);
5. prints the machine state (load before/after, torch build, whether convert imports torch), the
   median wall time of each case, the ratio to cp, and the peak RSS of each process (GNU time).
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

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
CASES = {"tp1": ["--dtype", "float16"], "tp2": ["--dtype", "float16", "--tp-size", "2"],
         "int8-wo": ["--dtype", "float16", "--quant", "int8-wo"],
         "int4-wo": ["--dtype", "float16", "--quant", "int4-wo"]}


def tensor_shapes(cfg: dict) -> list[tuple[str, tuple[int, ...]]]:
    """Names and shapes of a THUDM-layout ChatGLM checkpoint, in the order of the HF shards."""
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
    """Random N(0, 0.02) FP16 weights, written in blocks of rows (a few MB in memory)."""
    import json

    d.mkdir(parents=True, exist_ok=True)
    shapes = tensor_shapes(CHATGLM3_6B)
    per = -(-len(shapes) // shards)
    rng = np.random.default_rng(0)
    weight_map = {}
    for k in range(shards):
        part = shapes[k * per:(k + 1) * per]
        name = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        w = StreamingSafetensorsWriter(d / name, [(n, "float16", s) for n, s in part])
        for n, s in part:
            w.begin(n)
            step = max(1, (4 << 20) // int(np.prod(s[1:], dtype=np.int64)))
            for a in range(0, s[0], step):
                block = (min(step, s[0] - a),) + s[1:]
                w.append((rng.standard_normal(block, dtype=np.float32) * 0.02).astype(np.float16))
            w.end()
            weight_map[n] = name
        w.close()
        print(f"wrote {name}", file=sys.stderr)
    (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (d / "config.json").write_text(json.dumps(CHATGLM3_6B, indent=2))


def timed(cmd: list[str]) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MiB) and CPU seconds (user + system) of one process. The RSS comes from GNU time, which forks the
    command from its own small process: a child forked from this Python process would report this
    process's RSS as its peak (Linux carries the parent's high-water mark across fork + exec)."""
    gnu_time = shutil.which("time") or "/usr/bin/time"
    if not os.path.exists(gnu_time):
        sys.exit("GNU time (/usr/bin/time, Debian package 'time') is needed to measure peak RSS")
    t0 = time.perf_counter()
    res = subprocess.run([gnu_time, "-f", "GLMTRT_MAXRSS_KB=%M GLMTRT_CPU_S=%U+%S", *cmd], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if res.returncode:
        sys.exit(f"{cmd} failed ({res.returncode}):\n{res.stderr[-3000:]}")
    tail = res.stderr.rsplit("GLMTRT_MAXRSS_KB=", 1)[1].split()
    user, system = (float(x) for x in tail[1].removeprefix("GLMTRT_CPU_S=").split("+"))
    return wall, int(tail[0]) / 1024, user + system


def warm(src: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(["cat", *map(str, sorted(src.glob("*.safetensors")))], stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def load() -> str:
    """The 1/5/15-minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def torch_build(py: str) -> str:
    res = subprocess.run([py, "-c", "import torch; print(torch.__version__, 'cuda', torch.version.cuda)"],
                         capture_output=True, text=True)
    return res.stdout.strip() or "not installed"


def convert_imports_torch(py: str, glmtrt: str, workdir: Path) -> bool:
    """Run a tiny conversion under `python -X importtime` and look for torch (the tiny source is
    made in another process: this one stays small and torch-free)."""
    tiny, out = workdir / "tiny-src", workdir / "tiny-out"
    subprocess.run([py, "-c", "import sys; from glmtrt.models.chatglm.tiny import make_tiny_checkpoint as m; "
                    "m(sys.argv[1], shards=2)", str(tiny)], check=True)
    res = subprocess.run([py, "-X", "importtime", glmtrt, "convert", str(tiny), "-o", str(out),
                          "--force", "--no-progress"], capture_output=True, text=True, check=True)
    shutil.rmtree(tiny)
    shutil.rmtree(out)
    return any(line.rsplit("|", 1)[-1].strip() == "torch" for line in res.stderr.splitlines())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/glmtrt-bench"))
    ap.add_argument("--runs", type=int, default=3, help="rounds of [cp, tp1, tp2, int8-wo, int4-wo]")
    ap.add_argument("--cases", default="tp1,tp2,int8-wo,int4-wo", help=f"comma-separated subset of {','.join(CASES)}")
    args = ap.parse_args()
    cases = [c for c in args.cases.split(",") if c]
    src, dst = args.workdir / "chatglm3-6b-random", args.workdir / "out"
    if not (src / "config.json").exists():
        t0 = time.perf_counter()
        make_checkpoint(src)
        print(f"generated the source in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    size = sum(p.stat().st_size for p in src.glob("*.safetensors"))
    py, glmtrt = sys.executable, str(Path(sys.executable).with_name("glmtrt"))
    imports_torch = convert_imports_torch(py, glmtrt, args.workdir)
    load_before = load()
    first_warm = warm(src)
    walls: dict[str, list[float]] = {c: [] for c in ["cp", "cp+sync", *cases]}
    rss: dict[str, list[float]] = {c: [] for c in ["cp", *cases]}
    cpu: dict[str, list[float]] = {c: [] for c in ["cp", *cases]}
    checked = False
    for k in range(args.runs):
        for case in ["cp", *cases]:
            shutil.rmtree(dst, ignore_errors=True)
            subprocess.run(["sync"], check=True)
            warm(src)
            cmd = ["cp", "-r", str(src), str(dst)] if case == "cp" else \
                [glmtrt, "convert", str(src), "-o", str(dst), "--no-progress", *CASES[case]]
            wall, peak, cpu_s = timed(cmd)
            t0 = time.perf_counter()
            subprocess.run(["sync"], check=True)
            if case == "cp":
                walls["cp+sync"].append(wall + time.perf_counter() - t0)
            walls[case].append(wall)
            rss[case].append(peak)
            cpu[case].append(cpu_s)
            print(f"round {k + 1} {case}: {wall:.1f} s, CPU {cpu_s:.1f} s, peak RSS {peak:.0f} MiB", file=sys.stderr)
            if case != "cp" and not checked:
                from glmtrt.checkpoint.manifest import verify_files

                bad = verify_files(dst)
                if bad:
                    sys.exit(f"converted output does not match its manifest: {bad}")
                checked = True
    shutil.rmtree(dst, ignore_errors=True)
    cp = statistics.median(walls["cp"])
    print(f"machine: {os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
          f"Linux {platform.release()}, load {load_before} before / {load()} after (1/5/15 min)")
    print(f"source: {size / 1e9:.2f} GB in {len(list(src.glob('*.safetensors')))} shards; first warm read "
          f"{first_warm:.1f} s; torch build installed: {torch_build(py)}; convert imports torch: "
          f"{'yes' if imports_torch else 'no'}; {args.runs} rounds of [cp, {', '.join(cases)}]")
    print("\n| run | median wall (runs) | vs cp | CPU user+sys (median) | peak RSS |\n|---|---|---|---|---|")
    for case in ["cp", "cp+sync", *cases]:
        med = statistics.median(walls[case])
        runs = ", ".join(f"{w:.1f}" for w in walls[case])
        peak = f"{max(rss[case]):.0f} MiB" if case in rss else "-"
        cpu_med = f"{statistics.median(cpu[case]):.1f} s" if case in cpu else "-"
        label = {"cp": "`cp -r`", "cp+sync": "`cp -r` then `sync`"}.get(case, f"`glmtrt convert {' '.join(CASES.get(case, []))}`")
        print(f"| {label} | {med:.1f} s ({runs}) | {med / cp:.2f}x | {cpu_med} | {peak} |")


if __name__ == "__main__":
    main()
