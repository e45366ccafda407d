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


@click.command("convert")
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Output TensorRT-LLM checkpoint directory (e.g. convert/chatglm3-6b-fp16).")
@click.option("--dtype", type=click.Choice(["float16", "bfloat16", "float32"]), default="float16",
              show_default=True, help="Activation/weight dtype of the checkpoint.")
@click.option("--tp-size", type=click.IntRange(min=1), default=1, show_default=True,
              help="Tensor-parallel ranks (one rank{N}.safetensors each).")
@click.option("--quant", type=click.Choice(["int8-wo", "int4-wo", "w8a8", "fp8"]), default=None,
              help="int8-wo/int4-wo: weight-only (TensorRT-LLM quantizes the fp16 weights at engine build). "
                   "w8a8 (SmoothQuant) and fp8 need calibration: not implemented yet.")
@click.option("--kv-cache-dtype", type=click.Choice(["int8", "fp8"]), default=None, hidden=True)
@click.option("--chatglm-version", type=click.Choice(["chatglm3", "glm4"]), default=None)
@click.option("--allow-pickle", is_flag=True, help="Read pickle .bin weights (torch.load weights_only=True).")
@click.option("--force", is_flag=True, help="Replace an existing output directory.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def convert_cmd(model_dir: Path, output: Path, dtype: str, tp_size: int, quant: str | None,
                kv_cache_dtype: str | None, chatglm_version: str | None, allow_pickle: bool, force: bool,
                no_progress: bool) -> None:
    """Convert an HF ChatGLM3/GLM-4 (or GLM-4.1V: llm/ + vision/) checkpoint into a TensorRT-LLM 1.2.x checkpoint."""
    from glmtrt.convert.pipeline import convert_checkpoint

    if kv_cache_dtype or quant in ("w8a8", "fp8"):
        from glmtrt.errors import GlmtrtError
        what = f"--quant {quant}" if quant in ("w8a8", "fp8") else f"--kv-cache-dtype {kv_cache_dtype}"
        raise GlmtrtError(f"{what} needs calibration scales, which glmtrt does not compute yet",
                          expected="--quant int8-wo or int4-wo (no calibration), or no --quant",
                          fix="use a weight-only precision for now (PRECISION=int8-wo / int4-wo)")
    log.info("convert %s -> %s dtype=%s tp_size=%d quant=%s", model_dir, output, dtype, tp_size, quant or "none")
    out = convert_checkpoint(model_dir, output, dtype=dtype, tp_size=tp_size, quant=quant,
                             chatglm_version=chatglm_version, allow_pickle=allow_pickle, force=force,
                             progress=not no_progress)
    click.echo(f"wrote {out}")


@click.command("verify")
@click.argument("checkpoint_dir", type=click.Path(path_type=Path))
@click.option("--hf", "hf_dir", required=True, type=click.Path(path_type=Path),
              help="The HF checkpoint the TensorRT-LLM checkpoint was converted from.")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@click.option("--compute-dtype", type=click.Choice(["auto", "float32"]), default="auto", show_default=True,
              help="auto: compute in the checkpoint dtype like the engine; float32: upcast everything.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--image", "images", multiple=True, type=click.Path(path_type=Path),
              help="GLM-4.1V only: also compare a prompt with this image (repeatable).")
@click.option("--max-pixels", type=click.IntRange(min=28 * 28 * 2), default=None,
              help="GLM-4.1V only: image pixel budget (t*h*w, t=2); AutoGLM-Phone-9B uses 5000000.")
def verify_cmd(checkpoint_dir: Path, hf_dir: Path, device: str, compute_dtype: str, as_json: bool,
               images: tuple[Path, ...], max_pixels: int | None) -> None:
    """Compare the reference executor on CHECKPOINT_DIR with transformers on --hf; exit 1 past tolerance."""
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
        report = verify_checkpoint(checkpoint_dir, hf_dir, device=device, compute_dtype=compute_dtype)
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
