"""Pure multimodal request logic shared by the multimodal `preprocessing` and `tensorrt_llm_bls` models.

GLM-4.1V / AutoGLM-Phone-9B prompts (docs/INTERFACES.md section 7, "Multimodal Triton repository"):
prompt ids with one `<|image|>` per image between `<|begin_of_image|>` / `<|end_of_image|>`, images
decoded + smart_resize + patchify (glmtrt.models.glm4v.preprocess), the vision encoder's host inputs,
and the engine inputs of the TensorRT-LLM 1.2 backend: image tokens -> `vocab_size + k`, the prompt
table, per-token `prompt_table_extra_ids`, `mrope_rotary_cos_sin` and `mrope_position_deltas`
(glmtrt.models.glm4v.positions). Text-only requests get the same inputs (a 1-row zero table): the
engine needs the M-RoPE inputs on every request.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from glmtrt.triton.pymodels.common import RequestError

#: The GLM-4.1V chat template's image string (its `{"type": "image"}` part); also the placeholder a
#: plain (non-chat) `text_input` uses, once per image.
IMAGE_PLACEHOLDER = "<|begin_of_image|><|image|><|end_of_image|>"
MM_CONFIG_FILE = "multimodal.json"


@dataclass(frozen=True)
class MultimodalFacts:
    """What the multimodal python models need to know (written by `glmtrt repo` as multimodal.json)."""

    image_token_id: int
    image_start_token_id: int
    image_end_token_id: int
    patch_size: int
    merge_size: int
    temporal_patch_size: int
    vision_head_dim: int
    vision_theta: float
    vocab_size: int            # the engine's (padded) vocab: prompt-table ids start here
    hidden_size: int
    rotary_dim: int
    rope_theta: float
    mrope_section: tuple[int, ...]
    max_position_embeddings: int
    table_dtype: str           # "float32" | "float16" | "bfloat16" (the engine's dtype)
    max_images: int
    min_pixels: int
    max_pixels: int

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> "MultimodalFacts":
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        data["mrope_section"] = tuple(data["mrope_section"])
        return cls(**data)


# ---- prompt ids ---------------------------------------------------------------------------
def image_ids(facts: MultimodalFacts) -> list[int]:
    """The ids of one image slot before expansion: begin, one `<|image|>`, end."""
    return [facts.image_start_token_id, facts.image_token_id, facts.image_end_token_id]


def prompt_ids_with_images(tok, text: str, n_images: int, facts: MultimodalFacts, *, chat: bool,
                           messages: str | None, add_special_tokens: bool) -> list[int]:
    """Prompt ids holding one image slot per image (see module docstring and docs/INTERFACES.md).

    Chat (text-only requests too): the GLM-4.1V chat template (zai-org/GLM-4.1V-9B-Thinking
    chat_template, rendered with HF's trim_blocks / lstrip_blocks): `[gMASK]<sop>`, earlier turns as
    `<|role|>` "\\n" content (the tokenizer's GLM-4 format), the new user turn `<|user|>` "\\n", one
    `<|begin_of_image|><|image|><|end_of_image|>` per image part, the text, then the generation prompt
    `<|assistant|>` "\\n". Text between special tokens is tokenized as one segment, as HF tokenizes the
    rendered string. Plain: `text_input` split at IMAGE_PLACEHOLDER (one per image) or, with none, the
    images first.
    """
    from glmtrt.errors import GlmtrtError
    from glmtrt.triton.pymodels.textproc import parse_messages, prompt_ids

    slot = image_ids(facts)
    if n_images == 0 and not (chat or messages is not None):
        return prompt_ids(tok, text, chat=chat, messages=messages, add_special_tokens=add_special_tokens)
    if IMAGE_PLACEHOLDER in text and (chat or messages is not None):
        raise RequestError(f"text_input holds {IMAGE_PLACEHOLDER!r} with the chat template; the chat template "
                           "places the images itself (before the text of the last user turn)")
    if chat or messages is not None:
        history = parse_messages(messages) if messages is not None else []
        try:
            head = tok.build_chat_ids(history, add_generation_prompt=False) if history else list(tok.prefix_ids)
        except GlmtrtError as exc:
            raise RequestError(f"bad chat messages: {exc}") from exc
        if not text and not n_images:
            if not history:
                raise RequestError("text_input is empty and there are no messages: nothing to answer")
            turn = []
        elif n_images:
            turn = [tok.special_tokens["<|user|>"]] + tok.encode("\n") + slot * n_images + (tok.encode(text) if text else [])
        else:
            turn = [tok.special_tokens["<|user|>"]] + tok.encode("\n" + text)
        return head + turn + [tok.special_tokens["<|assistant|>"]] + tok.encode("\n")
    parts = text.split(IMAGE_PLACEHOLDER)
    found = len(parts) - 1
    if found not in (0, n_images):
        raise RequestError(f"text_input holds {found} image placeholder(s) {IMAGE_PLACEHOLDER!r} for {n_images} "
                           "image(s); use one per image, or none to put the images first")
    ids = list(tok.prefix_ids) if add_special_tokens else []
    if found == 0:
        return ids + slot * n_images + (tok.encode(text) if text else [])
    for k, part in enumerate(parts):
        ids += tok.encode(part) if part else []
        if k < n_images:
            ids += slot
    return ids


# ---- images -------------------------------------------------------------------------------
def decode_images(blobs: list[bytes], facts: MultimodalFacts) -> tuple[list, float]:
    """(ImageInputs per image, milliseconds spent) for the encoded image files of one request."""
    from glmtrt.errors import GlmtrtError
    from glmtrt.models.glm4v.preprocess import preprocess_image

    if len(blobs) > facts.max_images:
        raise RequestError(f"{len(blobs)} images in one request; this repository allows at most "
                           f"{facts.max_images} (glmtrt repo --max-images)")
    t0 = time.perf_counter()
    out = []
    for k, blob in enumerate(blobs):
        if not blob:
            raise RequestError(f"image {k} is empty")
        try:
            out.append(preprocess_image(bytes(blob), patch_size=facts.patch_size, merge_size=facts.merge_size,
                                        temporal_patch_size=facts.temporal_patch_size,
                                        min_pixels=facts.min_pixels, max_pixels=facts.max_pixels))
        except GlmtrtError as exc:
            raise RequestError(f"image {k}: {str(exc).splitlines()[0]}") from None
    return out, (time.perf_counter() - t0) * 1000.0


def image_hash(image) -> int:
    """A non-zero 63-bit id of one preprocessed image (its grid and pixels): `prompt_table_extra_ids`."""
    h = hashlib.sha256(np.asarray(image.grid_thw, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(image.patches).tobytes())
    return (int.from_bytes(h.digest()[:8], "little") & ((1 << 63) - 1)) or 1


def encoder_inputs(image, facts: MultimodalFacts) -> dict[str, np.ndarray]:
    """The `vision_encoder` inputs of one image (the vision/encoder.onnx contract)."""
    from glmtrt.models.glm4v.positions import vision_host_inputs

    grid, cos, sin = vision_host_inputs(image.grid_thw, facts.vision_head_dim, facts.vision_theta, facts.merge_size)
    return {"patches": np.ascontiguousarray(image.patches, dtype=np.float32),
            "pos_grid": grid.numpy().astype(np.float32), "rotary_cos": cos.numpy().astype(np.float32),
            "rotary_sin": sin.numpy().astype(np.float32)}


# ---- engine inputs ------------------------------------------------------------------------
def check_prompt_length(ids: list[int], images: list, facts: MultimodalFacts, max_input_len: int | None) -> int:
    """Length of the expanded prompt; RequestError past max_input_len (before any encoder work)."""
    n = len(ids) + sum(im.num_tokens - 1 for im in images)
    if max_input_len is not None and n > max_input_len:
        raise RequestError(f"prompt has {n} tokens ({sum(im.num_tokens for im in images)} of them image tokens), "
                           f"over max_input_len={max_input_len} of this model; send a smaller image or shorter text")
    return n


def engine_inputs(ids: list[int], images: list, embeds: list[np.ndarray], facts: MultimodalFacts) -> dict[str, np.ndarray]:
    """The tensorrt_llm inputs of one request (batch 1): input_ids (image tokens -> vocab_size + k),
    prompt_embedding_table [1, K, hidden] float32 (cast to the engine dtype by the caller),
    prompt_vocab_size, prompt_table_extra_ids [1, T] uint64, mrope_rotary_cos_sin, mrope_position_deltas."""
    from glmtrt.models.glm4v import positions as P

    grids = [im.grid_thw for im in images]
    try:
        full, types = P.expand_image_tokens(ids, grids, facts.image_token_id, facts.merge_size)
        positions, delta = P.rope_index(types, grids, facts.merge_size)
        table = P.mrope_table(positions, facts.rotary_dim, facts.rope_theta, facts.mrope_section,
                              facts.max_position_embeddings)
    except Exception as exc:  # GlmtrtError: placeholder / length problems of this request
        raise RequestError(str(exc).splitlines()[0]) from None
    hashes = [image_hash(im) for im in images]
    engine_ids, extra, k, run = [], [], 0, -1
    for pos, (tok, kind) in enumerate(zip(full, types)):
        if kind:
            if pos == 0 or not types[pos - 1]:
                run += 1
            engine_ids.append(facts.vocab_size + k)
            extra.append(hashes[run])
            k += 1
        else:
            engine_ids.append(tok)
            extra.append(0)
    if embeds:
        prompt_table = np.concatenate([np.asarray(e, dtype=np.float32) for e in embeds])
        if prompt_table.shape != (k, facts.hidden_size):
            raise RequestError(f"vision encoder returned {prompt_table.shape[0]} rows of width {prompt_table.shape[1]} "
                               f"for {k} image tokens (hidden {facts.hidden_size})")
    else:
        prompt_table = np.zeros((1, facts.hidden_size), dtype=np.float32)
    return {
        "input_ids": np.array([engine_ids], dtype=np.int32),
        "input_lengths": np.array([[len(engine_ids)]], dtype=np.int32),
        "prompt_embedding_table": prompt_table[None],
        "prompt_vocab_size": np.array([[prompt_table.shape[0]]], dtype=np.int32),
        "prompt_table_extra_ids": np.array([extra], dtype=np.uint64),
        "mrope_rotary_cos_sin": table.numpy().astype(np.float32)[None],
        "mrope_position_deltas": np.array([[delta]], dtype=np.int64),
    }


def image_report(images: list, decode_ms: float, encode_ms: float, prompt_tokens: int) -> dict:
    """The per-request numbers the BLS returns as response parameters (docs/INTERFACES.md)."""
    return {"image_decode_us": int(round(decode_ms * 1000)), "vision_encoder_us": int(round(encode_ms * 1000)),
            "image_tokens": int(sum(im.num_tokens for im in images)), "prompt_tokens": int(prompt_tokens),
            "image_notes": "; ".join(im.note for im in images if im.note)}
