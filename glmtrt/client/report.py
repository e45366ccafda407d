"""`glmtrt report`: several `glmtrt bench` folders -> one Markdown report and a self-contained HTML file.

Everything comes from the run folders (OUT/summary.json, OUT/*/summary.json, OUT/*/run.json):
headline per run (its highest-throughput level), every level, deltas vs the first run at the same
load level, the per-stage table, the plots, and each run's GPU, engine precision and server
settings as the bench recorded them.
"""
from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path
from typing import Sequence

from glmtrt.errors import GlmtrtError

SETTINGS = ("batch_scheduler_policy", "kv_cache_free_gpu_mem_fraction", "max_tokens_in_paged_kv_cache",
            "enable_chunked_context", "enable_kv_cache_reuse", "engine_kind", "pace_ttft_ms", "pace_itl_ms")


def load_run(path: Path) -> dict:
    """A bench folder: {"name", "path", "top", "levels": [(summary, run.json)]}."""
    top_file = path / "summary.json"
    if not top_file.is_file():
        raise GlmtrtError(f"{path}: no summary.json", expected="a folder written by glmtrt bench --out")
    top = json.loads(top_file.read_text("utf-8"))
    levels = []
    for lv in top.get("levels", []):
        d = path / lv["load"]["label"]
        run = json.loads((d / "run.json").read_text("utf-8")) if (d / "run.json").is_file() else {}
        levels.append((lv, run))
    if not levels:
        raise GlmtrtError(f"{path}: the run has no finished load level")
    return {"name": path.name, "path": path, "top": top, "levels": levels}


def _f(v, fmt="{:.1f}") -> str:
    return "–" if v is None else fmt.format(v)


def _pct(new, old) -> str:
    if new is None or not old:
        return "–"
    return f"{100.0 * (new - old) / old:+.1f}%"


def _g(s: dict | None, key: str):
    return None if not s else s.get(key)


def _peak_gib(lv: dict):
    peak = lv.get("peak_gpu_memory_bytes") or {}
    return max(peak.values()) / 2**30 if peak else None


def _best(run: dict) -> dict:
    return max((lv for lv, _ in run["levels"]), key=lambda lv: lv.get("output_tps") or 0)


def _facts(run: dict) -> dict:
    lv, rj = run["levels"][0]
    settings = rj.get("server_settings") or {}
    return {"transport": rj.get("transport", run["top"].get("transport")), "url": run["top"].get("url"),
            "model": run["top"].get("model"), "dataset": run["top"].get("dataset"),
            "gpu": rj.get("gpu") or "not reported", "precision": rj.get("precision") or "not reported",
            "server": (rj.get("server") or {}).get("name", "") + " " + (rj.get("server") or {}).get("version", ""),
            "settings": {k: settings[k] for k in SETTINGS if settings.get(k) not in (None, "")}}


def build_sections(runs: Sequence[dict]) -> list[tuple[str, list[str], list[list[str]]]]:
    """[(title, header, rows)] tables of the report."""
    head = ["run", "level", "TTFT p50 ms", "TTFT p95 ms", "TPOT p50 ms", "out tok/s", "tok/s/GPU",
            "max conc. at SLO", "peak VRAM/GPU GiB", "ok/sent"]
    rows = []
    for run in runs:
        lv = _best(run)
        rows.append([run["name"], lv["load"]["label"], _f(_g(lv.get("ttft_ms"), "p50")), _f(_g(lv.get("ttft_ms"), "p95")),
                     _f(_g(lv.get("tpot_ms"), "p50"), "{:.2f}"), _f(lv.get("output_tps")),
                     _f(lv.get("output_tps_per_gpu")), str(run["top"].get("max_concurrency_at_slo", "–")),
                     _f(_peak_gib(lv), "{:.2f}"), f"{lv['requests']['successful']}/{lv['requests']['attempted']}"])
    sections = [("Headline (each run at its highest-throughput level)", head, rows)]
    lvl_rows = []
    base = {lv["load"]["label"]: lv for lv, _ in runs[0]["levels"]}
    for run in runs:
        for lv, _ in run["levels"]:
            b = base.get(lv["load"]["label"]) if run is not runs[0] else None
            lvl_rows.append([run["name"], lv["load"]["label"], _f(_g(lv.get("ttft_ms"), "p50")),
                             _f(_g(lv.get("ttft_ms"), "p95")), _f(_g(lv.get("tpot_ms"), "p50"), "{:.2f}"),
                             _f(lv.get("output_tps")), _f(lv.get("request_rate"), "{:.2f}"),
                             _f(lv.get("goodput"), "{:.2f}"),
                             _pct(_g(lv.get("ttft_ms"), "p50"), _g((b or {}).get("ttft_ms"), "p50")) if b else "",
                             _pct(_g(lv.get("tpot_ms"), "p50"), _g((b or {}).get("tpot_ms"), "p50")) if b else "",
                             _pct(lv.get("output_tps"), (b or {}).get("output_tps")) if b else ""])
    sections.append((f"All levels (Δ vs {runs[0]['name']} at the same level)",
                     ["run", "level", "TTFT p50", "TTFT p95", "TPOT p50", "tok/s", "req/s", "goodput req/s",
                      "Δ TTFT p50", "Δ TPOT p50", "Δ tok/s"], lvl_rows))
    st_rows = []
    for run in runs:
        lv = _best(run)
        for st in lv.get("stages") or []:
            st_rows.append([run["name"], lv["load"]["label"], st["model"], str(st["requests"]), _f(st["queue_ms"], "{:.2f}"),
                            _f(st["compute_ms"], "{:.2f}"), str(st.get("responses") or "–"),
                            _f(st.get("response_ms"), "{:.3f}")])
    if st_rows:
        sections.append(("Per-stage time (Triton statistics API, mean per request)",
                         ["run", "level", "model", "requests", "queue ms", "compute ms", "responses", "ms/response"],
                         st_rows))
    sections += _stage_latency_section(runs)
    fact_rows = []
    for run in runs:
        f = _facts(run)
        fact_rows.append([run["name"], f["transport"] or "", f["model"] or "", f["gpu"], str(f["precision"]),
                          f["server"].strip(), f["dataset"] or "",
                          "; ".join(f"{k}={v}" for k, v in f["settings"].items()) or "–"])
    sections.append(("Runs (read from run.json)", ["run", "transport", "model", "GPU", "precision", "server",
                                                   "dataset", "server settings"], fact_rows))
    return sections


def _stage_latency_section(runs: list[dict]) -> list:
    """Per-stage latency of image runs: P50 / P95 per request, or the level's server mean (marked)."""
    from glmtrt.client.server_side import SERVER_STAGES

    keys = (*SERVER_STAGES, "first_token", "full_answer")
    rows = []
    for run in runs:
        for lv, _ in run["levels"]:
            st = lv.get("stage_latency")
            if not st or not lv.get("images_per_request"):
                continue
            cells = []
            for k in keys:
                s = st.get(k)
                if not s:
                    cells.append("–")
                elif "p50" in s:
                    cells.append(f"{s['p50']:.1f} / {s['p95']:.1f}")
                else:
                    cells.append(f"mean {s['mean']:.1f}")
            rows.append([run["name"], lv["load"]["label"], str(lv["images_per_request"]),
                         "per request" if st["per_request"] else "server mean", *cells])
    if not rows:
        return []
    return [("Per-stage latency with images, ms (P50 / P95 per request; 'mean' = the level's mean from "
             "Triton statistics)", ["run", "level", "images", "server stages", "upload/decode", "preprocessing",
                                    "vision encoder", "first token", "full answer"], rows)]


def _plots(run: dict) -> list[Path]:
    p = run["path"]
    names = ["ttft_vs_load.png", "tpot_vs_load.png", "throughput_vs_load.png"]
    lv = _best(run)["load"]["label"]
    return [p / n for n in names if (p / n).is_file()] + sorted((p / lv).glob("*.png"))


def _md_table(head, rows) -> str:
    esc = [[c.replace("|", "\\|") for c in r] for r in rows]
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in esc])


def render_markdown(runs: Sequence[dict], out: Path) -> str:
    parts = ["# glmtrt benchmark report", "",
             f"Runs: {', '.join(r['name'] for r in runs)}. Metric definitions: docs/BENCHMARKS.md.", ""]
    for title, head, rows in build_sections(runs):
        parts += [f"## {title}", "", _md_table(head, rows), ""]
    parts += ["## Plots", ""]
    for run in runs:
        parts.append(f"### {run['name']}")
        for png in _plots(run):
            rel = os.path.relpath(png, out.parent)
            parts.append(f"![{run['name']} {png.stem}]({rel})")
        parts.append("")
    for run in runs:
        for lv, _ in run["levels"]:
            for w in lv.get("warnings") or []:
                parts.append(f"- warning ({run['name']} {lv['load']['label']}): {w}")
            if lv.get("aborted") or lv.get("interrupted"):
                parts.append(f"- {run['name']} {lv['load']['label']}: partial ({lv.get('aborted') or 'interrupted'})")
    return "\n".join(parts).rstrip() + "\n"


def render_html(runs: Sequence[dict]) -> str:
    """One file, plots embedded as data: URIs."""
    e = html.escape
    parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'><title>glmtrt benchmark report</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#eee}"
             "td:first-child{text-align:left}img{max-width:48%;margin:4px}</style></head><body>",
             "<h1>glmtrt benchmark report</h1>", f"<p>Runs: {e(', '.join(r['name'] for r in runs))}</p>"]
    for title, head, rows in build_sections(runs):
        parts.append(f"<h2>{e(title)}</h2><table><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows]
        parts.append("</table>")
    parts.append("<h2>Plots</h2>")
    for run in runs:
        parts.append(f"<h3>{e(run['name'])}</h3>")
        for png in _plots(run):
            data = base64.b64encode(png.read_bytes()).decode("ascii")
            parts.append(f"<img alt='{e(run['name'] + ' ' + png.stem)}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(paths: Sequence[str | Path], out: str | Path, html_out: str | Path | None = None) -> tuple[Path, Path]:
    """Write the Markdown report to `out` and the HTML next to it (or to `html_out`)."""
    from glmtrt.client.bench import write_atomic

    runs = [load_run(Path(p)) for p in paths]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    html_path = Path(html_out) if html_out else out.with_suffix(".html")
    write_atomic(out, render_markdown(runs, out))
    write_atomic(html_path, render_html(runs))
    return out, html_path
