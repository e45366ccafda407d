"""Serving-stack ceiling and paced ground truth on this CPU (docs/BENCHMARKS.md "Client ground truth").

Builds a tiny scripted checkpoint, a reference-engine repository (optionally paced) with
max_batch_size 128, starts a real Triton on CPU, and runs `glmtrt bench` levels through `ensemble`
and `tensorrt_llm_bls`. For every level it reads the CPU time (utime + stime from /proc) that the
tritonserver process and each python-model stub used, and prints tokens/s and CPU µs per streamed
token per process.

    .venv/bin/python scripts/bench_ceiling.py --levels 1,16,64 --tokens 64 --out build/ceiling
    .venv/bin/python scripts/bench_ceiling.py --pace-ttft-ms 1000 --pace-itl-ms 500 --levels 1,16,64,128 ...
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import tempfile
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(server_pid: int) -> dict[str, float]:
    """CPU seconds per process group: tritonserver itself and each stub by model name."""
    out: dict[str, float] = {}

    def cpu(pid: int) -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK

    out["tritonserver (gRPC, ensemble scheduler, IPC)"] = cpu(server_pid)
    for child in Path(f"/proc/{server_pid}/task").glob("*/children"):
        for pid in child.read_text().split():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
                m = re.search(r"/([^/\x00]+)/1/model\.py", cmd)
                name = m.group(1) if m else "other"
                out[name] = out.get(name, 0.0) + cpu(int(pid))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return out


def make_repo(work: Path, pace_ttft: float, pace_itl: float, max_batch: int) -> Path:
    from glmtrt.convert.pipeline import convert_checkpoint
    from glmtrt.models.chatglm.tiny import make_tiny_checkpoint
    from glmtrt.tokenizer import load_tokenizer, padded_vocab_size
    from glmtrt.tokenizer.tiny import make_tiny_chatglm3_tokenizer
    from glmtrt.triton.generator import RepoOptions, generate_repository

    shared = Path(__file__).resolve().parents[1] / ".." / "shared" / "models" / "chatglm3-6b"
    tok_dir = shared.resolve() if (shared / "tokenizer.model").is_file() else make_tiny_chatglm3_tokenizer(work / "tok")
    tok = load_tokenizer(tok_dir)
    chain = tok.encode("你好，世界! Hello")
    hf = make_tiny_checkpoint(work / "hf", seed=0, vocab_size=padded_vocab_size(tok.vocab_size), num_layers=1,
                              script=(tok.special_tokens["<|assistant|>"], chain, tok.eos_id))
    ckpt = convert_checkpoint(hf, work / "ckpt", dtype="float32", progress=False)
    return generate_repository(RepoOptions(source=ckpt, tokenizer=tok_dir, output=work / "repo", engine="reference",
                                           max_batch_size=max_batch, max_input_len=128, max_seq_len=512,
                                           pace_ttft_ms=pace_ttft, pace_itl_ms=pace_itl))


async def one_level(url: str, model: str, conc: int, tokens: int, requests: int, tok, out: Path, pid: int,
                    ramp_up: float, metrics_port: int) -> dict:
    from glmtrt.client.bench import BenchOptions, run_bench
    from glmtrt.client.datasets import synthetic
    from glmtrt.client.load import LoadSpec

    items = synthetic(tok, count=requests, input_tokens=32, output_tokens=tokens, seed=conc)
    spec = LoadSpec(concurrency=conc, num_requests=requests, warmup=min(conc, 4), ramp_up=ramp_up)
    opts = BenchOptions(url=url, out=str(out), model=model, levels=[spec], dataset="synthetic",
                        sampling={"temperature": 1.0, "top_k": 0}, progress=False,
                        metrics_url=f"http://127.0.0.1:{metrics_port}/metrics")
    before = proc_cpu(pid)
    top = await run_bench(opts, items, tok)
    after = proc_cpu(pid)
    s = top["levels"][0]
    n = s["output_tokens_total"]
    cpu = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    return {"model": model, "concurrency": conc, "output_tps": s["output_tps"], "tokens": n,
            "failed": s["requests"]["failed"], "ttft_p50_ms": (s["ttft_ms"] or {}).get("p50"),
            "tpot_mean_ms": (s["tpot_ms"] or {}).get("mean"), "tpot_p50_ms": (s["tpot_ms"] or {}).get("p50"),
            "client": s["client"], "stages": s["stages"],
            "cpu_us_per_token": {k: 1e6 * v / n for k, v in cpu.items()} if n else {}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--levels", default="1,16,64")
    ap.add_argument("--models", default="ensemble,tensorrt_llm_bls")
    ap.add_argument("--tokens", type=int, default=64, help="output tokens per request (forced with min_tokens)")
    ap.add_argument("--rounds", type=int, default=2, help="requests per level = rounds x concurrency")
    ap.add_argument("--pace-ttft-ms", type=float, default=0.0)
    ap.add_argument("--pace-itl-ms", type=float, default=0.0)
    ap.add_argument("--ramp-up", type=float, default=0.0)
    ap.add_argument("--out", default="build/ceiling")
    a = ap.parse_args()

    from glmtrt.tokenizer import load_tokenizer
    from glmtrt.triton.server import TritonServer

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="glmtrt-ceiling-") as tmp:
        repo = make_repo(Path(tmp), a.pace_ttft_ms, a.pace_itl_ms, 128)
        tok = load_tokenizer(repo / "preprocessing" / "tokenizer")
        with TritonServer(repo, ready_timeout=300) as srv:
            for model in a.models.split(","):
                for c in [int(x) for x in a.levels.split(",")]:
                    row = asyncio.run(one_level(srv.grpc_url, model, c, a.tokens, a.rounds * c, tok,
                                                out / f"{model}-c{c}", srv.pid, a.ramp_up, srv.metrics_port))
                    rows.append(row)
                    cpu = row["cpu_us_per_token"]
                    print(f"{model:17s} c={c:<4d} {row['output_tps']:8.1f} tok/s  TTFT p50 {row['ttft_p50_ms']:.1f} ms"
                          f"  TPOT mean {row['tpot_mean_ms']:.2f} ms  server CPU µs/token: "
                          + ", ".join(f"{k.split(' ')[0]} {v:.0f}" for k, v in sorted(cpu.items()))
                          + f"  total {sum(cpu.values()):.0f}", flush=True)
    (out / "ceiling.json").write_text(json.dumps({"args": vars(a), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
