"""Click commands `glmtrt report` and `glmtrt eval` (registered through bench_commands.py)."""
from __future__ import annotations

import json
import sys

import click


def register(group: click.Group) -> None:
    """Add report / eval to the top-level group."""

    @group.command("report")
    @click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
    @click.option("-o", "--out", "out", default="report.md", show_default=True, type=click.Path(dir_okay=False),
                  help="Markdown file; the self-contained HTML goes next to it (.html).")
    @click.option("--html", "html_out", default=None, type=click.Path(dir_okay=False), help="HTML file path.")
    def report_cmd(runs, out, html_out):
        """Compare `glmtrt bench` folders RUNS (the first is the baseline for deltas) in one report."""
        from glmtrt.client.report import write_report

        md, html = write_report(runs, out, html_out)
        click.echo(f"wrote {md} and {html} ({len(runs)} runs)")

    @group.command("eval")
    @click.argument("url")
    @click.option("--out", required=True, type=click.Path(file_okay=False))
    @click.option("--baseline", type=click.Path(exists=True, file_okay=False), default=None,
                  help="A glmtrt eval or bench folder to compare with (greedy, same prompts).")
    @click.option("--api", type=click.Choice(["triton", "openai", "openai-chat", "openai-completions"]),
                  default="triton", show_default=True)
    @click.option("--model", default="ensemble", show_default=True)
    @click.option("--dataset", default="builtin-zh-en", show_default=True)
    @click.option("--max-tokens", type=click.IntRange(min=1), default=128, show_default=True)
    @click.option("--concurrency", type=click.IntRange(min=1, max=512), default=8, show_default=True)
    @click.option("--max-divergence", type=click.FloatRange(min=0.0, max=1.0), default=None,
                  help="Fail (exit 1) when more than this share of prompts differ from the baseline.")
    @click.option("--repo", type=click.Path(exists=True, file_okay=False), default=None)
    @click.option("--tokenizer", type=click.Path(exists=True, file_okay=False), default=None)
    @click.option("--no-log-probs", is_flag=True, help="Do not ask for log-probs.")
    @click.option("--timeout", type=click.FloatRange(min=0.1), default=300.0, show_default=True)
    def eval_cmd(url, out, baseline, api, model, dataset, max_tokens, concurrency, max_divergence, repo, tokenizer,
                 no_log_probs, timeout):
        """Answer a fixed prompt set greedily at URL and compare with --baseline (exact match, first
        divergence, ROUGE-L, top-1 agreement, log-prob / KL where returned)."""
        from pathlib import Path

        from glmtrt.client.bench import BenchOptions, make_client, versions, write_atomic
        from glmtrt.client.bench_commands import load_tokenizer_for, run_with_signals
        from glmtrt.client.datasets import load_dataset
        from glmtrt.client.evaluate import evaluate, load_records
        from glmtrt.client.load import LoadSpec, Runner
        from glmtrt.errors import GlmtrtError

        api = "openai-chat" if api == "openai" else api
        if max_divergence is not None and baseline is None:
            raise click.BadParameter("--max-divergence needs --baseline")
        tok = load_tokenizer_for(tokenizer, repo)
        items = load_dataset(dataset, tok=tok, max_tokens=max_tokens)
        opts = BenchOptions(url=url, out=out, api=api, model=model, dataset=dataset, request_timeout=timeout)
        sampling = {"temperature": 0.0, "return_log_probs": not no_log_probs}
        click.echo(f"eval {url} api={api} model={model} dataset={dataset} ({len(items)} prompts) greedy "
                   f"max_tokens={max_tokens} baseline={baseline or '-'} -> {out}", err=True)

        async def run(stop):
            client = make_client(opts)
            try:
                if not await client.ready():
                    raise GlmtrtError(f"{url} ({api}, model {model}) is not ready")
                runner = Runner(client, sampling=sampling, tok=tok, stop=stop, request_timeout=timeout)
                await runner.run(items, LoadSpec(concurrency=concurrency, num_requests=len(items)))
                return runner
            finally:
                await client.close()

        runner = run_with_signals(run)
        dest = Path(out)
        dest.mkdir(parents=True, exist_ok=True)
        write_atomic(dest / "requests.jsonl", "".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n"
                                                      for r in runner.records))
        write_atomic(dest / "run.json", json.dumps({"command": sys.argv, "url": url, "transport": api, "model": model,
                                                    "dataset": dataset, "max_tokens": max_tokens, "sampling": sampling,
                                                    "versions": versions(), "baseline": baseline}, indent=2) + "\n")
        failed = sum(1 for r in runner.records if not r.ok)
        click.echo(f"{len(runner.records) - failed}/{len(runner.records)} answers written to {dest / 'requests.jsonl'}")
        if runner.aborted:
            raise GlmtrtError(f"eval ended early: {runner.aborted}")
        if baseline is None:
            return
        result = evaluate(load_records(Path(baseline)), runner.records, tok, max_divergence)
        write_atomic(dest / "eval.json", json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        s = result["summary"]
        fd = s["first_divergence"]
        click.echo(f"exact match {s['exact_match_rate']:.1%} of {s['prompts']} prompts; first divergence "
                   f"median {fd['p50']:.0f} {s['unit']}s" if fd else
                   f"exact match {s['exact_match_rate']:.1%} of {s['prompts']} prompts")
        click.echo(f"ROUGE-L mean {s['rouge_l']['mean']:.3f}; top-1 agreement mean {s['top1_agreement']['mean']:.3f}"
                   + (f"; |Δ log p| mean {s['logprob_abs_diff']['mean']:.4f}" if s["logprob_abs_diff"] else "")
                   + (f"; KL mean {s['kl']['mean']:.4f}" if s["kl"] else ""))
        if s["passed"] is False:
            click.echo(f"FAIL: {s['divergence_rate']:.1%} of prompts diverge > --max-divergence {max_divergence:.1%}",
                       err=True)
            sys.exit(1)
        if s["passed"]:
            click.echo(f"PASS: divergence {s['divergence_rate']:.1%} <= {max_divergence:.1%}")
