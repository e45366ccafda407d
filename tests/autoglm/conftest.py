"""Screenshots for the AutoGLM client tests (synthetic, made with Pillow)."""
from __future__ import annotations

import pytest


def make_screenshot(path, size=(1080, 2400), fmt="PNG"):
    """A phone-sized picture with a few coloured bars (not a blank image)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", size, (250, 250, 250))
    d = ImageDraw.Draw(img)
    w, h = size
    for k in range(6):
        d.rectangle([w // 27, h * (1 + 3 * k) // 24, w - w // 27, h * (2 + 3 * k) // 24],
                    fill=(30 * k, 120, 255 - 30 * k))
    img.save(path, format=fmt)
    return path


@pytest.fixture
def shot(tmp_path):
    return make_screenshot(tmp_path / "shot.png")


def write_autoglm_config(d):
    """config.json of a full-size GLM-4.1V / AutoGLM-Phone-9B (transformers' Glm4vConfig defaults), no weights."""
    import json

    from transformers import Glm4vConfig

    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps({**Glm4vConfig().to_dict(), "architectures": ["Glm4vForConditionalGeneration"]}))
    return d
