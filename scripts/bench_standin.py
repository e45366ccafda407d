"""Throughput of the CPU stand-in (`tensorrt_llm` model) at several concurrencies; several servers
measured alternately in one run (same machine, same load).

    python scripts/bench_standin.py REPO[=PYTHON] [REPO[=PYTHON] ...] --concurrency 1,8,32 --tokens 32 --reps 3

Each REPO gets its own Triton server, started by PYTHON (default: this interpreter) so two code
versions can be compared from two virtualenvs. All servers start first; then for every repetition
and concurrency level each server is measured once, in turn. Requests stream from `tensorrt_llm`
directly (the engine's tensors), greedy, min_tokens = request_output_len = --tokens, so every request
produces exactly --tokens tokens; tok/s = streams * tokens / wall time of the level. Prints a
Markdown table of medians and the machine load (`uptime`).
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import queue
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SERVE = ("import sys, time\nfrom glmtrt.triton.server import TritonServer\n"
         "with TritonServer(sys.argv[1], ready_timeout=900) as s:\n"
         "    print(s.grpc_url, flush=True)\n    sys.stdin.read()\n")


def one_stream(url: str, i: int, tokens: int) -> int:
    import tritonclient.grpc as grpcclient

    def t(name, arr, dt):
        x = grpcclient.InferInput(name, list(arr.shape), dt)
        x.set_data_from_numpy(arr)
        return x

    ids = np.array([[5 + (i + k) % 100 for k in range(12)]], np.int32)
    inputs = [t("input_ids", ids, "INT32"), t("input_lengths", np.array([[12]], np.int32), "INT32"),
              t("request_output_len", np.array([[tokens]], np.int32), "INT32"),
              t("min_tokens", np.array([[tokens]], np.int32), "INT32"),
              t("streaming", np.array([[True]]), "BOOL")]
    q: queue.Queue = queue.Queue()
    client = grpcclient.InferenceServerClient(url)
    client.start_stream(callback=lambda result, error: q.put((result, error)))
    client.async_stream_infer("tensorrt_llm", inputs, request_id=str(i), enable_empty_final_response=True)
    n = 0
    try:
        while True:
            r, e = q.get(timeout=900)
            if e is not None:
                raise RuntimeError(str(e))
            if r.as_numpy("output_ids") is not None:
                n += 1
            if r.get_response().parameters["triton_final_response"].bool_param:
                return n
    finally:
        client.stop_stream()
        client.close()


def run_level(url: str, n: int, tokens: int) -> float:
    t = time.perf_counter()
    with cf.ThreadPoolExecutor(n) as pool:
        got = list(pool.map(lambda i: one_stream(url, i, tokens), range(n)))
    assert got == [tokens] * n, got
    return n * tokens / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("repos", nargs="+")
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    procs, urls, names = [], [], []
    try:
        for spec in args.repos:
            repo, _, py = spec.partition("=")
            p = subprocess.Popen([py or sys.executable, "-c", SERVE, repo], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True, cwd="/")
            procs.append(p)
            names.append(spec)
        urls = [p.stdout.readline().strip() for p in procs]
        for url in urls:
            run_level(url, 2, 4)  # warm-up
        res = {(r, c): [] for r in range(len(urls)) for c in levels}
        for rep in range(args.reps):
            for c in levels:
                for r, url in enumerate(urls):
                    res[r, c].append(run_level(url, c, args.tokens))
                    print(f"rep {rep} c={c} {names[r]}: {res[r, c][-1]:.1f} tok/s", file=sys.stderr, flush=True)
        load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
        print(f"\n{args.tokens} tokens per request, median of {args.reps}; after the run: {load}\n")
        print("| server | " + " | ".join(f"{c} streams (tok/s)" for c in levels) + " |")
        print("|---|" + "---|" * len(levels))
        for r, name in enumerate(names):
            print(f"| {name} | " + " | ".join(f"{statistics.median(res[r, c]):.1f}" for c in levels) + " |")
    finally:
        for p in procs:
            p.stdin.close()
        for p in procs:
            p.wait(timeout=60)


if __name__ == "__main__":
    main()
