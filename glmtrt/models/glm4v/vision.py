"""The GLM-4.1V vision tower for ONE image, in plain torch over host-computed position inputs.

This module is what `vision/encoder.onnx` is exported from and what the reference executor runs, so
the TensorRT vision engine, onnxruntime and the reference compute the same graph. It follows
transformers 5.x models/glm4v/modeling_glm4v.py `Glm4vVisionModel.forward` step by step:
  patch_embed (Conv3d with stride = kernel, i.e. a linear map of each flattened (C, T, P, P) patch)
  -> post_conv_layernorm (RMSNorm) -> + learned 24x24 position table resampled with bicubic
  grid_sample (align_corners False, border padding; `Glm4vVisionEmbeddings`) -> blocks
  (x += attn(norm1 x), x += mlp(norm2 x); full attention within the image, 2-D NeoX rotary with
  cos/sin = cat(h, w) twice, `apply_rotary_pos_emb_vision`; SwiGLU MLP of width out_hidden_size,
  `Glm4VisionMlp`) -> post_layernorm -> 2x2 downsample Conv2d over merge blocks (a linear map of
  the 4 consecutive patch rows) -> merger (Linear, LayerNorm, exact GELU, SwiGLU;
  `Glm4vVisionPatchMerger`).
Inputs: patches [N, patch_dim], pos_grid [N, 2], cos [N, head_dim], sin [N, head_dim]
(glmtrt.models.glm4v.positions.vision_host_inputs). Output: image_embeds [N/4, out_hidden_size].
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from glmtrt.errors import GlmtrtError

_P = "model.visual."


def _rms(x, w, eps):
    xf = x.float()
    return w * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def _rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class VisionEncoder(nn.Module):
    """One image's vision tower over host inputs (see module docstring)."""

    def __init__(self, vision: dict, weights: dict[str, torch.Tensor]):
        super().__init__()
        self.heads = int(vision["num_heads"])
        self.hidden = int(vision["hidden_size"])
        self.out = int(vision["out_hidden_size"])
        self.eps = float(vision["rms_norm_eps"])
        self.merge = int(vision["spatial_merge_size"])
        self.theta = float(vision.get("rope_theta", 10000.0))
        side = int(vision["image_size"]) // int(vision["patch_size"])

        def w(name):
            if _P + name not in weights:
                raise GlmtrtError(f"vision weights lack {_P + name}",
                                  expected="vision/vision.safetensors written by `glmtrt convert`")
            return nn.Parameter(weights[_P + name].float(), requires_grad=False)

        self.patch_w = nn.Parameter(w("patch_embed.proj.weight").reshape(self.hidden, -1), requires_grad=False)
        self.patch_b = w("patch_embed.proj.bias")
        self.post_conv = w("post_conv_layernorm.weight")
        table = w("embeddings.position_embedding.weight")
        self.pos_table = nn.Parameter(table.reshape(side, side, self.hidden).permute(2, 0, 1)[None].contiguous(),
                                      requires_grad=False)
        self.blocks = []
        depth = int(vision["depth"])
        bias = bool(vision.get("attention_bias", False))
        for b in range(depth):
            p = f"blocks.{b}."
            names = ("norm1.weight", "norm2.weight", "attn.qkv.weight", "attn.proj.weight",
                     "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight")
            block = nn.ParameterDict({n.replace(".", "_"): w(p + n) for n in names})
            if bias:
                block["attn_qkv_bias"] = w(p + "attn.qkv.bias")
            self.blocks.append(block)
        self.blocks = nn.ModuleList(self.blocks)
        self.post_ln = w("post_layernorm.weight")
        down = w("downsample.weight")                       # [O, H, m, m] over (i, j) of the block
        self.down_w = nn.Parameter(down.permute(0, 2, 3, 1).reshape(self.out, -1), requires_grad=False)
        self.down_b = w("downsample.bias")
        self.merger = nn.ParameterDict({n.replace(".", "_"): w("merger." + n) for n in (
            "proj.weight", "post_projection_norm.weight", "post_projection_norm.bias",
            "gate_proj.weight", "up_proj.weight", "down_proj.weight")})

    @classmethod
    def from_dir(cls, vision_dir: str | Path) -> "VisionEncoder":
        """Load vision/config.json + vision/vision.safetensors written by `glmtrt convert`."""
        from safetensors.torch import load_file

        vision_dir = Path(vision_dir)
        cfg_path, st = vision_dir / "config.json", vision_dir / "vision.safetensors"
        if not cfg_path.is_file() or not st.is_file():
            raise GlmtrtError(f"{vision_dir} lacks config.json or vision.safetensors",
                              expected="the vision/ part of a Glm4v conversion",
                              fix="convert the Glm4v checkpoint with `glmtrt convert`")
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        return cls(cfg["vision"], load_file(str(st))).eval()

    def _attention(self, blk, x, cos, sin):
        n = x.shape[0]
        qkv = nn.functional.linear(x, blk["attn_qkv_weight"], blk["attn_qkv_bias"] if "attn_qkv_bias" in blk else None)
        q, k, v = qkv.reshape(n, 3, self.heads, -1).permute(1, 2, 0, 3).unbind(0)   # [heads, N, d]
        c, s = cos[None], sin[None]
        q = q * c + _rotate_half(q) * s
        k = k * c + _rotate_half(k) * s
        scale = q.shape[-1] ** -0.5
        probs = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * scale, dim=-1)
        out = torch.matmul(probs, v).transpose(0, 1).reshape(n, -1)
        return nn.functional.linear(out, blk["attn_proj_weight"])

    def forward(self, patches, pos_grid, cos, sin):
        x = nn.functional.linear(patches, self.patch_w, self.patch_b)
        x = _rms(x, self.post_conv, self.eps)
        grid = pos_grid[None, :, None, :]
        pos = nn.functional.grid_sample(self.pos_table, grid, mode="bicubic", align_corners=False,
                                        padding_mode="border")                     # [1, H, N, 1]
        x = x + pos[0, :, :, 0].transpose(0, 1)
        for blk in self.blocks:
            x = x + self._attention(blk, _rms(x, blk["norm1_weight"], self.eps), cos, sin)
            h = _rms(x, blk["norm2_weight"], self.eps)
            act = nn.functional.silu(nn.functional.linear(h, blk["mlp_gate_proj_weight"]))
            x = x + nn.functional.linear(act * nn.functional.linear(h, blk["mlp_up_proj_weight"]),
                                         blk["mlp_down_proj_weight"])
        x = _rms(x, self.post_ln, self.eps)
        x = x.reshape(-1, self.merge * self.merge * self.hidden)
        x = nn.functional.linear(x, self.down_w, self.down_b)
        m = self.merger
        x = nn.functional.linear(x, m["proj_weight"])
        x = nn.functional.gelu(nn.functional.layer_norm(x, (self.out,), m["post_projection_norm_weight"],
                                                        m["post_projection_norm_bias"]))
        act = nn.functional.silu(nn.functional.linear(x, m["gate_proj_weight"]))
        return nn.functional.linear(act * nn.functional.linear(x, m["up_proj_weight"]), m["down_proj_weight"])


def encode_image(encoder: VisionEncoder, image_inputs):
    """Image features [tokens, out_hidden] of one preprocessed image (glmtrt.models.glm4v.preprocess)."""
    from glmtrt.models.glm4v.positions import vision_host_inputs

    grid, cos, sin = vision_host_inputs(image_inputs.grid_thw, encoder.hidden // encoder.heads, encoder.theta,
                                        encoder.merge)
    with torch.inference_mode():
        return encoder(torch.as_tensor(image_inputs.patches, dtype=torch.float32), grid, cos, sin)
