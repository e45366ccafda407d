"""`glmtrt bench`: run load levels against a server and write OUT/ (layout in docs/BENCHMARKS.md).

OUT/{c{N}|r{RATE}}/: run.json, requests.jsonl, summary.json, summary.csv, server_metrics.jsonl and
the level's PNGs; OUT/summary.json across levels plus the sweep PNGs. Each file is written
atomically as soon as its level ends, so an interrupted run leaves complete files for the levels
it finished and partial (but readable) ones for the level it was in.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from glmtrt.client.load import LoadSpec, Runner
from glmtrt.client.metrics import summarize, summary_csv
from glmtrt.errors import GlmtrtError

log = logging.getLogger(__name__)
APIS = ("triton", "openai-chat", "openai-completions")


@dataclass
class BenchOptions:
    """Resolved options of one `glmtrt bench` run (written to run.json)."""

    url: str
    out: str
    api: str = "triton"
    model: str = "ensemble"
    levels: list[LoadSpec] = field(default_factory=list)
    dataset: str = "builtin-zh-en"
    sampling: dict = field(default_factory=dict)
    slo_ttft_ms: float | None = None
    slo_tpot_ms: float | None = None
    search: bool = False
    search_max: int = 256
    metrics_url: str | None = None
    metrics_interval: float = 1.0
    repo: str | None = None
    tokenizer: str | None = None
    request_timeout: float = 300.0
    gpus: int | None = None
    progress: bool = True
    command: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)    #: image files every request carries
    per_request_stages: bool | None = None             #: None: on with images at concurrency 1


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temp file + rename."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def make_client(opts: BenchOptions):
    """The transport client for `opts.api`."""
    if opts.api == "triton":
        from glmtrt.client.aio import AsyncTritonClient

        return AsyncTritonClient(opts.url, model=opts.model, timeout=opts.request_timeout)
    if opts.api in ("openai-chat", "openai-completions"):
        from glmtrt.client.openai_sse import AsyncOpenAIClient

        return AsyncOpenAIClient(opts.url, model=opts.model, api=opts.api.split("-", 1)[1],
                                 timeout=opts.request_timeout)
    raise GlmtrtError(f"--api {opts.api!r}", expected=" | ".join(APIS))


def default_metrics_url(opts: BenchOptions) -> str | None:
    """Triton's metrics endpoint next to its gRPC port (Triton's defaults: gRPC 8001, metrics 8002)."""
    if opts.metrics_url is not None:
        return opts.metrics_url or None
    if opts.api != "triton":
        return None
    host, _, port = opts.url.rpartition(":")
    return f"http://{host}:{int(port) + 1}/metrics" if port.isdigit() else None


def repository_facts(repo: str | None) -> dict:
    """What the local repository / engine manifests say (engine precision, profile, GPU, settings)."""
    if not repo:
        return {}
    from glmtrt.fileio import read_json_object

    root = Path(repo)
    facts: dict = {"repo": str(root.resolve())}
    manifest = read_json_object(root / "glmtrt_repo.json", "repository manifest", missing_ok=True)
    if manifest:
        facts["repository_manifest"] = manifest
        engine = manifest.get("engine") or {}
        for key in ("dir", "checkpoint_dir"):
            d = engine.get(key)
            if not d:
                continue
            p = Path(d) if Path(d).is_absolute() else root / d
            em = read_json_object(p / "manifest.json", "manifest", missing_ok=True)
            if em:
                facts["engine_manifest"] = em
                build = em.get("build") or {}
                opts = em.get("options") or {}
                facts["precision"] = build.get("precision") or opts.get("quant") or opts.get("dtype")
                facts["gpu"] = em.get("gpu") or em.get("profile") or ("cpu (reference engine)"
                                                                      if engine.get("kind") == "reference" else None)
                break
    return facts


async def server_facts(client, opts: BenchOptions) -> dict:
    """Server metadata and (Triton) the served models' configurations."""
    out: dict = {"transport": opts.api, "url": opts.url, "model": opts.model}
    try:
        out["server"] = await client.server_metadata()
        if opts.api == "triton":
            configs = {}
            for name in ("ensemble", "tensorrt_llm_bls", "preprocessing", "vision_encoder", "tensorrt_llm",
                         "postprocessing"):
                try:
                    configs[name] = await client.model_config(name)
                except GlmtrtError:
                    pass
            out["model_configs"] = configs
            trt = configs.get("tensorrt_llm", {})
            out["server_settings"] = {k: (v or {}).get("string_value") for k, v in (trt.get("parameters") or {}).items()}
    except GlmtrtError as exc:
        out["error"] = str(exc)
    return out


def versions() -> dict:
    from glmtrt import __version__

    got = {"glmtrt": __version__, "python": platform.python_version(), "platform": platform.platform()}
    for mod in ("tritonclient", "httpx", "numpy"):
        try:
            from importlib.metadata import version

            got[mod] = version(mod)
        except Exception:
            pass
    return got


async def _statistics(client, opts: BenchOptions) -> dict:
    if opts.api != "triton":
        return {}
    try:
        return await client.statistics()
    except GlmtrtError:
        return {}


def wants_per_request_stages(opts: BenchOptions, spec: LoadSpec) -> bool:
    """Statistics snapshots around every request: only where one request is in flight at a time
    (concurrency 1), so a snapshot delta is that request's own server time."""
    if opts.api != "triton" or spec.concurrency != 1:
        return False
    return bool(opts.images) if opts.per_request_stages is None else opts.per_request_stages


async def run_level(client, items, spec: LoadSpec, opts: BenchOptions, tok, stop: asyncio.Event, facts: dict,
                    progress=None, image_data: Sequence[bytes] = ()) -> dict:
    """Run one level and write its folder; returns its summary."""
    from glmtrt.client import plots
    from glmtrt.client.server_side import MetricsScraper, gpu_summary, kv_cache_series, stage_latency, stage_table

    out = Path(opts.out) / spec.label
    out.mkdir(parents=True, exist_ok=True)
    (out / "server_metrics.jsonl").unlink(missing_ok=True)
    scraper = MetricsScraper(default_metrics_url(opts), interval=opts.metrics_interval,
                             path=out / "server_metrics.jsonl")
    total = (sum(len(items[i % len(items)].turns) for i in range(spec.num_requests))
             if spec.num_requests else None)  # requests, a multi-turn conversation counting each turn
    task = progress.add_task(spec.label, total=total) if progress else None
    probe = None
    if wants_per_request_stages(opts, spec):
        async def probe():     # outside each request's own timing (before its send, after its last response)
            return await _statistics(client, opts)
    runner = Runner(client, sampling=opts.sampling, tok=tok, stop=stop, request_timeout=opts.request_timeout,
                    on_done=(lambda rec: progress.advance(task)) if progress else None,
                    images=image_data, stage_probe=probe)
    write_atomic(out / "run.json", json.dumps(
        {"options": _jsonable(opts), "level": asdict(spec), "versions": versions(), "started": time.time(),
         "token_counter": "tokenizer" if tok is not None else "chunks with text", **facts},
        indent=2, ensure_ascii=False) + "\n")
    before = await _statistics(client, opts)
    scraper.start()
    t0 = time.time()
    probe = LoopLagProbe()
    probe.start()
    cpu0 = time.process_time()
    try:
        records = await runner.run(items, spec)
    finally:
        cpu = time.process_time() - cpu0
        await probe.stop()
        await scraper.stop()
    after = await _statistics(client, opts)
    summary = summarize(runner.records, slo_ttft_ms=opts.slo_ttft_ms, slo_tpot_ms=opts.slo_tpot_ms)
    summary["load"] = {"kind": "concurrency" if spec.concurrency is not None else "rate",
                       "value": spec.concurrency if spec.concurrency is not None else spec.rate, "label": spec.label}
    summary["interrupted"] = stop.is_set()
    summary["aborted"] = runner.aborted
    summary["wall_start"] = t0
    summary["stages"] = stage_table(before, after) if before and after else []
    summary["images_per_request"] = len(image_data)
    if opts.api == "triton":
        summary["stage_latency"] = stage_latency(records, before, after)
    gpu = gpu_summary(scraper.samples)
    summary.update(gpu)
    ngpu = opts.gpus or gpu.get("gpus")
    summary["output_tps_per_gpu"] = summary["output_tps"] / ngpu if ngpu else None
    chunks = sum(len(r.chunk_times) for r in records)
    summary["client"] = {"cpu_s": cpu, "cpu_us_per_chunk": 1e6 * cpu / chunks if chunks else None,
                         "loop_lag_ms": probe.stats_ms()}
    summary["metrics_scrape_error"] = scraper.error if not scraper.samples else None
    write_atomic(out / "requests.jsonl", "".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in records))
    write_atomic(out / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    write_atomic(out / "summary.csv", summary_csv(summary))
    plots.level_plots(records, kv_cache_series(scraper.samples), out, spec.label)
    return summary


class LoopLagProbe:
    """How late the client's event loop runs a ready callback: a task that sleeps `interval` s and
    records (woken - due). A chunk's timestamp is late by at most this lag, so lag / ITL bounds the
    client's own share of a measured inter-token latency."""

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.lags: list[float] = []
        self._task: asyncio.Task | None = None

    async def _loop(self) -> None:
        while True:
            due = time.perf_counter() + self.interval
            await asyncio.sleep(self.interval)
            self.lags.append(max(0.0, time.perf_counter() - due))

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass

    def stats_ms(self) -> dict | None:
        from glmtrt.client.metrics import stats

        s = stats(self.lags)
        return None if s is None else {k: (v if k == "count" else v * 1e3) for k, v in s.items()}


def _jsonable(opts: BenchOptions) -> dict:
    d = asdict(opts)
    d["levels"] = [lv.label for lv in opts.levels]
    return d


def meets_slo(summary: dict, opts: BenchOptions) -> bool:
    """Every request succeeded and TTFT p95 <= --slo-ttft-ms (and TPOT p95 <= --slo-tpot-ms when given)."""
    if summary["requests"]["failed"] or not summary.get("ttft_ms"):
        return False
    if opts.slo_ttft_ms is not None and summary["ttft_ms"]["p95"] > opts.slo_ttft_ms:
        return False
    if opts.slo_tpot_ms is not None and (not summary.get("tpot_ms") or summary["tpot_ms"]["p95"] > opts.slo_tpot_ms):
        return False
    return True


def _search_levels(base: LoadSpec, opts: BenchOptions, results: dict[int, bool]):
    """Next concurrency to probe: doubling until the SLO fails, then bisection (None when done)."""
    passed = [c for c, ok in results.items() if ok]
    failed = [c for c, ok in results.items() if not ok]
    lo = max(passed, default=0)
    hi = min([c for c in failed if c > lo], default=None)
    if hi is None:
        nxt = max(1, lo * 2)
        return None if nxt > opts.search_max or (lo and lo >= opts.search_max) else nxt
    return (lo + hi) // 2 if hi - lo > 1 else None


async def run_bench(opts: BenchOptions, items: Sequence, tok=None, stop: asyncio.Event | None = None) -> dict:
    """Run every level (or the max-concurrency search); writes OUT/ and returns OUT/summary.json's content."""
    from glmtrt.client import plots

    from glmtrt.client.images import read_images

    stop = stop or asyncio.Event()
    image_data = [f.data for f in read_images(opts.images)]
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    client = make_client(opts)
    top: dict = {"command": opts.command, "url": opts.url, "transport": opts.api, "model": opts.model,
                 "dataset": opts.dataset, "levels": [], "interrupted": False}
    progress = _progress(opts)
    try:
        if not await client.ready():
            raise GlmtrtError(f"{opts.url} ({opts.api}, model {opts.model}) is not ready",
                              fix="start it (glmtrt serve REPO) or check the URL / --model")
        facts = {**await server_facts(client, opts), **repository_facts(opts.repo)}
        top["facts"] = {k: facts.get(k) for k in ("precision", "gpu", "server_settings", "server")}
        with progress or _null():
            if opts.search:
                results: dict[int, bool] = {}
                base = opts.levels[0]
                c = 1
                while c is not None and not stop.is_set():
                    spec = LoadSpec(**{**asdict(base), "concurrency": c, "rate": None})
                    s = await run_level(client, items, spec, opts, tok, stop, facts, progress, image_data)
                    top["levels"].append(s)
                    results[c] = meets_slo(s, opts) and not s["interrupted"]
                    c = _search_levels(base, opts, results)
                top["max_concurrency_at_slo"] = max((k for k, ok in results.items() if ok), default=0)
            else:
                for spec in opts.levels:
                    if stop.is_set():
                        break
                    top["levels"].append(await run_level(client, items, spec, opts, tok, stop, facts, progress,
                                                         image_data))
    finally:
        await client.close()
        top["interrupted"] = stop.is_set()
        top["levels"].sort(key=lambda s: s["load"]["value"])
        write_atomic(out / "summary.json", json.dumps(top, indent=2, ensure_ascii=False) + "\n")
        if top["levels"]:
            kind = top["levels"][0]["load"]["kind"]
            plots.sweep_plots(top["levels"], out, "concurrency" if kind == "concurrency" else "request rate (req/s)")
    return top


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return False


def _progress(opts: BenchOptions):
    if not opts.progress:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=Console(file=sys.stderr), transient=False)
