"""Images a client sends: encoded PNG / JPEG files, validated before they leave the client.

The multimodal repository (ensemble and `tensorrt_llm_bls`) takes an optional input `images`,
TYPE_STRING dims [-1]: each element one encoded image file, decoded server-side by the
preprocessing model. The client sends the file bytes unchanged (no re-encoding, so the server
sees exactly the screenshot), after checking here that they are a PNG or JPEG Pillow can read.
"""
from __future__ import annotations

import base64
import binascii
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from glmtrt.errors import GlmtrtError

#: the request input the multimodal ensemble / BLS declare
IMAGE_INPUT = "images"
FORMATS = ("PNG", "JPEG")
MIME = {"PNG": "image/png", "JPEG": "image/jpeg"}
#: largest encoded image a client sends (a 1080x2400 PNG screenshot is ~1-4 MiB)
MAX_IMAGE_BYTES = 20 * 1024 * 1024
_DATA_URL = re.compile(r"data:(image/[A-Za-z0-9.+-]+)?(;[^,]*)?,(.*)\Z", re.S)


@dataclass(frozen=True)
class ImageFile:
    """An encoded image and what Pillow read from its header."""

    data: bytes
    format: str              #: "PNG" | "JPEG"
    size: tuple[int, int]    #: (width, height) in pixels
    source: str = ""

    @property
    def mime(self) -> str:
        return MIME[self.format]

    def data_url(self) -> str:
        """`data:image/...;base64,...` (OpenAI image_url content parts)."""
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"


def mime_of(data: bytes) -> str:
    """image/png or image/jpeg from the file signature (for bytes already validated by check_image)."""
    return "image/png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "image/jpeg"


def data_url(data: bytes) -> str:
    """`data:image/...;base64,...` of encoded image bytes."""
    return f"data:{mime_of(data)};base64,{base64.b64encode(data).decode('ascii')}"


def check_image(data: bytes, source: str = "image") -> ImageFile:
    """Validate encoded image bytes: a PNG or JPEG that Pillow decodes; GlmtrtError otherwise."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise GlmtrtError(f"{source} is empty", expected="a PNG or JPEG file")
    if len(data) > MAX_IMAGE_BYTES:
        raise GlmtrtError(f"{source} is {len(data) / 2**20:.1f} MiB", expected=f"at most {MAX_IMAGE_BYTES // 2**20} MiB",
                          fix="send a smaller screenshot (the model resizes to its pixel budget anyway)")
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt, size = im.format, im.size
            im.load()          # decode the pixels: a truncated or corrupt file fails here, not on the server
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise GlmtrtError(f"{source} is not a readable image ({type(exc).__name__}: {exc})",
                          expected="a PNG or JPEG file") from None
    if fmt not in FORMATS:
        raise GlmtrtError(f"{source} is a {fmt} image", expected="PNG or JPEG",
                          fix="convert it, e.g. with Pillow: Image.open(p).save('shot.png')")
    return ImageFile(bytes(data), fmt, size, source)


def read_image(path: str | Path) -> ImageFile:
    """Read and validate one image file (missing, unreadable, not PNG/JPEG -> GlmtrtError)."""
    p = Path(path)
    if not p.is_file():
        raise GlmtrtError(f"image {p} does not exist" if not p.exists() else f"image {p} is not a file",
                          expected="a PNG or JPEG file")
    size = p.stat().st_size
    if size > MAX_IMAGE_BYTES:
        raise GlmtrtError(f"image {p} is {size / 2**20:.1f} MiB", expected=f"at most {MAX_IMAGE_BYTES // 2**20} MiB")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise GlmtrtError(f"cannot read image {p}: {exc.strerror or exc}") from None
    return check_image(data, f"image {p}")


def read_images(paths: Iterable[str | Path]) -> list[ImageFile]:
    """`read_image` for each path, in order."""
    return [read_image(p) for p in paths]


def decode_data_url(url: str, source: str = "image_url") -> ImageFile:
    """A `data:image/png;base64,...` URL -> validated ImageFile (GlmtrtError when malformed)."""
    m = _DATA_URL.match(url.strip())
    if not m or not (m.group(2) or "").endswith("base64"):
        raise GlmtrtError(f"{source} is not a base64 data URL", expected="data:image/png;base64,... or data:image/jpeg;base64,...")
    try:
        data = base64.b64decode(re.sub(r"\s+", "", m.group(3)), validate=True)
    except (binascii.Error, ValueError):
        raise GlmtrtError(f"{source}: the base64 payload is malformed", expected="standard base64") from None
    return check_image(data, source)
