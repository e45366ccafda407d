"""Triton python model `vision_encoder` for CPU: the GLM-4.1V vision tower under onnxruntime.

NOT FOR PRODUCTION: the CPU stand-in of the TensorRT vision engine (on GPU `vision_encoder` is a
`tensorrt_plan` model on `<engine dir>/vision/encoder.plan`, built by `glmtrt build` from the same
ONNX file). Runs `vision/encoder.onnx` of the converted checkpoint (parameter `onnx_path`) with the
contract of docs/INTERFACES.md section 7: ONE image per request, inputs patches [N, patch_dim],
pos_grid [N, 2], rotary_cos / rotary_sin [N, head_dim] (float32), output image_embeds [N/4, hidden].
"""
from __future__ import annotations

import logging
import os

import numpy as np

from glmtrt.triton.pymodels import common

log = logging.getLogger(__name__)
INPUTS = ("patches", "pos_grid", "rotary_cos", "rotary_sin")


class TritonPythonModel:
    """onnxruntime session over vision/encoder.onnx."""

    def initialize(self, args):
        import onnxruntime as ort

        params = common.model_params(args)
        if "onnx_path" not in params:
            raise RuntimeError("vision_encoder (reference): parameter onnx_path is not set")
        path = common.repo_path(args, params["onnx_path"])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(params.get("cpu_threads", min(2, os.cpu_count() or 1)))
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.calls = 0
        log.warning("vision_encoder: CPU onnxruntime stand-in (not for production) on %s", path)

    def execute(self, requests):
        pb = common.pb()
        responses = []
        for request in requests:
            try:
                feed = {}
                for name in INPUTS:
                    arr = common.get_array(request, name)
                    if arr is None:
                        raise ValueError(f"input {name} is required")
                    feed[name] = np.ascontiguousarray(arr, dtype=np.float32)
                n = feed["patches"].shape[0]
                if n == 0 or n % 4 or any(feed[k].shape[0] != n for k in INPUTS):
                    raise ValueError(f"{n} patches (inputs of {[feed[k].shape[0] for k in INPUTS]} rows)"
                                     "; expected the same N > 0, a multiple of 4, in every input")
                (out,) = self.session.run(["image_embeds"], feed)
                self.calls += 1
                responses.append(pb.InferenceResponse(output_tensors=[pb.Tensor("image_embeds", out.astype(np.float32))]))
            except Exception as exc:  # a bad request: say why, keep serving
                responses.append(common.error_response(f"vision_encoder: {exc}"))
        return responses

    def finalize(self):
        log.info("vision_encoder: finalize after %d images", self.calls)
