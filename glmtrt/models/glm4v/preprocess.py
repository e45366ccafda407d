"""GLM-4.1V image preprocessing as pure functions (no model, no GPU): image -> patches + grid.

Contract (docs/INTERFACES.md, "GLM-4.1V preprocessing"): `preprocess_image(image, vision, min_pixels,
max_pixels) -> ImageInputs` with `patches` float32 [N, C*T*P*P] (N = grid_h * grid_w, 1176 wide for
GLM-4.1V), `grid_thw` (1, grid_h, grid_w) in patch units, `resized` (h, w) and `note` (why it was
resized, or None). Numerics follow transformers 5.x `models/glm4v/image_processing_pil_glm4v.py`
(`Glm4vImageProcessorPil`):
- `smart_resize(num_frames=temporal_patch, h, w, factor=patch*merge=28, min_pixels, max_pixels)`:
  note the budget is compared with t*h*w where t = 2 (each image counts as two frames).
- PIL bicubic resize of the uint8 RGB image, x/255, CLIP mean/std (image_utils OPENAI_CLIP_MEAN/STD).
- `patchify`: (C, gh/m, m, P, gw/m, m, P) -> (gh/m, gw/m, m, m, C, P, P), the image duplicated along a
  temporal axis of `temporal_patch_size` frames -> rows in 2x2-merge-block-major order, columns (C, T, P, P).
Defaults: processor size {shortest_edge: 112*112, longest_edge: 28*28*15000}; AutoGLM-Phone-9B serves
with max_pixels 5,000,000.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from glmtrt.errors import GlmtrtError

if TYPE_CHECKING:
    from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
MIN_PIXELS = 112 * 112
MAX_PIXELS = 28 * 28 * 15000
AUTOGLM_MAX_PIXELS = 5_000_000


@dataclass(frozen=True)
class ImageInputs:
    """One preprocessed image."""

    patches: Any                 # np.float32 [grid_h * grid_w, patch_dim]
    grid_thw: tuple[int, int, int]
    original: tuple[int, int]    # (h, w) as read
    resized: tuple[int, int]     # (h, w) fed to the encoder
    note: str | None             # a message when the pixel budget forced a resize

    @property
    def num_tokens(self) -> int:
        """Image placeholder tokens in the prompt: t*h*w / merge^2 (merge 2)."""
        t, h, w = self.grid_thw
        return t * h * w // 4


def smart_resize(height: int, width: int, *, factor: int = 28, min_pixels: int = MIN_PIXELS,
                 max_pixels: int = MAX_PIXELS, num_frames: int = 2, temporal_factor: int = 2) -> tuple[int, int]:
    """(h, w) multiples of `factor` near the input with num_frames*h*w within [min_pixels, max_pixels]."""
    if height < factor or width < factor:
        scale = max(factor / height, factor / width)
        height, width = int(height * scale), int(width * scale)
    if max(height, width) / min(height, width) > 200:
        raise GlmtrtError(f"image aspect ratio {max(height, width) / min(height, width):.0f}:1",
                          expected="an aspect ratio below 200:1 (GLM-4.1V smart_resize)")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    t_bar = round(num_frames / temporal_factor) * temporal_factor
    if t_bar * h_bar * w_bar > max_pixels:
        beta = math.sqrt((num_frames * height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif t_bar * h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (num_frames * height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def load_image(source) -> "Image.Image":
    """An RGB PIL image from a path, bytes or a PIL image; clear errors for missing/corrupt files."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(source, Image.Image):
        img = source
    else:
        what = "image bytes" if isinstance(source, (bytes, bytearray)) else str(source)
        try:
            if isinstance(source, (bytes, bytearray)):
                img = Image.open(io.BytesIO(source))
            else:
                if not Path(source).is_file():
                    raise GlmtrtError(f"image file {source} does not exist", expected="a PNG/JPEG/WebP file")
                img = Image.open(source)
            img.load()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise GlmtrtError(f"{what} is not a readable image ({exc.__class__.__name__}: {exc})",
                              expected="a PNG, JPEG, WebP, BMP or GIF image",
                              fix="check the file (it may be truncated or not an image at all)") from None
    return img.convert("RGB")


def patchify(pixels: np.ndarray, patch: int = 14, merge: int = 2, temporal: int = 2) -> np.ndarray:
    """[C, H, W] float32 -> [gh*gw, C*temporal*patch*patch] in merge-block-major row order."""
    c, h, w = pixels.shape
    gh, gw = h // patch, w // patch
    x = pixels.reshape(c, gh // merge, merge, patch, gw // merge, merge, patch)
    x = x.transpose(1, 4, 2, 5, 0, 3, 6)                       # gh/m, gw/m, m, m, C, P, P
    x = np.broadcast_to(x[:, :, :, :, :, None], x.shape[:5] + (temporal, patch, patch))
    return np.ascontiguousarray(x.reshape(gh * gw, c * temporal * patch * patch), dtype=np.float32)


def preprocess_image(source, *, patch_size: int = 14, merge_size: int = 2, temporal_patch_size: int = 2,
                     min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS) -> ImageInputs:
    """Image (path, bytes or PIL) -> ImageInputs (see module docstring)."""
    from PIL import Image

    if min_pixels < 1 or max_pixels < min_pixels:
        raise GlmtrtError(f"pixel budget min {min_pixels} / max {max_pixels}",
                          expected="1 <= min_pixels <= max_pixels")
    img = load_image(source)
    w0, h0 = img.size
    factor = patch_size * merge_size
    h, w = smart_resize(h0, w0, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels,
                        num_frames=temporal_patch_size, temporal_factor=temporal_patch_size)
    note = None
    if temporal_patch_size * h0 * w0 > max_pixels:
        note = (f"image {w0}x{h0} is over the pixel budget ({temporal_patch_size} x {w0 * h0} > "
                f"max_pixels {max_pixels}); resized to {w}x{h}")
    if (w, h) != (w0, h0):
        img = img.resize((w, h), resample=Image.BICUBIC)
    x = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) * np.float32(1 / 255)
    mean = np.asarray(CLIP_MEAN, dtype=np.float32)[:, None, None]
    std = np.asarray(CLIP_STD, dtype=np.float32)[:, None, None]
    x = (x - mean) / std
    patches = patchify(x, patch_size, merge_size, temporal_patch_size)
    return ImageInputs(patches, (1, h // patch_size, w // patch_size), (h0, w0), (h, w), note)
