"""PNG plots of a benchmark (matplotlib, Agg backend: no display needed).

Per level: TTFT CDF, latency over time (TTFT and e2e per request by send time), KV-cache use over
time (when the server reports it). Across levels: TTFT and TPOT vs load with p50 lines and p5-p95
bands, output throughput vs load.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from glmtrt.client.metrics import RequestRecord, request_metrics


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def level_plots(records: Sequence[RequestRecord], kv_series: Sequence[tuple[float, float]], out: Path,
                title: str) -> list[Path]:
    """TTFT CDF, latency over time and (when present) KV-cache use over time for one level."""
    plt = _plt()
    ok = [(r, request_metrics(r)) for r in records if r.ok]
    paths = []
    ttft = sorted(m["ttft"] * 1e3 for _, m in ok if m["ttft"] is not None)
    fig, ax = plt.subplots(figsize=(6, 4))
    if ttft:
        ax.step(ttft, [(i + 1) / len(ttft) for i in range(len(ttft))], where="post")
    ax.set(xlabel="TTFT (ms)", ylabel="fraction of requests", title=f"TTFT CDF — {title}")
    ax.grid(alpha=0.3)
    paths.append(_save(fig, out / "ttft_cdf.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    if ok:
        t0 = min(r.t_send for r, _ in ok)
        xs = [r.t_send - t0 for r, _ in ok]
        ax.scatter(xs, [m["e2e"] * 1e3 for _, m in ok], s=8, label="end-to-end")
        ax.scatter([x for x, (_, m) in zip(xs, ok) if m["ttft"] is not None],
                   [m["ttft"] * 1e3 for _, m in ok if m["ttft"] is not None], s=8, label="TTFT")
        ax.legend()
    failed = [r for r in records if not r.ok]
    ax.set(xlabel="send time (s from start)", ylabel="latency (ms)",
           title=f"latency over time — {title}" + (f" ({len(failed)} failed)" if failed else ""))
    ax.grid(alpha=0.3)
    paths.append(_save(fig, out / "latency_over_time.png"))

    if kv_series:
        fig, ax = plt.subplots(figsize=(6, 4))
        t0 = kv_series[0][0]
        ax.plot([t - t0 for t, _ in kv_series], [100 * f for _, f in kv_series])
        ax.set(xlabel="time (s)", ylabel="KV-cache blocks used (%)", title=f"KV cache — {title}", ylim=(0, 100))
        ax.grid(alpha=0.3)
        paths.append(_save(fig, out / "kv_cache_over_time.png"))
    return paths


def sweep_plots(levels: Sequence[dict], out: Path, xlabel: str) -> list[Path]:
    """TTFT / TPOT vs load (p50 with p5-p95 band), throughput vs load; `levels` = per-level summaries."""
    plt = _plt()
    rows = [lv for lv in levels if lv.get("ttft_ms")]
    xs = [lv["load"]["value"] for lv in rows]
    paths = []
    for key, label, name in (("ttft_ms", "TTFT (ms)", "ttft_vs_load.png"), ("tpot_ms", "TPOT (ms)", "tpot_vs_load.png")):
        fig, ax = plt.subplots(figsize=(6, 4))
        pts = [(x, lv[key]) for x, lv in zip(xs, rows) if lv.get(key)]
        if pts:
            ax.plot([x for x, _ in pts], [s["p50"] for _, s in pts], marker="o", label="p50")
            ax.plot([x for x, _ in pts], [s["p95"] for _, s in pts], marker=".", ls="--", label="p95")
            ax.fill_between([x for x, _ in pts], [s["p5"] for _, s in pts], [s["p95"] for _, s in pts],
                            alpha=0.2, label="p5–p95")
            ax.legend()
        ax.set(xlabel=xlabel, ylabel=label, title=f"{label} vs {xlabel}")
        ax.grid(alpha=0.3)
        paths.append(_save(fig, out / name))
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(xs, [lv["output_tps"] for lv in rows], marker="o", label="output tok/s")
    if any(lv.get("goodput") is not None for lv in rows):
        ax2 = ax.twinx()
        ax2.plot(xs, [lv.get("goodput") or 0 for lv in rows], marker="s", color="tab:green", label="goodput (req/s)")
        ax2.set_ylabel("goodput (req/s)")
    ax.set(xlabel=xlabel, ylabel="output tokens/s", title=f"throughput vs {xlabel}")
    ax.grid(alpha=0.3)
    paths.append(_save(fig, out / "throughput_vs_load.png"))
    return paths
