"""Calibration as one shared layer: activation ranges captured layer by layer over the reference executor.

`LayerCalibrator.run` executes ONE decoder layer (float32, the reference executor's own
`decoder_layer`) on the calibration hidden states and records, for every linear, max|input| and
max|output| per channel - the `capture_activation_range` statistics of TensorRT-LLM's
chatglm/convert.py, which hooks every nn.Linear of the float model. The hidden states it returns
feed the next layer, so only one layer's weights plus the activations are ever in memory.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable

log = logging.getLogger(__name__)

#: linear weights (TRT-LLM chatglm names inside a layer) whose ranges are recorded
RECORDED = ("attention.qkv", "attention.dense", "mlp.fc", "mlp.proj")


@dataclass(frozen=True)
class CalibOptions:
    """Calibration settings (recorded in the checkpoint manifest)."""

    num_samples: int = 64
    seq_len: int = 512
    seed: int = 0
    batch_size: int = 4
    device: str = "cpu"
    calib_data: str | None = None
    calib_dataset: str | None = None


class LayerCalibrator:
    """Runs single decoder layers of a TensorRT-LLM chatglm config with range recorders."""

    def __init__(self, trtllm_config: dict, device: str = "cpu", keep_inputs: int = 0):
        import torch

        self.config = dict(trtllm_config, num_hidden_layers=1, quantization={}, mapping={"tp_size": 1})
        self.device = torch.device(device)
        self.keep_inputs = keep_inputs           # input rows kept per linear (AWQ scale search)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            from glmtrt.errors import GlmtrtError
            raise GlmtrtError("--device cuda but no CUDA device is visible", expected="a GPU, or --device cpu")

    def embed(self, ids, embedding) -> list:
        """Float32 hidden states per batch of calibration ids [N, T]."""
        import torch

        emb = embedding.to(self.device, torch.float32)
        return [torch.nn.functional.embedding(b.to(self.device), emb) for b in ids]

    def run(self, layer_weights: dict, hidden: Iterable) -> tuple[list, dict]:
        """(next hidden states, {(linear, "x"|"y"): per-channel max|.|, ("attention.kv", "amax"):
        max|K|, |V| of the cached post-rotary K and V}) of one float layer.

        layer_weights: the layer's TRT-LLM tensors (names relative to the layer, full TP=1 layout).
        """
        import torch

        from glmtrt.reference.model import ReferenceModel
        from glmtrt.reference.qlinear import Recorder

        stats: dict = {}
        h_size = int(self.config["hidden_size"])
        weights = {"transformer.vocab_embedding.weight": torch.zeros(1, h_size),
                   "transformer.ln_f.weight": torch.ones(h_size)}
        for rel, t in layer_weights.items():
            lin = rel.rsplit(".", 1)[0]
            v = Recorder(t, stats, lin, self.keep_inputs) if rel.endswith(".weight") and lin in RECORDED else t
            weights[f"transformer.layers.0.{rel}"] = v
        model = ReferenceModel(self.config, weights, device=self.device, dtype="float32")
        layer = model.layers[0]
        out = []
        with torch.inference_mode():
            for h in hidden:
                positions, cos, sin = model.rotary(0, h.shape[1])
                nxt, (k, v) = model.decoder_layer(layer, h, cos, sin, None, positions)
                out.append(nxt)
                # what the KV cache holds: K after rotary and V (FP8 KV-cache scale, glmtrt.quant.fp8)
                kv_amax = torch.maximum(k.abs().amax(), v.abs().amax()).float()
                prev = stats.get(("attention.kv", "amax"))
                stats[("attention.kv", "amax")] = kv_amax if prev is None else torch.maximum(prev, kv_amax)
        return out, {k: v.cpu() if hasattr(v, "cpu") else v for k, v in stats.items()}
