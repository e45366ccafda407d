"""Click commands of the client stage: `glmtrt chat URL`, `glmtrt generate URL PROMPT` (and bench / report / eval
from bench_commands.py).

Thin: options -> `glmtrt.client.stream.stream_generate`; text is written as it streams
(UTF-8, complete characters only: the server never splits a character).
"""
from __future__ import annotations

import logging
import sys

import click

from glmtrt.cli_types import NON_NEGATIVE_FLOAT, NON_NEGATIVE_INT32, POSITIVE_INT32, POSITIVE_SECONDS, SEED, UTF8

log = logging.getLogger(__name__)


def _sampling_options(f):
    for opt in reversed([
        click.option("--model", default="ensemble", show_default=True, help="ensemble | tensorrt_llm_bls"),
        click.option("--max-tokens", type=POSITIVE_INT32, default=256, show_default=True),
        click.option("--temperature", type=NON_NEGATIVE_FLOAT, default=None, help="0 = greedy"),
        click.option("--top-k", type=NON_NEGATIVE_INT32, default=None),
        click.option("--top-p", type=click.FloatRange(min=0.0, max=1.0, min_open=True), default=None),
        click.option("--seed", type=SEED, default=None),
        click.option("--stop", "stop_words", type=UTF8, multiple=True,
                     help="Extra stop word (repeatable); matches wherever its text appears."),
        click.option("--timeout", type=POSITIVE_SECONDS, default=300.0, show_default=True, help="Seconds per response."),
        click.option("--image", "images", type=click.Path(dir_okay=False), multiple=True,
                     help="PNG / JPEG file sent with the prompt (repeatable; the multimodal AutoGLM / GLM-4.1V repository)."),
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


def _print_action(answer: str, image, save_annotated: str | None) -> None:
    """Print the parsed AutoGLM action (exit 1 when the answer is not a valid action) and draw it."""
    import json

    from glmtrt.client.autoglm import annotate, describe, parse

    parsed = parse(answer, image.size if image is not None else None)
    click.echo(describe(parsed))
    click.echo(json.dumps(parsed.to_dict(), ensure_ascii=False))
    if save_annotated:
        if annotate(image.data, parsed, save_annotated):
            click.echo(f"annotated screenshot: {save_annotated}")
        else:
            click.echo("(nothing to draw: the action has no screen point)", err=True)
    if not parsed.ok:
        raise SystemExit(1)


def register(group: click.Group) -> None:
    """Add this stage's commands to the top-level group."""

    @group.command("generate")
    @click.argument("url")
    @click.argument("prompt", type=UTF8)
    @click.option("--raw", is_flag=True, help="Send PROMPT as plain text (no chat template).")
    @click.option("--autoglm", is_flag=True,
                  help="Parse the answer as an AutoGLM action (<answer>do(...)</answer>); coordinates in pixels of the first --image.")
    @click.option("--save-annotated", type=click.Path(dir_okay=False), default=None,
                  help="With --autoglm: save the first --image with the tap point / swipe arrow drawn (PNG).")
    @_sampling_options
    def generate_cmd(url, prompt, raw, autoglm, save_annotated, model, max_tokens, temperature, top_k, top_p, seed,
                     stop_words, timeout, images):
        """Stream one answer to PROMPT from the Triton gRPC server at URL (host:port)."""
        from glmtrt.client.images import read_images
        from glmtrt.client.stream import stream_generate
        from glmtrt.errors import GlmtrtError

        if save_annotated and not (autoglm and images):
            raise GlmtrtError("--save-annotated needs --autoglm and an --image", expected="--autoglm --image shot.png")
        if raw and images:
            raise GlmtrtError("--raw sends PROMPT without the chat template, which is where images go",
                              expected="--image without --raw")
        files = read_images(images)
        log.info("generate: %s model=%s max_tokens=%d chat=%s images=%s", url, model, max_tokens, not raw,
                 ", ".join(f"{f.source} {f.format} {f.size[0]}x{f.size[1]}" for f in files) or "none")
        answer = _echo_stream(stream_generate(url, prompt, model=model, max_tokens=max_tokens, chat=not raw,
                                              temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                                              stop_words=list(stop_words) or None, timeout=timeout,
                                              images=[f.data for f in files] or None))
        if autoglm:
            _print_action(answer, files[0] if files else None, save_annotated)

    @group.command("chat")
    @click.argument("url")
    @click.option("--system", type=UTF8, default=None, help="System prompt.")
    @click.option("--max-turns", type=click.IntRange(1, 1000), default=20, show_default=True,
                  help="Turns kept at most, the new one included (older ones, and those over the input limit, are dropped).")
    @_sampling_options
    def chat_cmd(url, system, max_turns, model, max_tokens, temperature, top_k, top_p, seed, stop_words, timeout,
                 images):
        """Interactive streaming chat with the Triton gRPC server at URL (host:port).

        Keeps the newest turns that fit the model's input limit (at most --max-turns) and says when
        older ones are dropped; /reset clears the history; an empty line or Ctrl-D ends.
        --image attaches images to the first turn; `/image PATH` attaches one to the next turn.
        Images go with their turn only (history is sent as text, as Open-AutoGLM's agent does).
        """
        from glmtrt.client.history import trim_history
        from glmtrt.client.images import read_image, read_images
        from glmtrt.errors import GlmtrtError
        from glmtrt.client.remote import ServerTokenCounter
        from glmtrt.client.stream import stream_generate
        from glmtrt.cli_types import check_utf8

        pending = read_images(images)
        counter = ServerTokenCounter(url, timeout=timeout)
        start = [{"role": "system", "content": system}] if system else []
        history = list(start)
        click.echo(f"chat with {url} ({model}); /reset clears the history; empty line or Ctrl-D to quit")
        while True:
            try:
                text = click.prompt("你/you", default="", show_default=False, prompt_suffix="> ")
            except (EOFError, click.Abort):
                break
            if not text.strip():
                break
            if text.strip() == "/reset":
                history, pending = list(start), []
                click.echo("(history cleared)")
                continue
            if text.strip().startswith("/image"):
                try:
                    pending.append(read_image(text.strip()[len("/image"):].strip()))
                    f = pending[-1]
                    click.echo(f"(attached {f.source} {f.format} {f.size[0]}x{f.size[1]} to the next turn)")
                except GlmtrtError as exc:
                    click.echo(f"error: {exc}", err=True)
                continue
            check_utf8(text, "the message")
            convo = history + [{"role": "user", "content": text}]
            limit = counter.max_input_tokens()   # None: the server does not say; trim by turns only
            convo, dropped = trim_history(convo, count_tokens=counter.count if limit else (lambda m: 0),
                                          max_input_tokens=limit or 1, max_turns=max_turns)
            if dropped:
                why = f"the model's input limit of {limit} tokens or " if limit else ""
                click.echo(f"(dropped the {dropped} oldest turn(s) to stay within {why}{max_turns} turns)", err=True)
            answer = _echo_stream(stream_generate(url, text, model=model, max_tokens=max_tokens, history=convo[:-1],
                                                  temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                                                  stop_words=list(stop_words) or None, timeout=timeout,
                                                  images=[f.data for f in pending] or None))
            pending = []
            history = convo + [{"role": "assistant", "content": answer}]

    from glmtrt.client.bench_commands import register as register_bench

    register_bench(group)
