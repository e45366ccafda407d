"""Benchmark metrics: per-request records -> the summary of one load level.

Definitions (docs/BENCHMARKS.md "Client metrics" has them with formulas). All times are
`time.perf_counter()` seconds of the client; a request's clock starts when it is sent (`t_send`).

- TTFT = t(first chunk with text) - t_send
- time to second token (genai-perf's "Time To Second Token") = t(second chunk with text) - t(first)
- end-to-end latency = t(last response, the final marker included) - t_send
- TPOT (genai-perf's "Inter Token Latency") per request = (e2e - TTFT) / (output tokens - 1),
  for requests with at least 2 output tokens
- inter-chunk gaps: differences between consecutive chunks with text, pooled over all requests
- tokens per chunk per request = output tokens / chunks with text
- output tokens: the client's tokenizer count of the output text; `server_output_tokens` where
  the server reports a count (OpenAI `usage`)
- output tok/s overall = sum(output tokens of successful requests) / benchmark duration, where the
  duration runs from the first send to the last response of the measured requests
- output tok/s per user per request = (output tokens - 1) / (e2e - TTFT) = 1 / TPOT
- requests/s = successful requests / duration (also attempted / duration)
- goodput = requests meeting every given SLO (TTFT <= slo_ttft_ms, TPOT <= slo_tpot_ms) / duration

Statistics: mean, std (population), min, max and percentiles p1 ... p99 with numpy's default
(linear interpolation), the method genai-perf uses.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence

import numpy as np

PERCENTILES = (1, 5, 10, 25, 50, 75, 90, 95, 99)


def stats(values: Iterable[float]) -> dict | None:
    """{mean, std, min, max, p1 ... p99, count} of `values`, or None when empty (NaNs dropped)."""
    arr = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    if arr.size == 0:
        return None
    out = {"mean": float(arr.mean()), "std": float(arr.std()), "min": float(arr.min()), "max": float(arr.max())}
    for p, v in zip(PERCENTILES, np.percentile(arr, PERCENTILES)):
        out[f"p{p}"] = float(v)
    out["count"] = int(arr.size)
    return out


@dataclass
class RequestRecord:
    """One request as sent and received (a line of requests.jsonl)."""

    id: str
    t_send: float
    chunk_times: list[float] = field(default_factory=list)   #: arrival of every response
    chunk_texts: list[str] = field(default_factory=list)     #: text of every response
    prompt: str | None = None
    messages: list | None = None
    conversation: str | None = None
    turn: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None          #: client tokenizer count of the output text
    server_output_tokens: int | None = None   #: where the server reports one
    server_input_tokens: int | None = None
    max_tokens: int | None = None
    finish_reason: str | None = None
    error: str | None = None
    log_probs: list | None = None             #: chosen-token log-probs, where returned
    top_log_probs: list | None = None         #: per token {token: log-prob} (OpenAI top_logprobs)
    scheduled_delay_s: float | None = None    #: rate mode: send time - scheduled arrival
    images: int = 0                           #: images sent with the request
    stages: dict | None = None                #: per-request server stage ms (server_side.stage_breakdown)
    server_info: dict | None = None           #: response parameters the server attached (tensorrt_llm_bls)

    @property
    def text(self) -> str:
        return "".join(self.chunk_texts)

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.chunk_times)

    def text_times(self) -> list[float]:
        """Arrival times of the chunks that carry text."""
        return [t for t, s in zip(self.chunk_times, self.chunk_texts) if s]

    def to_json(self) -> dict:
        d = asdict(self)
        d["text"] = self.text
        return d

    @classmethod
    def from_json(cls, d: dict) -> "RequestRecord":
        d = dict(d)
        d.pop("text", None)
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def request_metrics(r: RequestRecord) -> dict:
    """Per-request metrics in seconds (None where undefined)."""
    tt = r.text_times()
    out: dict = {"ttft": None, "ttst": None, "e2e": None, "tpot": None, "tokens_per_chunk": None,
                 "user_tps": None, "gaps": []}
    if not r.ok:
        return out
    out["e2e"] = r.chunk_times[-1] - r.t_send
    if tt:
        out["ttft"] = tt[0] - r.t_send
        out["gaps"] = [b - a for a, b in zip(tt, tt[1:])]
        if r.output_tokens:
            out["tokens_per_chunk"] = r.output_tokens / len(tt)
    if len(tt) > 1:
        out["ttst"] = tt[1] - tt[0]
    n = r.output_tokens or 0
    if out["ttft"] is not None and n > 1:
        decode = out["e2e"] - out["ttft"]
        out["tpot"] = decode / (n - 1)
        out["user_tps"] = (n - 1) / decode if decode > 0 else None
    return out


def _ms(s: dict | None) -> dict | None:
    return None if s is None else {k: (v if k == "count" else v * 1e3) for k, v in s.items()}


def summarize(records: Sequence[RequestRecord], *, slo_ttft_ms: float | None = None,
              slo_tpot_ms: float | None = None, token_mismatch_warn_pct: float = 5.0) -> dict:
    """The summary of one load level (times in ms, throughputs per second)."""
    per = [(r, request_metrics(r)) for r in records]
    ok = [(r, m) for r, m in per if r.ok]
    if records:
        start = min(r.t_send for r in records)
        ends = [r.chunk_times[-1] for r in records if r.chunk_times] or [start]
        duration = max(max(ends) - start, 1e-9)
    else:
        duration = 0.0
    out_tokens = sum(r.output_tokens or 0 for r, _ in ok)
    good = 0
    for r, m in ok:
        if slo_ttft_ms is not None and (m["ttft"] is None or m["ttft"] * 1e3 > slo_ttft_ms):
            continue
        if slo_tpot_ms is not None and (m["tpot"] is None or m["tpot"] * 1e3 > slo_tpot_ms):
            continue
        good += 1
    summary = {
        "requests": {"attempted": len(records), "successful": len(ok), "failed": len(records) - len(ok)},
        "duration_s": duration,
        "ttft_ms": _ms(stats(m["ttft"] for _, m in ok)),
        "ttst_ms": _ms(stats(m["ttst"] for _, m in ok)),
        "e2e_ms": _ms(stats(m["e2e"] for _, m in ok)),
        "tpot_ms": _ms(stats(m["tpot"] for _, m in ok)),
        "inter_chunk_ms": _ms(stats(g for _, m in ok for g in m["gaps"])),
        "tokens_per_chunk": stats(m["tokens_per_chunk"] for _, m in ok),
        "output_tokens": stats(r.output_tokens for r, _ in ok),
        "input_tokens": stats(r.input_tokens for r, _ in ok),
        "user_tps": stats(m["user_tps"] for _, m in ok),
        "output_tps": out_tokens / duration if duration else 0.0,
        "output_tokens_total": out_tokens,
        "request_rate": len(ok) / duration if duration else 0.0,
        "attempted_rate": len(records) / duration if duration else 0.0,
        "goodput": (good / duration if duration else 0.0) if (slo_ttft_ms or slo_tpot_ms) else None,
        "slo": {"ttft_ms": slo_ttft_ms, "tpot_ms": slo_tpot_ms, "met": good},
        "errors": sorted({r.error for r in records if r.error})[:20],
        "warnings": [],
    }
    server = [(r.output_tokens, r.server_output_tokens) for r, _ in ok if r.server_output_tokens is not None]
    if server:
        ours, theirs = sum(a or 0 for a, _ in server), sum(b for _, b in server)
        diff = 100.0 * (ours - theirs) / theirs if theirs else 0.0
        summary["server_output_tokens_total"] = theirs
        summary["token_count_diff_pct"] = diff
        if abs(diff) > token_mismatch_warn_pct:
            summary["warnings"].append(
                f"client tokenizer counts {ours} output tokens, the server {theirs} ({diff:+.1f}%): "
                "is --tokenizer the served model's?")
    return summary


#: genai-perf / AIPerf CSV rows: (row name, summary key, scale)
CSV_STAT_ROWS = (
    ("Time To First Token (ms)", "ttft_ms"),
    ("Time To Second Token (ms)", "ttst_ms"),
    ("Request Latency (ms)", "e2e_ms"),
    ("Inter Token Latency (ms)", "tpot_ms"),
    ("Inter Chunk Latency (ms)", "inter_chunk_ms"),
    ("Output Token Throughput Per User (tokens/sec/user)", "user_tps"),
    ("Output Sequence Length (tokens)", "output_tokens"),
    ("Input Sequence Length (tokens)", "input_tokens"),
    ("Tokens Per Chunk (tokens)", "tokens_per_chunk"),
)
CSV_COLUMNS = ("avg", "min", "max", "p99", "p95", "p90", "p75", "p50", "p25", "p10", "p5", "p1", "std")


def summary_csv(summary: dict) -> str:
    """genai-perf's CSV layout: a `Metric,avg,min,max,p99,...` table, a blank line, then `Metric,Value`."""
    key = {"avg": "mean"}
    lines = ["Metric," + ",".join(CSV_COLUMNS)]
    for row, name in CSV_STAT_ROWS:
        s = summary.get(name)
        if s:
            lines.append(row + "," + ",".join(f"{s[key.get(c, c)]:.2f}" for c in CSV_COLUMNS))
    lines += ["", "Metric,Value",
              f"Output Token Throughput (tokens/sec),{summary['output_tps']:.2f}",
              f"Request Throughput (per sec),{summary['request_rate']:.2f}",
              f"Request Count (count),{summary['requests']['successful']}",
              f"Failed Request Count (count),{summary['requests']['failed']}"]
    if summary.get("goodput") is not None:
        lines.append(f"Request Goodput (per sec),{summary['goodput']:.2f}")
    if summary.get("output_tps_per_gpu") is not None:
        lines.append(f"Output Token Throughput Per GPU (tokens/sec/gpu),{summary['output_tps_per_gpu']:.2f}")
    for gpu, b in sorted((summary.get("peak_gpu_memory_bytes") or {}).items()):
        lines.append(f"Peak GPU Memory {gpu} (GiB),{b / 2**30:.2f}")
    return "\n".join(lines) + "\n"
