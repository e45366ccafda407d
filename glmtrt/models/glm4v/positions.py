"""GLM-4.1V prompt layout and positions: placeholder expansion, 3-D M-RoPE positions, deltas, the
engine's `mrope_rotary_cos_sin` table and the vision tower's host inputs. Pure torch, no model.

Sources (transformers 5.x models/glm4v/):
- processing_glm4v.py `replace_image_token`: each `<|image|>` becomes t*h*w / merge^2 image tokens;
  mm_token_type_ids are 1 on image tokens.
- modeling_glm4v.py `Glm4vModel.get_rope_index` / `get_vision_position_ids`: text runs get arange
  on all three axes; an image run at offset p gets (p + t, p + h_i, p + w_i) over its merged grid
  (row-major), and the offset then advances by max(h, w) / merge; rope_deltas = max(pos) + 1 - len;
  decode positions are cache position + delta on all three axes (`compute_3d_position_ids`).
- `Glm4vTextRotaryEmbedding`: inv_freq over rotary_dim = head_dim * 0.5; slot j of the rotary_dim/2
  frequencies takes axis (section index % 3) of mrope_section.
- vision: transformers/vision_utils.py `get_vision_position_ids` (h, w per patch, merge-block-major),
  `Glm4vVisionRotaryEmbedding` (inv_freq over head_dim/2, cos = cat(h, w) twice),
  `Glm4vVisionEmbeddings.forward` (grid_sample coordinates ((i + 0.5) / size) * 2 - 1).
Engine layout of `mrope_rotary_cos_sin` (TensorRT-LLM 1.2.x tensorrt_llm/runtime/multimodal_model_runner.py
and tools/multimodal_builder.py, Qwen2-VL branch): float32 [max_position_embeddings * rotary_dim],
per position rotary_dim/2 (cos, sin) pairs, one per frequency slot; rows past the prompt use position 0.
"""
from __future__ import annotations

import itertools
from typing import Sequence

import torch

from glmtrt.errors import GlmtrtError


def expand_image_tokens(ids: Sequence[int], grids: Sequence[Sequence[int]], image_token_id: int,
                        merge: int = 2) -> tuple[list[int], list[int]]:
    """Replace the k-th single image token with t*h*w/merge^2 copies; returns (ids, mm_token_type_ids)."""
    ids = [int(i) for i in ids]
    n_slots = sum(1 for i in ids if i == image_token_id)
    if n_slots != len(grids):
        raise GlmtrtError(f"the prompt has {n_slots} image placeholder(s) for {len(grids)} image(s)",
                          expected="one <|image|> token per image (between <|begin_of_image|> and <|end_of_image|>)")
    out, types, k = [], [], 0
    for i in ids:
        if i == image_token_id:
            t, h, w = grids[k]
            n = t * h * w // (merge * merge)
            out += [i] * n
            types += [1] * n
            k += 1
        else:
            out.append(i)
            types.append(0)
    return out, types


def rope_index(token_types: Sequence[int], grids: Sequence[Sequence[int]], merge: int = 2):
    """(position_ids LongTensor [3, T], delta int) of one prompt (get_rope_index, batch 1, images only)."""
    chunks, pos, it = [], 0, iter(grids)
    for kind, group in itertools.groupby(token_types):
        n = len(list(group))
        if kind == 0:
            chunks.append(torch.arange(n).view(1, -1).expand(3, -1) + pos)
            pos += n
            continue
        grid = next(it, None)
        if grid is None:
            raise GlmtrtError("more image-token runs than images", expected="one grid per image")
        t, h, w = (int(v) for v in grid)
        gt, gh, gw = t, h // merge, w // merge
        if gt * gh * gw != n:
            raise GlmtrtError(f"an image-token run of {n} tokens for an image grid {(t, h, w)}",
                              expected=f"{gt * gh * gw} tokens (images separated by text tokens)")
        chunks.append(_vision_positions(pos, gt, gh, gw))
        pos += max(h, w) // merge
    positions = torch.cat(chunks, dim=1) if chunks else torch.zeros(3, 0, dtype=torch.long)
    delta = int(positions.max()) + 1 - positions.shape[1] if positions.numel() else 0
    return positions.long(), delta


def _vision_positions(start: int, gt: int, gh: int, gw: int) -> torch.Tensor:
    t, h, w = torch.meshgrid(torch.arange(gt), torch.arange(gh), torch.arange(gw), indexing="ij")
    return torch.stack([t, h, w]).reshape(3, -1) + start


def text_inv_freq(rotary_dim: int, theta: float) -> torch.Tensor:
    """inv_freq[j] = theta^(-2j/rotary_dim), float32 as Glm4vTextRotaryEmbedding computes it."""
    return 1.0 / (theta ** (torch.arange(0, rotary_dim, 2, dtype=torch.float) / rotary_dim))


def mrope_cos_sin(positions: torch.Tensor, rotary_dim: int, theta: float, section: Sequence[int]):
    """(cos, sin) float32 [T, rotary_dim/2] per frequency slot for positions [3, T] (section per slot)."""
    if sum(section) != rotary_dim // 2:
        raise GlmtrtError(f"mrope_section {list(section)}", expected=f"sections summing to {rotary_dim // 2}")
    freqs = positions.float()[..., None] * text_inv_freq(rotary_dim, theta)      # [3, T, slots]
    axis = torch.cat([torch.full((s,), i % 3) for i, s in enumerate(section)])   # slot -> axis
    picked = freqs.gather(0, axis.view(1, 1, -1).expand(1, freqs.shape[1], -1))[0]
    return picked.cos(), picked.sin()


def mrope_table(positions: torch.Tensor, rotary_dim: int, theta: float, section: Sequence[int],
                max_positions: int) -> torch.Tensor:
    """The engine input `mrope_rotary_cos_sin` of one request: float32 [max_positions * rotary_dim]."""
    t = positions.shape[1]
    if t > max_positions:
        raise GlmtrtError(f"prompt of {t} positions", expected=f"at most max_position_embeddings = {max_positions}")
    padded = torch.zeros(3, max_positions, dtype=torch.long)
    padded[:, :t] = positions
    cos, sin = mrope_cos_sin(padded, rotary_dim, theta, section)
    return torch.stack([cos, sin], dim=-1).reshape(-1)


def vision_patch_positions(grid_thw: Sequence[int], merge: int = 2) -> torch.Tensor:
    """(h, w) of every patch, merge-block-major like the patch rows: LongTensor [t*h*w, 2]."""
    t, h, w = (int(v) for v in grid_thw)
    hh, ww = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    shape = (h // merge, merge, w // merge, merge)
    hh = hh.reshape(shape).transpose(1, 2).flatten()
    ww = ww.reshape(shape).transpose(1, 2).flatten()
    return torch.stack([hh, ww], dim=-1).repeat(t, 1)


def vision_host_inputs(grid_thw: Sequence[int], head_dim: int, theta: float = 10000.0, merge: int = 2):
    """Host-computed encoder inputs of one image: (pos_grid [N, 2] (x=w, y=h in [-1, 1]), cos, sin [N, head_dim])."""
    _, h, w = (int(v) for v in grid_thw)
    pos = vision_patch_positions(grid_thw, merge)
    spatial = head_dim // 2
    inv = 1.0 / (theta ** (torch.arange(0, spatial, 2, dtype=torch.float) / spatial))
    freqs = pos.float()[..., None] * inv                                  # [N, 2, head_dim/4]
    f = torch.cat([freqs[:, 0], freqs[:, 1]], dim=-1)
    f = torch.cat([f, f], dim=-1)
    grid = torch.stack([((pos[:, 1].float() + 0.5) / w) * 2 - 1, ((pos[:, 0].float() + 0.5) / h) * 2 - 1], dim=-1)
    return grid, f.cos(), f.sin()
