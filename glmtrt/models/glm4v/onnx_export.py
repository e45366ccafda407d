"""Export the vision tower (glmtrt.models.glm4v.vision.VisionEncoder) to `vision/encoder.onnx`.

One image per run; every shape depends on one dynamic axis, the number of patches N (a multiple of 4):
  inputs   patches [N, patch_dim] float32, pos_grid [N, 2] float32, rotary_cos / rotary_sin
           [N, head_dim] float32 (all host-computed by glmtrt.models.glm4v.positions.vision_host_inputs)
  output   image_embeds [N/4, out_hidden_size] float32
Weights above 1 GiB (the real 0.9B-parameter tower is 3.6 GB in float32, past protobuf's 2 GB limit)
go to one external-data file `encoder.onnx.data` beside the graph (onnx external data format).
Opset 17 (GridSample with mode "cubic" needs >= 16; TensorRT's ONNX parser maps it to IGridSampleLayer
with cubic interpolation). Weights are stored in float32; the TensorRT engine is built FP16/BF16
from this file by `glmtrt build` (trtexec --fp16/--bf16 with min/opt/max N).
"""
from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

INPUTS = ("patches", "pos_grid", "rotary_cos", "rotary_sin")
OUTPUT = "image_embeds"
OPSET = 17


EXTERNAL_THRESHOLD = 1 << 30


def export_vision_onnx(vision_dir: str | Path, out_path: str | Path, sample_grid=(1, 4, 4),
                       external_data: bool | None = None) -> list[Path]:
    """Write the ONNX encoder of `vision_dir` to `out_path` (+ `<name>.data` when the weights are large or
    `external_data` is True), check it with onnx.checker and return the files written."""
    import tempfile
    import warnings

    import onnx
    import torch

    from glmtrt.models.glm4v.positions import vision_host_inputs
    from glmtrt.models.glm4v.vision import VisionEncoder

    enc = VisionEncoder.from_dir(vision_dir)
    n = sample_grid[0] * sample_grid[1] * sample_grid[2]
    grid, cos, sin = vision_host_inputs(sample_grid, enc.hidden // enc.heads, enc.theta, enc.merge)
    patches = torch.zeros(n, enc.patch_w.shape[1])
    out_path = Path(out_path)
    axes = {name: {0: "num_patches"} for name in INPUTS}
    axes[OUTPUT] = {0: "num_tokens"}
    weight_bytes = sum(p.numel() * 4 for p in enc.parameters())
    if external_data is None:
        external_data = weight_bytes > EXTERNAL_THRESHOLD
    with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp:
        raw = Path(tmp) / out_path.name      # torch writes per-tensor external files past 2 GB: gather them
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(enc, (patches, grid, cos, sin), str(raw), input_names=list(INPUTS),
                              output_names=[OUTPUT], dynamic_axes=axes, opset_version=OPSET, dynamo=False)
        model = onnx.load(str(raw), load_external_data=True)
    files = [out_path]
    if external_data:
        data = out_path.with_name(out_path.name + ".data")
        onnx.save_model(model, str(out_path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data.name, size_threshold=1024)
        files.append(data)
    else:
        onnx.save_model(model, str(out_path))
    onnx.checker.check_model(str(out_path))
    log.info("exported the vision encoder to %s (opset %d, %.1f MB of weights%s)", out_path, OPSET,
             weight_bytes / 1e6, ", external data" if external_data else "")
    return files
