"""Click commands `glmtrt bench`, `glmtrt report`, `glmtrt eval` (registered by client/commands.py).

Thin: validate at the boundary, print the resolved settings, call glmtrt.client.bench / report / evaluate.
"""
from __future__ import annotations

import asyncio
import logging
import signal
import sys

import click

from glmtrt.errors import GlmtrtError

log = logging.getLogger(__name__)


def _csv_numbers(kind, text: str | None, what: str):
    if not text:
        return []
    try:
        vals = [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected comma-separated {kind.__name__}s, e.g. 1,4,16") from None
    if not vals or any(v <= 0 for v in vals):
        raise click.BadParameter(f"{text!r}: every {what} must be > 0")
    return vals


def load_tokenizer_for(tokenizer: str | None, repo: str | None):
    """Our tokenizer from --tokenizer, else from --repo's tokenizer folder, else None (counts chunks)."""
    from pathlib import Path

    from glmtrt.tokenizer import load_tokenizer

    if tokenizer:
        return load_tokenizer(tokenizer)
    if repo:
        from glmtrt.fileio import read_json_object

        m = read_json_object(Path(repo) / "glmtrt_repo.json", "repository manifest", missing_ok=True) or {}
        d = (m.get("tokenizer") or {}).get("dir")
        if d and (Path(repo) / d).is_dir():
            return load_tokenizer(Path(repo) / d)
    return None


def run_with_signals(coro_fn):
    """asyncio.run(coro_fn(stop)) where Ctrl-C / SIGTERM set `stop` instead of raising."""

    async def main():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - non-main thread / Windows
                pass
        return await coro_fn(stop)

    return asyncio.run(main())


def _sampling(temperature, top_p, top_k, seed, stop_words, ignore_eos, api):
    s = {"temperature": temperature, "top_p": top_p, "top_k": top_k, "seed": seed,
         "stop": list(stop_words) or None}
    if ignore_eos and api != "triton":
        s["ignore_eos"] = True
    return {k: v for k, v in s.items() if v is not None}


def register(group: click.Group) -> None:
    """Add bench / report / eval to the top-level group."""

    @group.command("bench")
    @click.argument("url")
    @click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Output folder.")
    @click.option("--api", type=click.Choice(["triton", "openai", "openai-chat", "openai-completions"]),
                  default="triton", show_default=True, help="triton = gRPC streaming; openai = /v1/chat/completions.")
    @click.option("--model", default="ensemble", show_default=True, help="ensemble | tensorrt_llm_bls | OpenAI model name")
    @click.option("--concurrency", default=None, help="Comma-separated concurrency levels, e.g. 1,4,16,64.")
    @click.option("--request-rate", default=None, help="Comma-separated request rates (req/s), e.g. 2,8.")
    @click.option("--arrival", type=click.Choice(["constant", "poisson", "gamma"]), default="poisson", show_default=True)
    @click.option("--burstiness", type=click.FloatRange(min=0.01), default=1.0, show_default=True,
                  help="Gamma shape for --arrival gamma (1 = Poisson, < 1 burstier).")
    @click.option("--max-concurrency", type=click.IntRange(min=1), default=None, help="Cap in rate mode.")
    @click.option("--num-requests", type=click.IntRange(min=1), default=None,
                  help="Conversations per level (default: the dataset size; 100 for synthetic).")
    @click.option("--duration", type=click.FloatRange(min=0.1), default=None, help="Seconds per level instead.")
    @click.option("--ramp-up", type=click.FloatRange(min=0), default=0.0, show_default=True,
                  help="Seconds over which the concurrency workers start.")
    @click.option("--warmup", type=click.IntRange(min=0), default=2, show_default=True, help="Unrecorded requests first.")
    @click.option("--seed", type=int, default=0, show_default=True, help="Dataset sampling and arrivals.")
    @click.option("--dataset", default="builtin-zh-en", show_default=True,
                  help="builtin-zh-en | builtin-multiturn | synthetic | a ShareGPT .json/.jsonl file")
    @click.option("--multi-turn", is_flag=True, help="ShareGPT: send every human turn with the answers so far.")
    @click.option("--input-tokens", type=click.IntRange(min=1), default=128, show_default=True, help="synthetic")
    @click.option("--input-tokens-stddev", type=click.FloatRange(min=0), default=0.0, show_default=True)
    @click.option("--output-tokens", type=click.IntRange(min=1), default=128, show_default=True, help="synthetic")
    @click.option("--output-tokens-stddev", type=click.FloatRange(min=0), default=0.0, show_default=True)
    @click.option("--max-tokens", type=click.IntRange(min=1), default=None, help="Per request (not synthetic).")
    @click.option("--temperature", type=click.FloatRange(min=0.0), default=None, help="0 = greedy")
    @click.option("--top-p", type=click.FloatRange(min=0.0, max=1.0, min_open=True), default=None)
    @click.option("--top-k", type=click.IntRange(min=0), default=None)
    @click.option("--stop", "stop_words", multiple=True)
    @click.option("--ignore-eos", is_flag=True, help="OpenAI servers that support it (vLLM/SGLang).")
    @click.option("--slo-ttft-ms", type=click.FloatRange(min=0, min_open=True), default=None)
    @click.option("--slo-tpot-ms", type=click.FloatRange(min=0, min_open=True), default=None)
    @click.option("--max-concurrency-search", "search", is_flag=True,
                  help="Find the highest concurrency whose TTFT p95 (and TPOT p95) meet the SLOs.")
    @click.option("--search-max", type=click.IntRange(min=1, max=4096), default=256, show_default=True)
    @click.option("--metrics-url", default=None, help="Prometheus endpoint (default: gRPC port + 1); '' = off.")
    @click.option("--metrics-interval", type=click.FloatRange(min=0.05), default=1.0, show_default=True)
    @click.option("--repo", type=click.Path(exists=True, file_okay=False), default=None,
                  help="Local repository (engine precision, tokenizer, settings for the report).")
    @click.option("--tokenizer", type=click.Path(exists=True, file_okay=False), default=None,
                  help="Tokenizer dir to count tokens (default: --repo's).")
    @click.option("--gpus", type=click.IntRange(min=1), default=None, help="GPUs serving (default: from metrics).")
    @click.option("--timeout", type=click.FloatRange(min=0.1), default=300.0, show_default=True,
                  help="Seconds without a response before a request fails.")
    @click.option("--no-progress", is_flag=True)
    @click.option("--image", "images", type=click.Path(dir_okay=False), multiple=True,
                  help="PNG / JPEG sent with every request (repeatable; the multimodal AutoGLM repository).")
    @click.option("--per-request-stages/--no-per-request-stages", default=None,
                  help="Triton statistics around each request at concurrency 1 (default: on with --image).")
    def bench_cmd(url, out, api, model, concurrency, request_rate, arrival, burstiness, max_concurrency, num_requests,
                  duration, ramp_up, warmup, seed, dataset, multi_turn, input_tokens, input_tokens_stddev, output_tokens,
                  output_tokens_stddev, max_tokens, temperature, top_p, top_k, stop_words, ignore_eos, slo_ttft_ms,
                  slo_tpot_ms, search, search_max, metrics_url, metrics_interval, repo, tokenizer, gpus, timeout,
                  no_progress, images, per_request_stages):
        """Benchmark the server at URL (Triton gRPC host:port, or an OpenAI /v1 base URL with --api openai)."""
        from glmtrt.client.bench import BenchOptions, run_bench
        from glmtrt.client.datasets import load_dataset
        from glmtrt.client.load import LoadSpec

        from glmtrt.client.images import read_images

        api = "openai-chat" if api == "openai" else api
        files = read_images(images)
        if files and api == "openai-completions":
            raise click.BadParameter("--image needs a chat API (--api triton or openai-chat)")
        concs = _csv_numbers(int, concurrency, "concurrency")
        rates = _csv_numbers(float, request_rate, "request rate")
        if concs and rates:
            raise click.BadParameter("give --concurrency or --request-rate, not both")
        if search and (slo_ttft_ms is None and slo_tpot_ms is None):
            raise click.BadParameter("--max-concurrency-search needs --slo-ttft-ms and/or --slo-tpot-ms")
        if num_requests and duration:
            raise click.BadParameter("give --num-requests or --duration, not both")
        tok = load_tokenizer_for(tokenizer, repo)
        items = load_dataset(dataset, tok=tok, count=num_requests if dataset == "synthetic" else None,
                             max_tokens=max_tokens, input_tokens=input_tokens, output_tokens=output_tokens,
                             input_std=input_tokens_stddev, output_std=output_tokens_stddev,
                             multi_turn=multi_turn, seed=seed)
        n = num_requests or (None if duration else len(items))
        common = dict(num_requests=n, duration=duration, ramp_up=ramp_up, warmup=warmup, seed=seed, arrival=arrival,
                      burstiness=burstiness, max_concurrency=max_concurrency)
        levels = ([LoadSpec(rate=r, **common) for r in rates] if rates else
                  [LoadSpec(concurrency=c, **common) for c in (concs or [1])])
        opts = BenchOptions(url=url, out=out, api=api, model=model, levels=levels, dataset=dataset,
                            sampling=_sampling(temperature, top_p, top_k, None, stop_words, ignore_eos, api),
                            slo_ttft_ms=slo_ttft_ms, slo_tpot_ms=slo_tpot_ms, search=search, search_max=search_max,
                            metrics_url=metrics_url, metrics_interval=metrics_interval, repo=repo,
                            tokenizer=tokenizer, request_timeout=timeout, gpus=gpus, progress=not no_progress,
                            command=list(sys.argv), images=[str(p) for p in images],
                            per_request_stages=per_request_stages)
        click.echo(f"bench {url} api={api} model={model} dataset={dataset} ({len(items)} items) "
                   f"levels={','.join(lv.label for lv in levels) if not search else 'search'} "
                   f"requests/level={n or f'{duration}s'} warmup={warmup} tokens counted by "
                   f"{'tokenizer ' + tok.name if tok else 'chunks (no --tokenizer)'} "
                   f"images/request={len(files)}{' (' + ', '.join(f'{f.format} {f.size[0]}x{f.size[1]}' for f in files) + ')' if files else ''} "
                   f"-> {out}", err=True)
        top = run_with_signals(lambda stop: run_bench(opts, items, tok, stop))
        _print_levels(top)
        aborted = [lv["aborted"] for lv in top["levels"] if lv.get("aborted")]
        if aborted:
            raise GlmtrtError(f"run ended early: {aborted[0]}; partial results in {out}")
        if top["interrupted"]:
            click.echo(f"interrupted: partial results in {out}", err=True)
            sys.exit(130)

    from glmtrt.client.report_commands import register as register_report

    register_report(group)


def _print_levels(top: dict) -> None:
    click.echo("level  ok/sent  TTFT p50/p95 ms  TPOT p50 ms  out tok/s")
    for lv in top["levels"]:
        t, p = lv.get("ttft_ms") or {}, lv.get("tpot_ms") or {}
        click.echo(f"{lv['load']['label']:>6} {lv['requests']['successful']:>4}/{lv['requests']['attempted']:<4} "
                   f"{t.get('p50', float('nan')):8.1f}/{t.get('p95', float('nan')):<8.1f} "
                   f"{p.get('p50', float('nan')):10.2f} {lv['output_tps']:10.1f}")
        for w in lv.get("warnings") or []:
            click.echo(f"  warning: {w}", err=True)
    for lv in top["levels"]:
        st = lv.get("stage_latency")
        if st and lv.get("images_per_request"):
            from glmtrt.client.server_side import format_stage_latency

            how = "per request" if st["per_request"] else "server stages: mean of the level"
            click.echo(f"per-stage latency, {lv['load']['label']} ({lv['images_per_request']} image(s)/request; {how}), ms:")
            for line in format_stage_latency(st):
                click.echo(line)
    if "max_concurrency_at_slo" in top:
        click.echo(f"max concurrency at SLO: {top['max_concurrency_at_slo']}")
