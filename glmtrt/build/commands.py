"""Click commands of the build stage: `glmtrt plan` and `glmtrt build` (thin: validate, log, call)."""
from __future__ import annotations

import json
import logging
import shlex
from pathlib import Path

import click

from glmtrt.cli_types import FRACTION, NON_NEGATIVE_INT32, POSITIVE_INT32

log = logging.getLogger(__name__)

_PRECISIONS = ("fp16", "bf16", "fp32", "int8-wo", "int4-wo", "int8-sq", "fp8", "int4-awq")


def _workload_options(f):
    opts = [
        click.option("--max-batch-size", type=POSITIVE_INT32, default=8, show_default=True),
        click.option("--max-seq-len", type=POSITIVE_INT32, default=None, help="Default: min(8192, the model's context)."),
        click.option("--max-input-len", type=POSITIVE_INT32, default=None, help="Default: max_seq_len - 1."),
        click.option("--max-num-tokens", type=POSITIVE_INT32, default=None, help="Default: min(8192, batch x seq_len)."),
        click.option("--max-beam-width", type=POSITIVE_INT32, default=1, show_default=True),
        click.option("--kv-cache-free-gpu-mem-fraction", "kv_fraction", type=FRACTION, default=0.9,
                     show_default=True, help="Triton's kv_cache_free_gpu_mem_fraction."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _multimodal_options(f):
    opts = [
        click.option("--max-multimodal-len", type=NON_NEGATIVE_INT32, default=0,
                     help="Prompt-embedding table rows (vision tokens); GLM-4.1V default: --max-batch-size x "
                          "--max-images x the image tokens of --max-pixels (the runtime gives each request "
                          "table / max_batch_size rows)."),
        click.option("--max-pixels", type=click.IntRange(min=28 * 28 * 2), default=5_000_000, show_default=True,
                     help="GLM-4.1V: image pixel budget (t*h*w, t=2) of the vision engine profile (AutoGLM: 5000000)."),
        click.option("--max-images", type=click.IntRange(min=1), default=1, show_default=True,
                     help="GLM-4.1V: images per request the prompt table holds."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _table_rows(max_multimodal_len: int, max_batch_size: int, max_images: int, image_tokens: int | None) -> int:
    """The prompt-table rows to build / plan: the explicit value, else a full batch of max_images images."""
    from glmtrt.build.planner import prompt_table_rows

    if image_tokens is None:
        return max_multimodal_len
    need = prompt_table_rows(max_batch_size, max_images, image_tokens)
    if max_multimodal_len and max_multimodal_len < need:
        click.echo(f"warning: --max-multimodal-len {max_multimodal_len} gives each request "
                   f"{max_multimodal_len // max_batch_size} prompt-table rows; {max_images} image(s) at the pixel "
                   f"budget need {max_images * image_tokens} (TensorRT-LLM refuses a request over "
                   f"max_prompt_embedding_table_size / max_batch_size)", err=True)
    return max_multimodal_len or need


def _workload(dims, max_batch_size, max_seq_len, max_input_len, max_num_tokens, max_beam_width, kv_fraction,
              gather_context_logits=False, table_rows=0):
    from glmtrt.build.planner import Workload

    seq = max_seq_len or min(8192, dims.max_position_embeddings)
    if seq > dims.max_position_embeddings:
        click.echo(f"warning: --max-seq-len {seq} is beyond the model's context of {dims.max_position_embeddings} "
                   "tokens (max_position_embeddings): quality past it is not what the model was trained for", err=True)
    return Workload(max_batch_size=max_batch_size, max_seq_len=seq, max_input_len=max_input_len,
                    max_num_tokens=max_num_tokens, max_beam_width=max_beam_width,
                    kv_cache_free_gpu_mem_fraction=kv_fraction, gather_context_logits=gather_context_logits,
                    max_prompt_embedding_table_size=table_rows)


@click.command("plan")
@click.argument("model", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--gpu", required=True, help="GPU profile (t4, rtx4090, ...).")
@click.option("--precision", type=click.Choice(_PRECISIONS), default=None,
              help="Default: the checkpoint's (converted dir) or fp16 (HF dir).")
@click.option("--tp", "tp_size", type=POSITIVE_INT32, default=None, help="Tensor-parallel size (default: checkpoint's or 1).")
@click.option("--kv-cache-dtype", type=click.Choice(["auto", "int8", "fp8"]), default=None)
@click.option("--extra-params", type=click.FloatRange(0.0, 1000.0), default=0.0,
              help="Extra non-LLM weights on each GPU, in billions (e.g. 0.6 for AutoGLM's vision tower).")
@_workload_options
@_multimodal_options
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def plan_cmd(model, gpu, precision, tp_size, kv_cache_dtype, extra_params, max_batch_size, max_seq_len,
             max_input_len, max_num_tokens, max_beam_width, kv_fraction, max_multimodal_len, max_pixels, max_images,
             as_json):
    """Does MODEL (HF dir or converted checkpoint) fit GPU? How many KV-cache tokens are left?"""
    from dataclasses import replace

    from glmtrt.build.inputs import load_dims
    from glmtrt.build.planner import format_plan, plan_memory, require_fit
    from glmtrt.build.profile import load_profile

    profile = load_profile(gpu)
    dims, found = load_dims(model)
    if extra_params:
        dims = replace(dims, extra_params=int(extra_params * 1e9), extra_name="extra")
    precision = precision or found.get("precision", "fp16")
    kv = kv_cache_dtype or found.get("kv_cache_dtype", "auto")
    tp = tp_size or found.get("tp_size", 1)
    from glmtrt.models.glm4v.vision_build import image_tokens_of

    rows = _table_rows(max_multimodal_len, max_batch_size, max_images, image_tokens_of(model, max_pixels))
    wl = _workload(dims, max_batch_size, max_seq_len, max_input_len, max_num_tokens, max_beam_width, kv_fraction,
                   table_rows=rows)
    log.info("plan %s on %s: precision=%s tp=%d kv=%s prompt table %d rows", model, profile.name, precision, tp, kv,
             rows)
    plan = plan_memory(dims, profile, precision, tp, wl, kv)
    click.echo(json.dumps(plan.to_dict(), indent=2) if as_json else format_plan(plan))
    require_fit(plan)


@click.command("build")
@click.argument("checkpoint", type=click.Path(file_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Engine directory.")
@click.option("--gpu", required=True, help="GPU profile (t4, rtx4090, ...).")
@click.option("--tp", "tp_size", type=POSITIVE_INT32, default=None, help="Must match the checkpoint's tp_size.")
@_workload_options
@click.option("--workers", type=POSITIVE_INT32, default=None, help="Parallel rank builds (default: the TP size; "
              "trtllm-build caps it at the visible GPUs).")
@_multimodal_options
@click.option("--gather-context-logits", is_flag=True, help="Keep context logits (tests, verification).")
@click.option("--gather-generation-logits", is_flag=True)
@click.option("--timing-cache-dir", type=click.Path(path_type=Path), default=Path("build/timing-cache"),
              show_default=True)
@click.option("--log-dir", type=click.Path(path_type=Path), default=Path("build/logs"), show_default=True)
@click.option("--dry-run", is_flag=True, help="Print the plan and the trtllm-build command; build nothing.")
@click.option("--no-plan-check", is_flag=True, help="Build even when the planner says it does not fit.")
@click.option("--ignore-toolchain", is_flag=True, help="Build with another TensorRT-LLM version than the profile's.")
@click.option("--force", is_flag=True, help="Replace an existing engine directory.")
def build_cmd(checkpoint, output, gpu, tp_size, max_batch_size, max_seq_len, max_input_len, max_num_tokens,
              max_beam_width, kv_fraction, workers, max_multimodal_len, max_pixels, max_images, gather_context_logits,
              gather_generation_logits, timing_cache_dir, log_dir, dry_run, no_plan_check, ignore_toolchain, force):
    """Build a TensorRT engine from a converted CHECKPOINT for a GPU profile (GLM-4.1V: LLM + vision engine)."""
    from glmtrt.build.engine import prepare_build, run_build
    from glmtrt.build.inputs import read_checkpoint
    from glmtrt.build.planner import format_plan

    vjob = None
    if (checkpoint / "llm").is_dir():       # a Glm4v conversion: the vision engine goes to <output>/vision
        from glmtrt.build.profile import load_profile
        from glmtrt.models.glm4v.vision_build import plan_vision

        vjob = plan_vision(checkpoint, output, load_profile(gpu), max_pixels=max_pixels, max_images=max_images)
        max_multimodal_len = _table_rows(max_multimodal_len, max_batch_size, max_images, vjob.patches.max_image_tokens)
        log.info("vision engine: patches min/opt/max %d/%d/%d, prompt table %d rows", vjob.patches.min,
                 vjob.patches.opt, vjob.patches.max, max_multimodal_len)
    dims = read_checkpoint(checkpoint).dims
    wl = _workload(dims, max_batch_size, max_seq_len, max_input_len, max_num_tokens, max_beam_width, kv_fraction,
                   gather_context_logits)
    job = prepare_build(checkpoint, output, gpu, workload=wl, tp_size=tp_size, workers=workers,
                        timing_cache_dir=timing_cache_dir, max_multimodal_len=max_multimodal_len,
                        gather_generation_logits=gather_generation_logits, check_fit=not no_plan_check)
    log.info("build %s -> %s on %s (TensorRT-LLM %s): precision=%s tp=%d", checkpoint, output, job.profile.name,
             job.profile.toolchain.tensorrt_llm, job.checkpoint.precision, job.checkpoint.tp_size)
    if dry_run:
        click.echo(format_plan(job.plan))
        click.echo("")
        click.echo(f"# toolchain: TensorRT-LLM {job.profile.toolchain.tensorrt_llm}, "
                   f"container {job.profile.toolchain.triton_container}")
        click.echo(shlex.join(job.command))
        if vjob is not None:
            click.echo(shlex.join(vjob.command))
        return
    out = run_build(job, force=force, ignore_toolchain=ignore_toolchain, log_dir=log_dir)
    if vjob is not None:
        from glmtrt.models.glm4v.vision_build import run_vision_build

        run_vision_build(vjob, force=True)
    click.echo(str(out))


def register(group: click.Group) -> None:
    """Add this stage's commands to the top-level group."""
    group.add_command(plan_cmd)
    group.add_command(build_cmd)
