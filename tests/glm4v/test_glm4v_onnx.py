"""vision/encoder.onnx: onnx.checker clean, dynamic patches, onnxruntime == transformers' vision tower."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from glmtrt.models.glm4v.onnx_export import INPUTS, OUTPUT
from glmtrt.models.glm4v.positions import vision_host_inputs
from glmtrt.models.glm4v.preprocess import preprocess_image

RTOL = 1e-4     # float32 graph vs float32 transformers: max-abs <= 1e-4 x the largest |feature| (measured ~1e-6)


@pytest.fixture(scope="module")
def session(tiny_glm4v_converted):
    import onnxruntime as ort

    path = tiny_glm4v_converted / "vision" / "encoder.onnx"
    onnx.checker.check_model(str(path))
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_graph_contract(tiny_glm4v_converted):
    model = onnx.load(str(tiny_glm4v_converted / "vision" / "encoder.onnx"))
    names = [i.name for i in model.graph.input]
    assert names == list(INPUTS) and [o.name for o in model.graph.output] == [OUTPUT]
    for i in model.graph.input:
        assert i.type.tensor_type.shape.dim[0].dim_param == "num_patches"
    assert any(n.op_type == "GridSample" for n in model.graph.node)


@pytest.mark.parametrize("size", [(56, 56), (130, 90), (56, 300), (250, 120)])
def test_onnxruntime_matches_transformers(tiny_glm4v, session, size):
    from PIL import Image

    _, hf = tiny_glm4v
    img = Image.fromarray(np.random.default_rng(sum(size)).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    inp = preprocess_image(img)
    grid, cos, sin = vision_host_inputs(inp.grid_thw, 16)
    feeds = {"patches": inp.patches, "pos_grid": grid.numpy(), "rotary_cos": cos.numpy(), "rotary_sin": sin.numpy()}
    got = session.run([OUTPUT], feeds)[0]
    with torch.no_grad():
        want = hf.model.visual(torch.tensor(inp.patches), grid_thw=torch.tensor([inp.grid_thw])).pooler_output
    assert got.shape == (inp.num_tokens, 128)
    scale = float(np.abs(want.numpy()).max())
    assert scale > 0.1                                      # features of a meaningful size
    assert np.abs(got - want.numpy()).max() <= RTOL * scale


def test_external_data_export(tiny_glm4v_converted, tmp_path):
    """The path the real 3.6 GB tower takes: weights in one encoder.onnx.data file, graph still checks."""
    import onnxruntime as ort

    from glmtrt.models.glm4v.onnx_export import export_vision_onnx

    files = export_vision_onnx(tiny_glm4v_converted / "vision", tmp_path / "encoder.onnx", external_data=True)
    assert [f.name for f in files] == ["encoder.onnx", "encoder.onnx.data"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["encoder.onnx", "encoder.onnx.data"]
    assert files[1].stat().st_size > files[0].stat().st_size
    sess = ort.InferenceSession(str(files[0]), providers=["CPUExecutionProvider"])
    grid, cos, sin = vision_host_inputs((1, 2, 2), 16)
    out = sess.run([OUTPUT], {"patches": np.ones((4, 1176), np.float32), "pos_grid": grid.numpy(),
                              "rotary_cos": cos.numpy(), "rotary_sin": sin.numpy()})[0]
    assert out.shape == (1, 128) and np.isfinite(out).all()
