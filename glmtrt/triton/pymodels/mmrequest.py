"""One multimodal request inside a Triton python model: images in, `tensorrt_llm` inputs out.

Used by the multimodal `preprocessing` model (ensemble path) and by `tensorrt_llm_bls`: read the
`images` (IMAGES) input, build the prompt with image slots (mmproc), decode the images, call the
`vision_encoder` model once per image (BLS) and build the engine's prompt-table / M-RoPE inputs.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from glmtrt.triton.pymodels import common, mmproc
from glmtrt.triton.pymodels.common import RequestError

log = logging.getLogger(__name__)
VISION_MODEL = "vision_encoder"


@dataclass
class MultimodalInputs:
    """Prepared text (textproc.Prepared), the engine tensors and the per-request report."""

    prepared: object
    engine: dict[str, np.ndarray]
    report: dict


def read_images(request, name: str) -> list[bytes]:
    """The encoded image files of a request (TYPE_STRING [1, n] or [n]); [] when absent."""
    arr = common.get_array(request, name)
    if arr is None:
        return []
    return [bytes(x) if isinstance(x, (bytes, bytearray)) else str(x).encode("latin-1") for x in arr.reshape(-1)]


def encode_images(images: list, facts: mmproc.MultimodalFacts) -> tuple[list[np.ndarray], float]:
    """image_embeds per image from the `vision_encoder` model, and the milliseconds spent."""
    pb = common.pb()
    t0 = time.perf_counter()
    out = []
    for k, image in enumerate(images):
        inputs = [pb.Tensor(n, v) for n, v in mmproc.encoder_inputs(image, facts).items()]
        resp = pb.InferenceRequest(model_name=VISION_MODEL, inputs=inputs,
                                   requested_output_names=["image_embeds"]).exec()
        if resp.has_error():
            raise RequestError(f"vision_encoder failed on image {k}: {resp.error().message()}")
        out.append(pb.get_output_tensor_by_name(resp, "image_embeds").as_numpy())
    return out, (time.perf_counter() - t0) * 1000.0


def prepare_request(request, tok, facts: mmproc.MultimodalFacts, *, names: dict[str, str], images_name: str,
                    add_special_tokens: bool, max_input_len: int | None) -> MultimodalInputs:
    """Everything the engine needs for one (image or text-only) request; RequestError on bad input."""
    from glmtrt.triton.pymodels.preprocessing import read_request

    blobs = read_images(request, images_name)
    images, decode_ms = mmproc.decode_images(blobs, facts)

    def builder(tok_, text, *, chat, messages, add_special_tokens):
        return mmproc.prompt_ids_with_images(tok_, text, len(images), facts, chat=chat, messages=messages,
                                             add_special_tokens=add_special_tokens)

    p = read_request(request, tok, add_special_tokens=add_special_tokens, max_input_len=None, names=names,
                     prompt_builder=builder)
    n = mmproc.check_prompt_length(p.input_ids, images, facts, max_input_len)
    embeds, encode_ms = encode_images(images, facts) if images else ([], 0.0)
    engine = mmproc.engine_inputs(p.input_ids, images, embeds, facts)
    report = mmproc.image_report(images, decode_ms, encode_ms, n)
    if images:
        log.info("multimodal request: %d image(s), %d image tokens, %d prompt tokens, decode %.1f ms, "
                 "vision_encoder %.1f ms%s", len(images), report["image_tokens"], n, decode_ms, encode_ms,
                 f"; {report['image_notes']}" if report["image_notes"] else "")
    return MultimodalInputs(p, engine, report)


def table_tensor(name: str, table: np.ndarray, dtype: str):
    """The prompt table as a pb.Tensor in the engine's dtype (bfloat16 through torch / DLPack)."""
    pb = common.pb()
    if dtype == "float32":
        return pb.Tensor(name, table.astype(np.float32))
    if dtype == "float16":
        return pb.Tensor(name, table.astype(np.float16))
    import torch

    return pb.Tensor.from_dlpack(name, torch.utils.dlpack.to_dlpack(torch.from_numpy(table).to(torch.bfloat16)))
