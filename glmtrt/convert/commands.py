"""Click commands of the convert stage: inspect, convert, verify (thin wrappers)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import click

log = logging.getLogger("glmtrt.convert")

_GIB = 1024 ** 3


def _inspect_rows(model_dir: Path, chatglm_version: str | None) -> tuple[dict, list[tuple[str, str]]]:
    from glmtrt.build.inputs import dims_from_spec
    from glmtrt.build.planner import weight_bytes
    from glmtrt.models.registry import load_model

    entry, spec = load_model(model_dir, chatglm_version)
    dims = dims_from_spec(spec, model_dir.name)
    info = {
        "family": entry.family, "architecture": entry.architecture, "source_format": entry.source_format,
        "chatglm_version": spec.chatglm_version, "parameters": spec.num_params(),
        "layers": spec.num_layers, "hidden_size": spec.hidden_size, "heads": spec.num_heads,
        "kv_heads": spec.num_kv_heads, "head_size": spec.head_size, "ffn": spec.intermediate_size,
        "vocab_padded": spec.vocab_size, "context_length": spec.max_position_embeddings,
        "rotary_base": spec.rotary_base, "eos_token_ids": list(spec.eos_token_ids),
        "pad_token_id": spec.pad_token_id,
        "weights_gib": {p: round(weight_bytes(dims, p) / _GIB, 3) for p in ("fp16", "int8-wo", "int4-wo")},
    }
    vision = getattr(spec, "vision", None)
    if vision is not None:      # GLM-4.1V: the vision tower, fp16 on every GPU, and the image tokens
        from dataclasses import asdict

        info["vision"] = {**asdict(vision), "parameters": vision.num_params(),
                          "weights_gib_fp16": round(2 * vision.num_params() / _GIB, 3)}
        info["mrope_section"] = list(spec.mrope_section)
        info.update(image_token_id=spec.image_token_id, image_start_token_id=spec.image_start_token_id,
                    image_end_token_id=spec.image_end_token_id)
    special = _special_tokens(model_dir)
    if special:
        info["special_tokens"] = special
    rows = [(k, str(v)) for k, v in info.items() if k not in ("weights_gib", "special_tokens", "vision")]
    if vision is not None:
        rows.append(("vision tower", f"{vision.depth} blocks x {vision.hidden_size}, {vision.num_heads} heads, "
                                     f"patch {vision.patch_size}, merge {vision.spatial_merge_size}, "
                                     f"{vision.num_params() / 1e9:.2f}B params "
                                     f"({info['vision']['weights_gib_fp16']:.2f} GiB fp16)"))
    rows += [(f"weights {p.upper()}", f"{v:.2f} GiB") for p, v in info["weights_gib"].items()]
    if special:
        rows.append(("special tokens", ", ".join(f"{t}={i}" for t, i in special.items())))
    return info, rows


def _special_tokens(model_dir: Path) -> dict[str, int] | None:
    if not (model_dir / "tokenizer.model").is_file():
        return None
    from glmtrt.tokenizer import load_tokenizer

    return dict(load_tokenizer(model_dir).special_tokens)


@click.command("inspect")
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option("--chatglm-version", type=click.Choice(["chatglm3", "glm4"]), default=None,
              help="Override ChatGLM3/GLM-4 detection (decided from config values by default).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def inspect_cmd(model_dir: Path, chatglm_version: str | None, as_json: bool) -> None:
    """Show family, architecture, size, context length, special tokens and weight memory."""
    info, rows = _inspect_rows(model_dir, chatglm_version)
    if as_json:
        click.echo(json.dumps(info, indent=2, ensure_ascii=False))
        return
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        click.echo(f"{k:<{width}}  {v}")


#: --precision NAME (the names of plan, build and make PRECISION=) -> (default dtype, quant).
PRECISIONS = {"fp16": ("float16", None), "bf16": ("bfloat16", None), "fp32": ("float32", None),
              "int8-wo": ("float16", "int8-wo"), "int4-wo": ("float16", "int4-wo"),
              "int8-sq": ("float16", "int8-sq"), "fp8": ("bfloat16", "fp8"), "int4-awq": ("float16", "int4-awq")}


@click.command("convert")
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Output TensorRT-LLM checkpoint directory (e.g. convert/chatglm3-6b-fp16).")
@click.option("--precision", type=click.Choice(list(PRECISIONS)), default=None,
              help="fp16 bf16 fp32 (float), int8-wo int4-wo (weight-only, quantized by trtllm-build), "
                   "int8-sq (SmoothQuant W8A8), int4-awq (AWQ W4A16) and fp8 (per-tensor e4m3 W8A8, sm89+), calibrated here.")
@click.option("--quant", type=click.Choice(["int8-wo", "int4-wo", "int8-sq", "fp8", "int4-awq"]), default=None,
              help="Alias of --precision for the quantized precisions.")
@click.option("--dtype", type=click.Choice(["float16", "bfloat16", "float32"]), default=None,
              help="Activation/weight dtype (default: the precision's, float16).")
@click.option("--tp-size", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Tensor-parallel ranks (one rank{N}.safetensors each).")
@click.option("--smoothquant-alpha", type=float, default=0.5, show_default=True,
              help="int8-sq migration strength in [0, 1].")
@click.option("--sq-variant", type=click.Choice(["per-channel-per-token", "per-channel-per-tensor",
                                                 "per-tensor-per-token", "per-tensor"]),
              default="per-channel-per-token", show_default=True,
              help="int8-sq weight scales (per channel / tensor) and activation scales (dynamic per token / static).")
@click.option("--group-size", type=click.Choice(["64", "128"]), default="128", show_default=True,
              help="int4-awq: input channels per weight scale.")
@click.option("--awq-search/--no-awq-search", default=True, show_default=True,
              help="int4-awq: search the AWQ activation-aware scales (off: round-to-nearest groupwise INT4).")
@click.option("--int8-kv-cache", is_flag=True, help="INT8 KV cache (calibrated kv_cache_scaling_factor).")
@click.option("--fp8-kv-cache", is_flag=True, help="FP8 KV cache (calibrated kv_cache_scaling_factor; sm89+).")
@click.option("--calib-data", type=click.Path(path_type=Path), default=None,
              help="Calibration texts: .jsonl ({\"text\"} or {\"input_ids\"} per line) or .txt (one per line). "
                   "Default: the built-in Chinese + English prompts.")
@click.option("--calib-dataset", default=None, help="A `datasets` dataset name with a 'text' column (online only).")
@click.option("--calib-samples", type=click.IntRange(min=1, max=4096), default=64, show_default=True)
@click.option("--calib-seq-len", type=click.IntRange(min=1, max=32768), default=512, show_default=True)
@click.option("--calib-seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="Calibration device: cpu or cuda.")
@click.option("--kv-cache-dtype", type=click.Choice(["int8", "fp8"]), default=None, hidden=True)
@click.option("--chatglm-version", type=click.Choice(["chatglm3", "glm4"]), default=None)
@click.option("--allow-pickle", is_flag=True, help="Read pickle .bin weights (torch.load weights_only=True).")
@click.option("--force", is_flag=True, help="Replace an existing output directory.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def convert_cmd(model_dir: Path, output: Path, precision: str | None, quant: str | None, dtype: str | None,
                tp_size: int, smoothquant_alpha: float, sq_variant: str, group_size: str, awq_search: bool,
                int8_kv_cache: bool, fp8_kv_cache: bool,
                calib_data: Path | None, calib_dataset: str | None, calib_samples: int, calib_seq_len: int,
                calib_seed: int, device: str, kv_cache_dtype: str | None, chatglm_version: str | None,
                allow_pickle: bool, force: bool, no_progress: bool) -> None:
    """Convert an HF ChatGLM3/GLM-4 (or GLM-4.1V: llm/ + vision/) checkpoint into a TensorRT-LLM 1.2.x checkpoint."""
    from glmtrt.errors import GlmtrtError

    if precision and quant and PRECISIONS[precision][1] != quant:
        raise GlmtrtError(f"--precision {precision} and --quant {quant} disagree", expected="one of them")
    precision = precision or quant or {"bfloat16": "bf16", "float32": "fp32"}.get(dtype or "", "fp16")
    default_dtype, q = PRECISIONS[precision]
    dtype = dtype or default_dtype
    int8_kv_cache = int8_kv_cache or kv_cache_dtype == "int8"
    fp8_kv_cache = fp8_kv_cache or kv_cache_dtype == "fp8"
    if not 0.0 <= smoothquant_alpha <= 1.0:
        raise GlmtrtError(f"--smoothquant-alpha {smoothquant_alpha}", expected="a value in [0, 1]")
    if q in ("int8-wo", "int4-wo") and (int8_kv_cache or fp8_kv_cache):
        raise GlmtrtError(f"--{'int8' if int8_kv_cache else 'fp8'}-kv-cache with {precision}",
                          expected="a float precision, int8-sq (INT8 KV) or fp8 (FP8 KV)",
                          fix="weight-only checkpoints are quantized at build; use int8-sq for a calibrated KV cache")
    if precision in ("int8-sq", "int4-awq", "fp8") or int8_kv_cache or fp8_kv_cache:
        from glmtrt.models.registry import load_model
        from glmtrt.quant.calibrate import CalibOptions
        from glmtrt.quant.convert_calibrated import convert_calibrated

        entry, _ = load_model(model_dir, chatglm_version)
        if entry.smoothing_groups is None:
            raise GlmtrtError(f"--precision {precision}{' / a calibrated KV cache' if int8_kv_cache or fp8_kv_cache else ''} is not "
                              f"available for the {entry.family} family yet",
                              expected="fp16, bf16, fp32, int8-wo or int4-wo for this model",
                              fix="use a weight-only precision (int8-wo / int4-wo)")
        calib = CalibOptions(calib_samples, calib_seq_len, calib_seed, device=device,
                             calib_data=str(calib_data) if calib_data else None, calib_dataset=calib_dataset)
        kv = "int8" if int8_kv_cache else "fp8" if fp8_kv_cache else None
        log.info("convert %s -> %s precision=%s dtype=%s tp_size=%d alpha=%g variant=%s kv_cache=%s calib=%s",
                 model_dir, output, precision, dtype, tp_size, smoothquant_alpha, sq_variant, kv, calib)
        out = convert_calibrated(model_dir, output, smoothing_groups=entry.smoothing_groups, dtype=dtype,
                                 tp_size=tp_size, precision=precision, sq_variant=sq_variant,
                                 alpha=smoothquant_alpha, int8_kv_cache=int8_kv_cache,
                                 fp8_kv_cache=fp8_kv_cache, calib=calib,
                                 group_size=int(group_size), awq_search=awq_search,
                                 chatglm_version=chatglm_version, allow_pickle=allow_pickle, force=force,
                                 progress=not no_progress)
        click.echo(f"wrote {out}")
        return
    from glmtrt.convert.pipeline import convert_checkpoint

    log.info("convert %s -> %s precision=%s dtype=%s tp_size=%d", model_dir, output, precision, dtype, tp_size)
    out = convert_checkpoint(model_dir, output, dtype=dtype, tp_size=tp_size, quant=q,
                             chatglm_version=chatglm_version, allow_pickle=allow_pickle, force=force,
                             progress=not no_progress)
    click.echo(f"wrote {out}")


@click.command("verify")
@click.argument("checkpoint_dir", type=click.Path(path_type=Path))
@click.option("--hf", "hf_dir", required=True, type=click.Path(path_type=Path),
              help="The HF checkpoint the TensorRT-LLM checkpoint was converted from.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--compute-dtype", type=click.Choice(["auto", "float32"]), default="auto", show_default=True,
              help="auto: compute in the checkpoint dtype like the engine; float32: upcast everything.")
@click.option("--allow-pickle", is_flag=True, help="Read pickle .bin source weights (torch.load weights_only=True).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--image", "images", multiple=True, type=click.Path(path_type=Path),
              help="GLM-4.1V only: also compare a prompt with this image (repeatable).")
@click.option("--max-pixels", type=click.IntRange(min=28 * 28 * 2), default=None,
              help="GLM-4.1V only: image pixel budget (t*h*w, t=2); AutoGLM-Phone-9B uses 5000000.")
def verify_cmd(checkpoint_dir: Path, hf_dir: Path, device: str, compute_dtype: str, allow_pickle: bool,
               as_json: bool, images: tuple[Path, ...], max_pixels: int | None) -> None:
    """Compare the reference executor on CHECKPOINT_DIR with transformers on --hf.

    Exit 0: PASS; 1: the numbers are past tolerance (FAIL); 2: bad input (a missing, truncated or
    corrupt file, a missing tensor, a wrong shape, pickles without --allow-pickle).
    """
    from glmtrt.reference.verify import verify_checkpoint

    log.info("verify %s against %s on %s (compute %s)", checkpoint_dir, hf_dir, device, compute_dtype)
    if (checkpoint_dir / "llm").is_dir():      # a Glm4v conversion (llm/ + vision/)
        from glmtrt.reference.glm4v_verify import verify_glm4v

        report = verify_glm4v(checkpoint_dir, hf_dir, images=images, device=device, compute_dtype=compute_dtype,
                              max_pixels=max_pixels)
    elif images or max_pixels:
        from glmtrt.errors import GlmtrtError
        raise GlmtrtError("--image / --max-pixels apply to GLM-4.1V (Glm4v) conversions only",
                          expected=f"{checkpoint_dir}/llm and vision/ (written by `glmtrt convert` on a Glm4v model)")
    else:
        report = verify_checkpoint(checkpoint_dir, hf_dir, device=device, compute_dtype=compute_dtype,
                                   allow_pickle=allow_pickle)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        click.echo(report.format_table())
    if not report.passed:
        raise SystemExit(1)


def register(group: click.Group) -> None:
    """Add inspect, convert and verify."""
    for cmd in (inspect_cmd, convert_cmd, verify_cmd):
        group.add_command(cmd)
