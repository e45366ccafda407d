"""The TensorRT vision-engine build of `vision/encoder.onnx` (trtexec, in the profile's container).

One optimization profile over the number of patches N (the only dynamic axis of the ONNX graph,
glmtrt.models.glm4v.onnx_export): min from min_pixels, max from max_pixels, opt = a 1080x2400 phone
screenshot at that budget (AutoGLM's main input).
For AutoGLM (max_pixels 5,000,000): 32 / 12432 / 12752 patches, at most 3188 image tokens. smart_resize keeps t*h*w <= max_pixels with
t = temporal_patch_size = 2 and h, w multiples of 28, so N = h*w/196 <= max_pixels / (2*196) and
the decoder sees N/4 image tokens. Precision follows the checkpoint dtype (FP16 -> --fp16, BF16 ->
--bf16 where the profile has bf16; FP32 -> neither); trtexec ships in the Triton TensorRT-LLM
containers at /usr/src/tensorrt/bin/trtexec.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from glmtrt.errors import GlmtrtError
from glmtrt.models.glm4v.onnx_export import INPUTS
from glmtrt.models.glm4v.preprocess import AUTOGLM_MAX_PIXELS, MIN_PIXELS, smart_resize

TRTEXEC = "/usr/src/tensorrt/bin/trtexec"
ENGINE_NAME = "encoder.plan"


@dataclass(frozen=True)
class PatchRange:
    """min/opt/max number of patches of the vision engine's profile."""

    min: int
    opt: int
    max: int

    @property
    def max_image_tokens(self) -> int:
        return self.max // 4


def patch_range(min_pixels: int = MIN_PIXELS, max_pixels: int = AUTOGLM_MAX_PIXELS, patch: int = 14,
                merge: int = 2, temporal: int = 2) -> PatchRange:
    """The patch-count profile for a pixel budget (see module docstring)."""
    factor = patch * merge
    if max_pixels < temporal * factor * factor or min_pixels > max_pixels:
        raise GlmtrtError(f"pixel budget min {min_pixels} / max {max_pixels}",
                          expected=f"min_pixels <= max_pixels, max_pixels >= {temporal * factor * factor}")
    # smart_resize only raises an image to t*h*w >= min_pixels (ceil) and only lowers it to <= max_pixels
    # (floor), with h, w multiples of 28 = 4 patches
    lo = -(-min_pixels // (temporal * factor * factor)) * merge * merge
    hi = (max_pixels // temporal) // (factor * factor) * merge * merge
    oh, ow = smart_resize(2400, 1080, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
    opt = min(max(oh * ow // (patch * patch), lo), hi)
    return PatchRange(lo, opt, hi)


def _shapes(n: int, patch_dim: int, head_dim: int) -> str:
    dims = {"patches": patch_dim, "pos_grid": 2, "rotary_cos": head_dim, "rotary_sin": head_dim}
    return ",".join(f"{name}:{n}x{dims[name]}" for name in INPUTS)


def vision_engine_command(onnx_path: str | Path, engine_path: str | Path, *, dtype: str, precisions,
                          patches: PatchRange, patch_dim: int, head_dim: int,
                          timing_cache: str | Path | None = None) -> list[str]:
    """The trtexec argv that builds the vision engine from the ONNX encoder."""
    cmd = [TRTEXEC, f"--onnx={onnx_path}", f"--saveEngine={engine_path}",
           "--minShapes=" + _shapes(patches.min, patch_dim, head_dim),
           "--optShapes=" + _shapes(patches.opt, patch_dim, head_dim),
           "--maxShapes=" + _shapes(patches.max, patch_dim, head_dim)]
    if dtype == "float16":
        cmd.append("--fp16")
    elif dtype == "bfloat16":
        if "bf16" not in precisions:
            raise GlmtrtError("a bfloat16 vision engine on a GPU without bf16", expected="--dtype float16",
                              fix="convert with --dtype float16 for this GPU")
        cmd.append("--bf16")
    elif dtype != "float32":
        raise GlmtrtError(f"vision dtype {dtype!r}", expected="float16, bfloat16 or float32")
    if timing_cache is not None:
        cmd.append(f"--timingCacheFile={timing_cache}")
    return cmd


@dataclass(frozen=True)
class VisionJob:
    """A resolved vision-engine build next to the LLM engine (<engine dir>/vision/)."""

    onnx: Path
    output_dir: Path
    patches: PatchRange
    max_images: int
    command: list[str]

    def prompt_table_rows(self, max_batch_size: int) -> int:
        """--max_prompt_embedding_table_size for the LLM engine: every request of a full batch may carry
        max_images images at the pixel budget (glmtrt.build.planner.prompt_table_rows)."""
        from glmtrt.build.planner import prompt_table_rows

        return prompt_table_rows(max_batch_size, self.max_images, self.patches.max_image_tokens)


def image_tokens_of(model_dir: str | Path, max_pixels: int = AUTOGLM_MAX_PIXELS,
                    min_pixels: int = MIN_PIXELS) -> int | None:
    """Most image tokens one image can take at `max_pixels` for a GLM-4.1V model (HF dir or a glmtrt
    conversion with vision/config.json); None for a model without a vision tower."""
    import json

    p = Path(model_dir)
    if (p / "vision" / "config.json").is_file():
        v = json.loads((p / "vision" / "config.json").read_text(encoding="utf-8"))["vision"]
        sizes = (v["patch_size"], v["spatial_merge_size"], v["temporal_patch_size"])
    elif (p / "config.json").is_file() and not (p / "rank0.safetensors").is_file():
        from glmtrt.models.registry import load_model_spec

        vis = getattr(load_model_spec(p), "vision", None)
        if vis is None:
            return None
        sizes = (vis.patch_size, vis.spatial_merge_size, vis.temporal_patch_size)
    else:
        return None
    return patch_range(min_pixels, max_pixels, *sizes).max_image_tokens


def plan_vision(checkpoint: str | Path, engine_dir: str | Path, profile, *, max_pixels: int = AUTOGLM_MAX_PIXELS,
                min_pixels: int = MIN_PIXELS, max_images: int = 1) -> VisionJob:
    """Validate a Glm4v conversion for `profile` and compute the vision-engine command."""
    import json

    checkpoint = Path(checkpoint)
    if profile.toolchain.line != "1.2":
        raise GlmtrtError(f"GLM-4.1V engines are not built for the {profile.name} profile "
                          f"(TensorRT-LLM {profile.toolchain.tensorrt_llm})",
                          expected="a TensorRT-LLM 1.2.x profile (rtx4090): our engine class uses its M-RoPE "
                                   "attention and Python model API", fix="use --gpu rtx4090")
    if max_images < 1:
        raise GlmtrtError(f"--max-images {max_images}", expected="an integer >= 1")
    onnx = checkpoint / "vision" / "encoder.onnx"
    cfg_path = checkpoint / "vision" / "config.json"
    if not onnx.is_file() or not cfg_path.is_file():
        raise GlmtrtError(f"{checkpoint} lacks vision/encoder.onnx or vision/config.json",
                          expected="a Glm4v conversion by `glmtrt convert`", fix="convert the model again")
    vcfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    v = vcfg["vision"]
    llm_dtype = json.loads((checkpoint / "llm" / "config.json").read_text(encoding="utf-8"))["dtype"]
    patches = patch_range(min_pixels, max_pixels, v["patch_size"], v["spatial_merge_size"], v["temporal_patch_size"])
    out = Path(engine_dir) / "vision"
    patch_dim = v["in_channels"] * v["temporal_patch_size"] * v["patch_size"] ** 2
    cmd = vision_engine_command(onnx, out / ENGINE_NAME, dtype=llm_dtype, precisions=profile.precisions,
                                patches=patches, patch_dim=patch_dim, head_dim=v["hidden_size"] // v["num_heads"])
    return VisionJob(onnx, out, patches, max_images, cmd)


def run_vision_build(job: VisionJob, *, force: bool = False) -> Path:
    """Run trtexec into <engine dir>/vision atomically and write its manifest (kind "trt-vision-engine")."""
    import shutil
    import subprocess

    from glmtrt.checkpoint.atomic import atomic_output_dir
    from glmtrt.checkpoint.manifest import write_manifest
    from glmtrt.fileio import sha256_file

    exe = TRTEXEC if Path(TRTEXEC).is_file() else shutil.which("trtexec")
    if exe is None:
        raise GlmtrtError("trtexec is not installed here (TensorRT is needed to build the vision engine)",
                          expected="the profile's Triton TensorRT-LLM container", fix="run: " + " ".join(job.command))
    with atomic_output_dir(job.output_dir, force) as tmp:
        cmd = [exe] + [a.replace(str(job.output_dir), str(tmp)) for a in job.command[1:]]
        rc = subprocess.run(cmd, check=False).returncode
        if rc != 0:
            raise GlmtrtError(f"trtexec failed with exit code {rc}", expected="exit code 0")
        write_manifest(tmp, "trt-vision-engine", {ENGINE_NAME: sha256_file(tmp / ENGINE_NAME)},
                       onnx={"path": str(job.onnx), "sha256": sha256_file(job.onnx)},
                       patches={"min": job.patches.min, "opt": job.patches.opt, "max": job.patches.max},
                       max_images=job.max_images, command=job.command)
    return job.output_dir
