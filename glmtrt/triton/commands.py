"""Click commands of the triton stage (thin: validate, log settings, call the library)."""
from __future__ import annotations

import json
import logging
import shlex
from pathlib import Path

import click

from glmtrt.cli_types import FRACTION, NON_NEGATIVE_INT32, POSITIVE_INT32

from glmtrt.errors import GlmtrtError

log = logging.getLogger(__name__)


@click.command("repo")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--check", "check_only", is_flag=True,
              help="Validate the repository SOURCE (configs, ensemble wiring, manifests) instead of generating.")
@click.option("--engine-dir", type=click.Path(path_type=Path),
              help="With --check: local copy of the engine when gpt_model_path is the path inside the container.")
@click.option("--print-launch", is_flag=True, help="Print the launch command of the repository SOURCE and exit.")
@click.option("--tokenizer", type=click.Path(path_type=Path), help="Tokenizer dir (tokenizer.model [+ configs]).")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Repository dir to write.")
@click.option("--engine", type=click.Choice(["gpu", "reference"]), default="gpu", show_default=True,
              help="gpu: SOURCE is a glmtrt build engine dir. reference: SOURCE is a TRT-LLM checkpoint dir and "
                   "tensorrt_llm is the CPU stand-in (development/CI/demo only, NOT for production).")
@click.option("--max-batch-size", type=POSITIVE_INT32, help="Default: the engine's max_batch_size (may only be lower).")
@click.option("--decoupled/--no-decoupled", default=True, show_default=True, help="Streaming (decoupled) mode.")
@click.option("--max-queue-delay-us", type=NON_NEGATIVE_INT32, default=0, show_default=True)
@click.option("--max-queue-size", type=NON_NEGATIVE_INT32, default=0, show_default=True, help="0: unlimited.")
@click.option("--batch-scheduler-policy", type=click.Choice(["guaranteed_no_evict", "max_utilization"]),
              default="guaranteed_no_evict", show_default=True)
@click.option("--kv-cache-free-gpu-mem-fraction", type=FRACTION,
              help="Default: the engine manifest's plan (memory planner), else 0.9.")
@click.option("--chunked-context/--no-chunked-context", default=None,
              help="Default: on when the engine has paged context FMHA.")
@click.option("--kv-cache-reuse/--no-kv-cache-reuse", default=None,
              help="Default: on when the engine has paged context FMHA.")
@click.option("--include-input/--exclude-input", "include_input", default=False, show_default=True,
              help="Whether outputs repeat the prompt (exclude_input_in_output).")
@click.option("--python-instances", type=click.IntRange(1, 256), help="Instances of preprocessing/postprocessing.")
@click.option("--bls-instances", type=click.IntRange(1, 4096), help="Instances of tensorrt_llm_bls (default: max batch size).")
@click.option("--engine-path", help="Engine dir as the server sees it (e.g. /engines/x in the container).")
@click.option("--guided-decoding", type=click.Choice(["xgrammar"]), default=None,
              help="JSON / regex / grammar-constrained output (TensorRT-LLM 1.2 engines): writes the xgrammar "
                   "tokenizer info and the guided_decoding_* inputs. Default: off (written as the explicit unset).")
@click.option("--repo-path", help="Repository dir as the server sees it (absolute; default: -o). Used for "
                                  "xgrammar_tokenizer_info_path, which the backend opens as given.")
@click.option("--copy-checkpoint", is_flag=True, help="reference: copy the checkpoint into the repository.")
@click.option("--max-input-len", type=POSITIVE_INT32, help="reference: input limit of the CPU stand-in.")
@click.option("--max-seq-len", type=POSITIVE_INT32, help="reference: sequence limit of the CPU stand-in.")
@click.option("--pace-ttft-ms", type=float, default=0.0, show_default=True,
              help="reference: pacing mode, first token this many ms after the request arrives (0: as computed).")
@click.option("--pace-itl-ms", type=float, default=0.0, show_default=True,
              help="reference: pacing mode, then one token every this many ms (a schedule, not a sleep per token).")
@click.option("--max-images", type=click.IntRange(1, 64), default=None,
              help="GLM-4.1V sources: images per request (default: the vision engine's max_images; 1 on CPU).")
@click.option("--max-pixels", type=click.IntRange(1568, 100_000_000), default=None,
              help="GLM-4.1V sources: pixel budget per image; larger images are resized (default 5000000).")
@click.option("--min-pixels", type=click.IntRange(1, 100_000_000), default=None,
              help="GLM-4.1V sources: smaller images are enlarged to this (default 12544).")
@click.option("--force", is_flag=True, help="Replace an existing output dir.")
def repo_command(source: Path, check_only: bool, engine_dir: Path | None, print_launch: bool, tokenizer: Path | None,
                 output: Path | None, engine: str, max_batch_size: int | None, decoupled: bool, max_queue_delay_us: int,
                 max_queue_size: int, batch_scheduler_policy: str, kv_cache_free_gpu_mem_fraction: float | None,
                 chunked_context: bool | None, kv_cache_reuse: bool | None, include_input: bool,
                 python_instances: int | None, bls_instances: int | None, engine_path: str | None,
                 guided_decoding: str | None, repo_path: str | None,
                 copy_checkpoint: bool, max_input_len: int | None, max_seq_len: int | None, pace_ttft_ms: float,
                 pace_itl_ms: float, max_images: int | None, max_pixels: int | None, min_pixels: int | None,
                 force: bool) -> None:
    """Generate a Triton inflight-batching model repository from SOURCE (or --check one).

    \b
      glmtrt repo engines/chatglm3-int8wo-t4 --tokenizer ~/models/chatglm3-6b -o triton_models/chatglm3
      glmtrt repo --check triton_models/chatglm3
      glmtrt repo convert/tiny --engine reference --tokenizer DIR -o triton_models/tiny-cpu
    """
    from glmtrt.triton.check import check_or_raise

    if check_only:
        check_or_raise(source, engine_dir=engine_dir)
        n = len([d for d in Path(source).iterdir() if (d / "config.pbtxt").is_file()])
        click.echo(f"{source}: OK ({n} models, configs parse, ensemble wiring and manifests consistent)")
        return
    if print_launch:
        click.echo(shlex.join(launch_argv(source)))
        return
    if tokenizer is None or output is None:
        raise GlmtrtError("generating a repository needs --tokenizer and -o/--output",
                          fix="glmtrt repo ENGINE_DIR --tokenizer TOKENIZER_DIR -o OUTPUT_DIR (or --check REPO)")
    from glmtrt.triton.generator import PACE_MAX_MS, RepoOptions, generate_repository, options_dict

    for flag, value in (("--pace-ttft-ms", pace_ttft_ms), ("--pace-itl-ms", pace_itl_ms)):
        if not 0 <= value <= PACE_MAX_MS:
            raise GlmtrtError(f"{flag} {value:g}", expected=f"0 <= {flag} <= {PACE_MAX_MS:g}")
        if value and engine != "reference":
            raise GlmtrtError(f"{flag} with --engine {engine}", expected="pacing is a mode of --engine reference only")

    opts = RepoOptions(
        source=source, tokenizer=tokenizer, output=output, engine=engine, max_batch_size=max_batch_size,
        decoupled=decoupled, max_queue_delay_microseconds=max_queue_delay_us, max_queue_size=max_queue_size,
        batch_scheduler_policy=batch_scheduler_policy, kv_cache_free_gpu_mem_fraction=kv_cache_free_gpu_mem_fraction,
        enable_chunked_context=chunked_context, enable_kv_cache_reuse=kv_cache_reuse,
        exclude_input_in_output=not include_input, python_instances=python_instances, bls_instances=bls_instances,
        engine_path=engine_path, copy_checkpoint=copy_checkpoint, max_input_len=max_input_len,
        max_seq_len=max_seq_len, guided_decoding=guided_decoding, repo_path=repo_path,
        pace_ttft_ms=pace_ttft_ms, pace_itl_ms=pace_itl_ms, max_images=max_images, max_pixels=max_pixels,
        min_pixels=min_pixels, force=force)
    log.info("repo options: %s", json.dumps(options_dict(opts), ensure_ascii=False))
    out = generate_repository(opts)
    click.echo(f"wrote {out} (validated)")
    if engine == "gpu":
        click.echo(f"launch (in the Triton TensorRT-LLM container): {out}/launch_triton.sh")


def launch_argv(repo: Path) -> list[str]:
    """Launch command of an existing repository (world size from its glmtrt_repo.json)."""
    from glmtrt.triton.generator import REPO_MANIFEST, read_json
    from glmtrt.triton.launch import launch_command

    man = read_json(Path(repo) / REPO_MANIFEST, "repository manifest")
    engine = man.get("engine") or {}
    if engine.get("kind") == "reference":
        raise GlmtrtError(f"{repo} is a CPU stand-in repository", fix="start it with glmtrt serve (single rank)")
    return launch_command(str(Path(repo).resolve()), int(engine.get("world_size") or 1))


def register(group: click.Group) -> None:
    """Add this stage's commands to the top-level group."""
    group.add_command(repo_command)
