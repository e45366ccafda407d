"""Fixtures of the calibrated-quantization tests: a tiny random checkpoint + token-id calibration data."""
from __future__ import annotations

import json

import pytest
import torch

from glmtrt.models.chatglm.tiny import make_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_src(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("sqsrc") / "m", "chatglm", seed=0)


@pytest.fixture(scope="session")
def calib_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("calib") / "calib.jsonl"
    g = torch.Generator().manual_seed(0)
    with open(p, "w", encoding="utf-8") as f:
        for _ in range(8):
            f.write(json.dumps({"input_ids": torch.randint(0, 128, (40,), generator=g).tolist()}) + "\n")
    return p


def sq_convert(src, out, calib_file, **kw):
    """convert_calibrated on the tiny model with 8 x 32 calibration tokens."""
    from glmtrt.models.chatglm.smoothing import smoothing_groups
    from glmtrt.quant.calibrate import CalibOptions
    from glmtrt.quant.convert_calibrated import convert_calibrated

    calib = kw.pop("calib", CalibOptions(8, 32, 0, calib_data=str(calib_file)))
    return convert_calibrated(src, out, smoothing_groups=smoothing_groups, calib=calib, progress=False, **kw)
