"""Why `glmtrt convert` can beat `cp` here: one copy, three ways of handling the written pages.

    .venv/bin/python scripts/bench_writeback.py --workdir /work/benchdata [--runs 3]

Copies the shards of the bench checkpoint (`make bench` writes it) into one output file with
`copy_file_range` in 16 MiB steps and fsyncs it, with glmtrt's write-back policy
(glmtrt/checkpoint/writeback.py) set three ways, alternated per round, source read before each:
  plain   - no write-back requests (dirty pages pile up until the kernel's thresholds; fsync at end)
  wb      - sync_file_range each chunk, wait 4 chunks behind (pages stay cached, clean)
  wb+drop - the same, then drop each chunk on disk from the page cache (what convert does)
and `cp -r` of the same shards for reference. Prints the median wall and system time of each.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_convert import warm          # scripts/ is on sys.path when this runs as a script
from glmtrt.checkpoint.writeback import CHUNK, Writeback

MODES = {"plain": None, "wb": False, "wb+drop": True}


def copy_into_one(src: Path, out: Path, drop: bool | None) -> None:
    """All shards of `src` into one file `out`, with the given write-back policy, then fsync."""
    fo = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    wb = Writeback(fo, drop=bool(drop)) if drop is not None else None
    pos = 0
    try:
        for shard in sorted(src.glob("*.safetensors")):
            fi = os.open(shard, os.O_RDONLY)
            try:
                n, off = os.fstat(fi).st_size, 0
                while off < n:
                    k = os.copy_file_range(fi, fo, min(CHUNK, n - off), off, pos)
                    off, pos = off + k, pos + k
                    if wb is not None:
                        wb.advance(pos)
            finally:
                os.close(fi)
        os.fsync(fo)
    finally:
        os.close(fo)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/glmtrt-bench"))
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    src, dst = args.workdir / "chatglm3-6b-random", args.workdir / "wb-out"
    if not any(src.glob("*.safetensors")):
        sys.exit(f"no checkpoint at {src}: run `make bench BENCH_DIR={args.workdir}` (or bench_convert.py) first")
    wall: dict[str, list[float]] = {m: [] for m in ["cp", *MODES]}
    sys_s: dict[str, list[float]] = {m: [] for m in wall}
    for k in range(args.runs):
        for mode in wall:
            shutil.rmtree(dst, ignore_errors=True)
            subprocess.run(["sync"], check=True)
            warm(src)
            t0, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN).ru_stime
            if mode == "cp":
                subprocess.run(["cp", "-r", str(src), str(dst)], check=True)
                s = resource.getrusage(resource.RUSAGE_CHILDREN).ru_stime - r0
            else:
                dst.mkdir()
                s0 = resource.getrusage(resource.RUSAGE_SELF).ru_stime
                copy_into_one(src, dst / "one.bin", MODES[mode])
                s = resource.getrusage(resource.RUSAGE_SELF).ru_stime - s0
            wall[mode].append(time.perf_counter() - t0)
            sys_s[mode].append(s)
            print(f"round {k + 1} {mode}: {wall[mode][-1]:.1f} s (system {s:.1f} s)", file=sys.stderr)
    shutil.rmtree(dst, ignore_errors=True)
    print("| copy | median wall (runs) | median system time |\n|---|---|---|")
    for mode in wall:
        runs = ", ".join(f"{w:.1f}" for w in wall[mode])
        print(f"| {mode} | {statistics.median(wall[mode]):.1f} s ({runs}) | {statistics.median(sys_s[mode]):.1f} s |")


if __name__ == "__main__":
    main()
