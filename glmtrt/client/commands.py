"""Click commands of the client stage: `glmtrt chat URL`, `glmtrt generate URL PROMPT` (and bench / report / eval
from bench_commands.py).

Thin: options -> `glmtrt.client.stream.stream_generate`; text is written as it streams
(UTF-8, complete characters only: the server never splits a character).
"""
from __future__ import annotations

import logging
import sys

import click

log = logging.getLogger(__name__)


def _sampling_options(f):
    for opt in reversed([
        click.option("--model", default="ensemble", show_default=True, help="ensemble | tensorrt_llm_bls"),
        click.option("--max-tokens", type=click.IntRange(min=1), default=256, show_default=True),
        click.option("--temperature", type=click.FloatRange(min=0.0), default=None, help="0 = greedy"),
        click.option("--top-k", type=click.IntRange(min=0), default=None),
        click.option("--top-p", type=click.FloatRange(min=0.0, max=1.0, min_open=True), default=None),
        click.option("--seed", type=int, default=None),
        click.option("--stop", "stop_words", multiple=True, help="Extra stop word (repeatable)."),
        click.option("--timeout", type=float, default=300.0, show_default=True, help="Seconds per response."),
    ]):
        f = opt(f)
    return f


def _echo_stream(pieces) -> str:
    out = []
    for piece in pieces:
        out.append(piece)
        click.echo(piece, nl=False)
        sys.stdout.flush()
    click.echo()
    return "".join(out)


def register(group: click.Group) -> None:
    """Add this stage's commands to the top-level group."""

    @group.command("generate")
    @click.argument("url")
    @click.argument("prompt")
    @click.option("--raw", is_flag=True, help="Send PROMPT as plain text (no chat template).")
    @_sampling_options
    def generate_cmd(url, prompt, raw, model, max_tokens, temperature, top_k, top_p, seed, stop_words, timeout):
        """Stream one answer to PROMPT from the Triton gRPC server at URL (host:port)."""
        from glmtrt.client.stream import stream_generate

        log.info("generate: %s model=%s max_tokens=%d chat=%s", url, model, max_tokens, not raw)
        _echo_stream(stream_generate(url, prompt, model=model, max_tokens=max_tokens, chat=not raw,
                                     temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                                     stop_words=list(stop_words) or None, timeout=timeout))

    @group.command("chat")
    @click.argument("url")
    @click.option("--system", default=None, help="System prompt.")
    @_sampling_options
    def chat_cmd(url, system, model, max_tokens, temperature, top_k, top_p, seed, stop_words, timeout):
        """Interactive streaming chat with the Triton gRPC server at URL (host:port); empty line or Ctrl-D ends."""
        from glmtrt.client.stream import stream_generate

        history = [{"role": "system", "content": system}] if system else []
        click.echo(f"chat with {url} ({model}); empty line or Ctrl-D to quit")
        while True:
            try:
                text = click.prompt("你/you", default="", show_default=False, prompt_suffix="> ")
            except (EOFError, click.Abort):
                break
            if not text.strip():
                break
            answer = _echo_stream(stream_generate(url, text, model=model, max_tokens=max_tokens, history=history,
                                                  temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                                                  stop_words=list(stop_words) or None, timeout=timeout))
            history += [{"role": "user", "content": text}, {"role": "assistant", "content": answer}]

    from glmtrt.client.bench_commands import register as register_bench

    register_bench(group)
