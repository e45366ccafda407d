"""`glmtrt demo`: the whole pipeline on an embedded tiny model, no GPU and no download.

tiny bilingual tokenizer + tiny random ChatGLM3-shaped checkpoint (HF THUDM layout)
  -> glmtrt convert (TensorRT-LLM 1.2.x checkpoint) -> glmtrt verify (vs transformers, if installed)
  -> glmtrt repo --engine reference (Triton inflight-batching repository, CPU stand-in engine)
  -> a real Triton server on CPU -> one answer streamed over gRPC and printed as it arrives.
The weights are random except for one scripted greedy answer, so the default prompt gets a
readable bilingual reply; other prompts get random text. Every stage runs for real.
"""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import click

log = logging.getLogger(__name__)

DEFAULT_PROMPT = "你好，请介绍一下你自己。"
# The tiny model's weights are random except for this scripted greedy chat answer (see
# glmtrt.models.chatglm.tiny.script_greedy_answer); its tiny tokenizer splits 微 and 经 into
# byte-fallback pieces, so the stream also shows the UTF-8-safe detokenizer at work.
SCRIPTED_ANSWER = "你好！我是微型GLM模型，经Triton流式输出。Hello!"


def run_demo(workdir: Path, prompt: str, max_tokens: int = 32, verify: bool = True,
             serve: bool = True, echo=click.echo, ui: bool = False, api_port: int = 8080,
             ui_port: int = 8501) -> dict:
    """Run every stage under `workdir`; returns what each stage produced."""
    from glmtrt.convert.pipeline import convert_checkpoint
    from glmtrt.models.chatglm.tiny import make_tiny_checkpoint
    from glmtrt.tokenizer.tiny import TINY_VOCAB_PADDED, make_tiny_chatglm3_tokenizer
    from glmtrt.triton.generator import RepoOptions, generate_repository

    workdir = Path(workdir)
    hf = workdir / "hf-tiny-chatglm3"
    result: dict = {}
    t0 = time.perf_counter()

    echo(f"[1/5] tiny ChatGLM3-shaped model -> {hf}")
    from glmtrt.tokenizer import load_tokenizer

    tok = load_tokenizer(make_tiny_chatglm3_tokenizer(hf))
    script = (tok.special_tokens["<|assistant|>"], tok.encode(SCRIPTED_ANSWER), tok.eos_id)
    make_tiny_checkpoint(hf, "chatglm", seed=0, vocab_size=TINY_VOCAB_PADDED, num_layers=2, hidden_size=64,
                         num_heads=4, num_kv_heads=2, head_size=16, intermediate_size=128, script=script)

    ckpt = workdir / "convert"
    echo(f"[2/5] glmtrt convert -> {ckpt}")
    convert_checkpoint(hf, ckpt, dtype="float16", force=True, progress=False)
    result["checkpoint"] = ckpt

    if verify:
        import importlib.util

        if importlib.util.find_spec("transformers") is None:
            echo("[3/5] glmtrt verify: skipped (transformers not installed: pip install 'glmtrt[verify]')")
        else:
            from glmtrt.reference.verify import verify_checkpoint

            report = verify_checkpoint(ckpt, hf)
            echo("[3/5] glmtrt verify (reference executor vs transformers GlmForCausalLM):")
            echo(report.format_table())
            result["verify_passed"] = report.passed
            if not report.passed:
                raise click.ClickException("verification failed")

    repo = workdir / "triton_repo"
    echo(f"[4/5] glmtrt repo --engine reference -> {repo}")
    generate_repository(RepoOptions(source=ckpt, tokenizer=hf, output=repo, engine="reference", force=True,
                                    max_batch_size=8))
    result["repository"] = repo

    if serve:
        from glmtrt.client.stream import stream_generate
        from glmtrt.triton.server import TritonServer

        echo("[5/5] real Triton server on CPU (127.0.0.1), streaming one answer over gRPC:")
        with TritonServer(repo) as server:
            echo(f"      server ready: grpc {server.grpc_url}, http {server.http_url}")
            echo(f"      user> {prompt}")
            sys.stdout.write("      assistant> ")
            pieces = []
            for delta in stream_generate(server.grpc_url, prompt, max_tokens=max_tokens, chat=True,
                                         temperature=0.0):
                pieces.append(delta)
                sys.stdout.write(delta)
                sys.stdout.flush()
            sys.stdout.write("\n")
            result["answer"] = "".join(pieces)
            echo("      (a tiny model with random weights and one scripted greedy answer, streamed token by token:\n"
                 "       tokenizer -> CPU engine stand-in -> UTF-8-safe detokenizer, through a real Triton)")
            if ui:
                _serve_fronts(server, api_port, ui_port, echo)
    echo(f"done in {time.perf_counter() - t0:.1f} s; outputs under {workdir}")
    return result


def _serve_fronts(server, api_port: int, ui_port: int, echo) -> None:
    """The OpenAI endpoint and the web chat over the demo's Triton, until Ctrl-C."""
    from glmtrt.ui.fronts import fronts

    with fronts(server.grpc_url, f"{server.host}:{server.metrics_port}", api_port=api_port,
                ui_port=ui_port) as urls:
        echo(f"      OpenAI API: {urls['api']}   (model \"glm\"; curl {urls['api']}/models)")
        echo(f"      web chat:   {urls['ui']}")
        echo("      Ctrl-C stops the page, the API and Triton")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            echo("      stopping")


@click.command("demo")
@click.option("--workdir", type=click.Path(path_type=Path), default=Path("build/demo"), show_default=True,
              help="Where the demo writes its model, checkpoint and repository.")
@click.option("--prompt", default=DEFAULT_PROMPT, show_default=True)
@click.option("--max-tokens", type=click.IntRange(1, 256), default=32, show_default=True)
@click.option("--no-verify", is_flag=True, help="Skip the transformers comparison.")
@click.option("--no-serve", is_flag=True, help="Stop after generating the repository.")
@click.option("--ui", is_flag=True, help="Then keep serving: OpenAI API + web chat on 127.0.0.1 (Ctrl-C stops).")
@click.option("--api-port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.option("--ui-port", type=click.IntRange(1, 65535), default=8501, show_default=True)
@click.pass_context
def demo_cmd(ctx: click.Context, workdir: Path, prompt: str, max_tokens: int, no_verify: bool,
             no_serve: bool, ui: bool, api_port: int, ui_port: int) -> None:
    """Run the whole pipeline on an embedded tiny model and a real Triton on CPU."""
    if not (ctx.obj or {}).get("verbose"):
        logging.getLogger("glmtrt").setLevel(logging.WARNING)   # the demo narrates; -v shows the logs
    if ui and no_serve:
        raise click.UsageError("--ui needs the server: drop --no-serve")
    run_demo(workdir, prompt, max_tokens, verify=not no_verify, serve=not no_serve, ui=ui,
             api_port=api_port, ui_port=ui_port)


def register(group: click.Group) -> None:
    """Add the demo command."""
    group.add_command(demo_cmd)
