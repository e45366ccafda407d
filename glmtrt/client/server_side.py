"""Server-side truth during a benchmark: Triton's Prometheus metrics as a time series and the
per-model statistics (statistics API) before/after a run, reduced to the stage table.

Metrics are parsed with `prometheus_client.parser`; every `nv_*` sample is kept (the server
decides what exists: `nv_inference_*`, `nv_gpu_memory_used_bytes`, `nv_gpu_utilization`,
`nv_trt_llm_kv_cache_block_metrics`, `nv_trt_llm_request_metrics`, ...).
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)


def parse_metrics(text: str, prefix: str = "nv_") -> dict[str, float]:
    """Prometheus text -> {'name{k="v",...}': value} for samples whose name starts with `prefix`."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            # the parser names counter samples `<family>_total`; Triton prints them without the suffix
            name = family.name if family.type == "counter" and s.name == family.name + "_total" else s.name
            if not name.startswith(prefix):
                continue
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{name}{{{labels}}}" if labels else name] = float(s.value)
    return out


def split_key(key: str) -> tuple[str, dict[str, str]]:
    """'name{a="1",b="2"}' -> ("name", {"a": "1", "b": "2"})."""
    if "{" not in key:
        return key, {}
    name, rest = key.split("{", 1)
    labels = {}
    for part in rest.rstrip("}").split('",'):
        if "=" in part:
            k, v = part.split("=", 1)
            labels[k] = v.strip('"')
    return name, labels


class MetricsScraper:
    """Scrape `url` every `interval` s into `samples` (and `path` as JSON lines) while running."""

    def __init__(self, url: str | None, *, interval: float = 1.0, path: Path | None = None):
        self.url, self.interval, self.path = url, interval, path
        self.samples: list[dict] = []
        self.error: str | None = None
        self._task: asyncio.Task | None = None

    async def scrape_once(self, client) -> None:
        try:
            r = await client.get(self.url, timeout=5.0)
            r.raise_for_status()
            row = {"t": time.perf_counter(), "wall": time.time(), "metrics": parse_metrics(r.text)}
        except Exception as exc:  # a dead server: keep what we have
            self.error = f"{type(exc).__name__}: {exc}"
            return
        self.samples.append(row)
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")

    async def _loop(self) -> None:
        import httpx

        async with httpx.AsyncClient() as client:
            while True:
                await self.scrape_once(client)
                await asyncio.sleep(self.interval)

    def start(self) -> None:
        if self.url:
            self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            import httpx

            async with httpx.AsyncClient() as client:  # one last sample after the run
                await self.scrape_once(client)


def gpu_summary(samples: list[dict]) -> dict:
    """Peak GPU memory per GPU, mean utilization per GPU, number of GPUs, KV-cache use peak."""
    peak: dict[str, float] = {}
    util: dict[str, list[float]] = {}
    kv_peak = None
    for row in samples:
        for key, val in row["metrics"].items():
            name, labels = split_key(key)
            gpu = labels.get("gpu_uuid")
            if name == "nv_gpu_memory_used_bytes" and gpu:
                peak[gpu] = max(peak.get(gpu, 0.0), val)
            elif name == "nv_gpu_utilization" and gpu:
                util.setdefault(gpu, []).append(val)
            elif name == "nv_trt_llm_kv_cache_block_metrics" and labels.get("kv_cache_block_type") == "fraction":
                kv_peak = val if kv_peak is None else max(kv_peak, val)
    return {"gpus": len(peak) or len(util) or None, "peak_gpu_memory_bytes": peak or None,
            "gpu_utilization_mean": {g: sum(v) / len(v) for g, v in util.items()} or None,
            "kv_cache_fraction_peak": kv_peak}


def kv_cache_series(samples: list[dict]) -> list[tuple[float, float]]:
    """[(t, used fraction)] of `nv_trt_llm_kv_cache_block_metrics` (used/max when no fraction sample)."""
    out = []
    for row in samples:
        used = mx = frac = None
        for key, val in row["metrics"].items():
            name, labels = split_key(key)
            if name != "nv_trt_llm_kv_cache_block_metrics":
                continue
            kind = labels.get("kv_cache_block_type")
            frac = val if kind == "fraction" else frac
            used = val if kind == "used" else used
            mx = val if kind == "max" else mx
        if frac is None and used is not None and mx:
            frac = used / mx
        if frac is not None:
            out.append((row["t"], frac))
    return out


def _num(d: dict | None, *keys) -> float:
    for k in keys:
        d = (d or {}).get(k)
    return float(d or 0)


def stage_table(before: dict, after: dict) -> list[dict]:
    """Per composing model: requests, mean queue / compute ms per request and per response, from two
    statistics snapshots (Triton's `model_stats` JSON; int64 fields arrive as strings)."""
    prev = {(m["name"], m.get("version", "")): m for m in before.get("model_stats", [])}
    rows = []
    for m in after.get("model_stats", []):
        p = prev.get((m["name"], m.get("version", "")), {})
        n = _num(m, "inference_stats", "success", "count") - _num(p, "inference_stats", "success", "count")
        if n <= 0:
            continue

        def delta(kind):
            return (_num(m, "inference_stats", kind, "ns") - _num(p, "inference_stats", kind, "ns")) / 1e6

        compute = delta("compute_input") + delta("compute_infer") + delta("compute_output")
        responses = infer_ns = 0.0
        for key, rs in (m.get("response_stats") or {}).items():
            prs = (p.get("response_stats") or {}).get(key, {})
            responses += _num(rs, "success", "count") - _num(prs, "success", "count")
            infer_ns += (_num(rs, "compute_infer", "ns") - _num(prs, "compute_infer", "ns")
                         + _num(rs, "compute_output", "ns") - _num(prs, "compute_output", "ns"))
        rows.append({"model": m["name"], "requests": int(n),
                     "queue_ms": delta("queue") / n, "compute_ms": compute / n,
                     "fail": int(_num(m, "inference_stats", "fail", "count") - _num(p, "inference_stats", "fail", "count")),
                     "responses": int(responses) or None,
                     "response_ms": (infer_ns / 1e6 / responses) if responses else None})
    order = {"ensemble": 0, "tensorrt_llm_bls": 1, "preprocessing": 2, "vision_encoder": 3, "tensorrt_llm": 4,
             "postprocessing": 5}
    return sorted(rows, key=lambda r: (order.get(r["model"], 9), r["model"]))


#: composing models of the multimodal pipeline (the encoder's name is the repository contract)
PREPROCESSING, VISION_ENCODER = "preprocessing", "vision_encoder"
#: server stages of the per-stage latency table, in pipeline order
SERVER_STAGES = ("upload_decode", "preprocessing", "vision_encoder")
#: our stage -> the tensorrt_llm_bls first response's `image_info` key, microseconds (docs/INTERFACES.md)
BLS_STAGE_PARAMS = {"preprocessing": "image_decode_us", "vision_encoder": "vision_encoder_us"}


def _model_ns(before: dict, after: dict, name: str) -> dict[str, float]:
    """Δ success count and Δ ns of queue / compute_input / compute_infer / compute_output of one model."""
    prev = {m["name"]: m for m in before.get("model_stats", [])}
    out = {"count": 0.0, "queue": 0.0, "compute_input": 0.0, "compute_infer": 0.0, "compute_output": 0.0}
    for m in after.get("model_stats", []):
        if m["name"] != name:
            continue
        p = prev.get(name, {})
        out["count"] += _num(m, "inference_stats", "success", "count") - _num(p, "inference_stats", "success", "count")
        for kind in ("queue", "compute_input", "compute_infer", "compute_output"):
            out[kind] += _num(m, "inference_stats", kind, "ns") - _num(p, "inference_stats", kind, "ns")
    return out


def stage_breakdown(before: dict, after: dict) -> dict[str, float | None]:
    """Server time per request (ms) of each pipeline stage between two statistics snapshots.

    - upload_decode: preprocessing's queue + compute_input: the request and its image bytes waiting
      for and being handed to the preprocessing model (Triton's compute_input);
    - preprocessing: its compute_infer + compute_output less the vision encoder's time: image decode,
      smart_resize, patchify, chat template, M-RoPE positions. Our preprocessing calls
      `vision_encoder` through BLS inside its own execute (docs/INTERFACES.md), so its compute time
      contains the encoder's, which is subtracted;
    - vision_encoder: everything the `vision_encoder` model spent (queue + compute), 0 without images.
    Each is divided by the requests preprocessing served in the interval: around one request at a
    time (bench at concurrency 1) that is that request's own time; over a run it is the mean.
    None where the model is absent (a text repository has no vision_encoder).
    """
    pre = _model_ns(before, after, PREPROCESSING)
    vis = _model_ns(before, after, VISION_ENCODER)
    n = pre["count"]
    if n <= 0:
        return {k: None for k in SERVER_STAGES} | {"requests": 0}
    has_vision = any(m["name"] == VISION_ENCODER for m in after.get("model_stats", []))
    vision_ns = vis["queue"] + vis["compute_input"] + vis["compute_infer"] + vis["compute_output"]
    pre_ns = max(0.0, pre["compute_infer"] + pre["compute_output"] - vision_ns)
    return {"upload_decode": (pre["queue"] + pre["compute_input"]) / n / 1e6,
            "preprocessing": pre_ns / n / 1e6,
            "vision_encoder": vision_ns / n / 1e6 if has_vision else None,
            "requests": int(n)}


def stage_latency(records, before: dict | None, after: dict | None) -> dict:
    """The per-stage latency table of one level: upload/decode, preprocessing, vision encoder (server),
    first token and full answer (client), each {p50, p95, ...} over requests or {mean} for the level.

    Per server stage the best source the run has: the `tensorrt_llm_bls` `image_info` of each request
    (`image_decode_us`: decode + smart_resize + patchify, `vision_encoder_us`: per request at any
    concurrency), else statistics
    snapshots around each request (`stages`, concurrency 1: per request), else the level's mean from
    the statistics deltas. First token and full answer are always per request (client timestamps)."""
    from glmtrt.client.metrics import request_metrics, stats

    ok = [r for r in records if r.ok]
    mean = stage_breakdown(before, after) if before and after else {}
    out: dict = {"requests": len(ok), "sources": {}}
    for key in SERVER_STAGES:
        bls = [(r.server_info or {}).get(BLS_STAGE_PARAMS.get(key, "")) for r in ok]
        snap = [(r.stages or {}).get(key) for r in ok]
        if ok and all(isinstance(v, (int, float)) for v in bls):
            out[key] = stats(v / 1e3 for v in bls)
            out["sources"][key] = f"tensorrt_llm_bls image_info {BLS_STAGE_PARAMS[key]} per request"
        elif ok and all(v is not None for v in snap):
            out[key], out["sources"][key] = stats(snap), "Triton statistics deltas around each request"
        elif mean.get(key) is not None:
            out[key], out["sources"][key] = {"mean": mean[key]}, "level mean from Triton statistics deltas"
        else:
            out[key] = None
    m = [request_metrics(r) for r in ok]
    for key, src in (("first_token", "ttft"), ("full_answer", "e2e")):
        s = stats(x[src] for x in m)
        out[key] = None if s is None else {k: (v if k == "count" else v * 1e3) for k, v in s.items()}
        out["sources"][key] = "client timestamps per request"
    out["per_request"] = all(out[k] is None or "p50" in out[k] for k in SERVER_STAGES)
    return out


def format_stage_latency(t: dict) -> list[str]:
    """Terminal lines of the per-stage table (P50 / P95 ms; `mean` where only the level's mean exists)."""
    names = {"upload_decode": "upload/decode", "preprocessing": "preprocessing", "vision_encoder": "vision encoder",
             "first_token": "first token", "full_answer": "full answer"}
    lines = []
    for key, label in names.items():
        s = t.get(key)
        if not s:
            val = "–"
        elif "p50" in s:
            val = f"p50 {s['p50']:9.2f}  p95 {s['p95']:9.2f}"
        else:
            val = f"mean {s['mean']:8.2f}           "
        lines.append(f"  {label:<15} {val}  ({t.get('sources', {}).get(key, 'no data')})")
    return lines
