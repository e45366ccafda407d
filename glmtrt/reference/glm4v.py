"""Glm4vReference: what our GLM-4.1V engine computes, in plain torch (CPU or CUDA).

The decoder follows our engine class (glmtrt/models/glm4v/engine/model.py) over the llm/ checkpoint:
- prompt-tuning embedding (TensorRT-LLM layers/embedding.py `PromptTuningEmbedding`): ids >= vocab_size
  read row (id - vocab_size) of the prompt table (the image features), others the vocab embedding;
- layer (Gemma2-style sandwich, transformers `Glm4vTextDecoderLayer`): x += post_attention_layernorm(
  attn(input_layernorm(x))); x += post_feedforward_layernorm(mlp(pre_feedforward_layernorm(x)));
- attention: fused qkv (+bias), GQA, causal by cache index, scale 1/sqrt(head_size); NeoX
  (rotate-half) M-RoPE on the first rotary_dim dims of the q/k rows that convert permuted
  (glmtrt.models.glm4v.rotary), cos/sin per slot from the 3-D positions in the context phase and
  position = cache index + rope delta on all axes in the generation phase (the engine's
  mrope_rotary_cos_sin / mrope_position_deltas inputs);
- swiglu MLP ([up; gate] fc), RMSNorm everywhere, ln_f, lm_head, float32 logits.
Images go through glmtrt.models.glm4v.preprocess + vision.VisionEncoder (the graph of vision/encoder.onnx).
Precision: dtype None = float32 math; "auto" = the checkpoint dtype for GEMMs and residuals with
float32 norm statistics, rotary and softmax (like glmtrt.reference.model.ReferenceModel).
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from glmtrt.errors import GlmtrtError
from glmtrt.reference import sampling
from glmtrt.reference.model import ReferenceModel
from glmtrt.reference.weights import Geometry, _torch_dtype, load_merged_weights, read_checkpoint_config

#: every matmul pads small row counts like ReferenceModel, so a row's result does not depend on the batch
_linear = ReferenceModel._linear

log = logging.getLogger(__name__)

_LAYER = ("input_layernorm.weight", "attention.qkv.weight", "attention.qkv.bias", "attention.dense.weight",
          "post_attention_layernorm.weight", "pre_feedforward_layernorm.weight", "mlp.fc.weight",
          "mlp.proj.weight", "post_feedforward_layernorm.weight")


@dataclass(frozen=True)
class MultimodalPrompt:
    """Engine inputs of one request: ids (image tokens -> vocab_size + k), prompt table, 3-D positions."""

    input_ids: list[int]
    prompt_table: object          # float tensor [image tokens, hidden] or None
    positions: object             # LongTensor [3, T]
    rope_delta: int
    grids: tuple[tuple[int, int, int], ...]
    notes: tuple[str, ...]        # resize messages, one per resized image


def apply_rope_neox(x, cos, sin, rotary_dim: int):
    """Rotate-half rotary on the first `rotary_dim` dims of x [..., T, D]; cos/sin [T, rotary_dim/2]."""
    import torch

    half = rotary_dim // 2
    rot = x[..., :rotary_dim].float()
    a, b = rot[..., :half], rot[..., half:]
    out = torch.cat((a * cos - b * sin, b * cos + a * sin), dim=-1)
    return torch.cat((out.to(x.dtype), x[..., rotary_dim:]), dim=-1)


class Glm4vReference:
    """CPU/CUDA executor of a glmtrt Glm4v conversion (llm/ + vision/), see module docstring."""

    def __init__(self, config: dict, weights: dict, vision_dir: Path | None, device="cpu", dtype=None):
        import torch

        from glmtrt.models.glm4v.positions import text_inv_freq

        self.config = dict(config)
        self.geometry = geo = Geometry.from_config(config)
        self.vocab_size = geo.vocab_size
        self.device = torch.device(device)
        self.dtype = _torch_dtype(config.get("dtype", "float32") if dtype == "auto" else dtype) or torch.float32
        self.eps = float(config.get("norm_epsilon", 1e-5))
        self.rotary_dim = int(config.get("rotary_embedding_dim") or geo.head_size * float(config["rotary_pct"]))
        self.section = tuple(int(s) for s in config["mrope_section"])
        self.theta = float(config.get("rotary_base", 10000.0))
        self.max_positions = int(config.get("max_position_embeddings", 32768))
        self.image_token_id = int(config.get("image_token_id", 151343))
        self.inv_freq = text_inv_freq(self.rotary_dim, self.theta).to(self.device)

        def w(name):
            if name not in weights:
                raise GlmtrtError(f"llm/ checkpoint lacks tensor {name!r}", expected="a Glm4v conversion by glmtrt")
            return weights[name].to(device=self.device, dtype=self.dtype)

        self.embedding = w("transformer.vocab_embedding.weight")
        self.layers = [{k: w(f"transformer.layers.{i}.{k}") for k in _LAYER} for i in range(geo.num_layers)]
        self.ln_f = w("transformer.ln_f.weight")
        self.lm_head = w("lm_head.weight")
        self.vision = None
        self.vision_cfg = None
        if vision_dir is not None:
            from glmtrt.models.glm4v.vision import VisionEncoder

            self.vision = VisionEncoder.from_dir(vision_dir).to(self.device)
            self.vision_cfg = json.loads((Path(vision_dir) / "config.json").read_text(encoding="utf-8"))

    @classmethod
    def from_checkpoint(cls, ckpt_dir: str | Path, device="cpu", dtype=None) -> "Glm4vReference":
        """Load `<ckpt_dir>/llm` (any tp_size, weight-only emulated) and `<ckpt_dir>/vision` when present."""
        ckpt_dir = Path(ckpt_dir)
        llm = ckpt_dir / "llm"
        if not llm.is_dir():
            raise GlmtrtError(f"{ckpt_dir} has no llm/ directory", expected="the output of `glmtrt convert` on a "
                              "Glm4vForConditionalGeneration checkpoint")
        if dtype == "auto":
            dtype = read_checkpoint_config(llm, ("mrope",)).get("dtype", "float32")
        cfg, weights = load_merged_weights(llm, dtype=_torch_dtype(dtype) or "float32", position_types=("mrope",))
        vision = ckpt_dir / "vision"
        model = cls(cfg, weights, vision if (vision / "vision.safetensors").is_file() else None, device, dtype)
        log.info("glm4v reference: %d layers, compute %s on %s, vision %s", model.geometry.num_layers,
                 str(model.dtype).replace("torch.", ""), model.device, "yes" if model.vision else "no")
        return model

    # ------------------------------------------------------------------ prompt preparation

    def prepare(self, ids: Sequence[int], images: Sequence = (), *, min_pixels: int | None = None,
                max_pixels: int | None = None, max_images: int | None = None) -> MultimodalPrompt:
        """Engine inputs for `ids` holding one image token per image in `images` (paths, bytes, PIL)."""
        import torch

        from glmtrt.models.glm4v import positions as P
        from glmtrt.models.glm4v.preprocess import MAX_PIXELS, MIN_PIXELS, preprocess_image
        from glmtrt.models.glm4v.vision import encode_image

        if max_images is not None and len(images) > max_images:
            raise GlmtrtError(f"{len(images)} images in one request", expected=f"at most {max_images} "
                              "(the engine's prompt-table size / max_images)", fix="send fewer images")
        if images and self.vision is None:
            raise GlmtrtError("this conversion has no vision/ part", expected="vision/vision.safetensors",
                              fix="re-run `glmtrt convert` on the full Glm4v checkpoint")
        feats, grids, notes = [], [], []
        for img in images:
            v = self.vision_cfg["vision"]
            inp = preprocess_image(img, patch_size=v["patch_size"], merge_size=v["spatial_merge_size"],
                                   temporal_patch_size=v["temporal_patch_size"],
                                   min_pixels=min_pixels or MIN_PIXELS, max_pixels=max_pixels or MAX_PIXELS)
            if inp.note:
                log.warning("%s", inp.note)
                notes.append(inp.note)
            grids.append(inp.grid_thw)
            feats.append(encode_image(self.vision, inp))
        full, types = P.expand_image_tokens(ids, grids, self.image_token_id)
        positions, delta = P.rope_index(types, grids)
        engine_ids, k = [], 0
        for tok, kind in zip(full, types):
            engine_ids.append(self.vocab_size + k if kind else tok)
            k += kind
        table = torch.cat(feats).to(self.dtype) if feats else None
        return MultimodalPrompt(engine_ids, table, positions, delta, tuple(grids), tuple(notes))

    # ------------------------------------------------------------------ numerics

    def _norm(self, x, weight):
        import torch

        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * weight

    def _qkv(self, layer, x, cos, sin):
        """q [B, heads, T, D], k and v [B, kv_heads, T, D] after the NeoX M-RoPE."""
        geo = self.geometry
        b, t, _ = x.shape
        hd, nh, nkv = geo.head_size, geo.num_heads, geo.num_kv_heads
        qkv = _linear(x, layer["attention.qkv.weight"], layer["attention.qkv.bias"])
        q, k, v = qkv.split([nh * hd, nkv * hd, nkv * hd], dim=-1)
        q = apply_rope_neox(q.view(b, t, nh, hd).transpose(1, 2), cos, sin, self.rotary_dim)
        k = apply_rope_neox(k.view(b, t, nkv, hd).transpose(1, 2), cos, sin, self.rotary_dim)
        return q, k, v.view(b, t, nkv, hd).transpose(1, 2)

    def _sdpa(self, q, k, v, start: int | None):
        """GQA attention of q [b, nh, t, D] over k, v [b, nkv, s, D] (causal from `start`; None = no mask)."""
        import torch

        b, nh, t, hd = q.shape
        nkv = k.shape[1]
        qg = q.reshape(b, nkv, nh // nkv, t, hd).float()
        scores = torch.matmul(qg, k.float().unsqueeze(2).transpose(-1, -2)) / math.sqrt(hd)
        if start is not None:
            idx = torch.arange(start, start + t, device=q.device)
            scores = scores.masked_fill(torch.arange(k.shape[2], device=q.device)[None, :] > idx[:, None], float("-inf"))
        probs = torch.softmax(scores, dim=-1).to(v.dtype)
        return torch.matmul(probs, v.unsqueeze(2)).reshape(b, nh, t, hd).transpose(1, 2).reshape(b, t, nh * hd)

    def _stack(self, ids, prompt_table, cos, sin, attend):
        """Embedding (+ prompt table), the sandwich-norm layers around `attend(i, layer, normed, cos, sin)`,
        ln_f and lm_head: float32 logits [B, T, V]."""
        import torch

        n_table = 0 if prompt_table is None else int(prompt_table.shape[0])
        if int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size + n_table:
            raise GlmtrtError(f"token id out of range [{int(ids.min())}, {int(ids.max())}]",
                              expected=f"ids < vocab_size {self.vocab_size} + prompt table rows {n_table}")
        is_table = ids >= self.vocab_size
        h = torch.nn.functional.embedding(ids.clamp(max=self.vocab_size - 1), self.embedding)
        if is_table.any():
            h[is_table] = prompt_table.to(device=self.device, dtype=self.dtype)[ids[is_table] - self.vocab_size]
        for i, layer in enumerate(self.layers):
            attn = attend(i, layer, self._norm(h, layer["input_layernorm.weight"]), cos, sin)
            h = h + self._norm(_linear(attn, layer["attention.dense.weight"], None), layer["post_attention_layernorm.weight"])
            x = self._norm(h, layer["pre_feedforward_layernorm.weight"])
            value, gate = _linear(x, layer["mlp.fc.weight"], None).chunk(2, dim=-1)
            mlp = _linear(torch.nn.functional.silu(gate) * value, layer["mlp.proj.weight"], None)
            h = h + self._norm(mlp, layer["post_feedforward_layernorm.weight"])
        return _linear(self._norm(h, self.ln_f), self.lm_head, None).float()

    def forward(self, input_ids, past=None, prompt_table=None, positions=None, rope_delta: int = 0):
        """Logits float32 [B, T, V] and the new past.

        positions: LongTensor [3, T] (context phase of an image prompt) or None = (cache index +
        rope_delta) on all three axes (text prompts, and every generation step).
        """
        import torch

        from glmtrt.models.glm4v.positions import mrope_cos_sin

        with torch.inference_mode():
            ids = torch.as_tensor(input_ids, dtype=torch.long, device=self.device)
            if ids.dim() != 2 or ids.shape[1] == 0:
                raise GlmtrtError(f"input_ids of shape {tuple(ids.shape)}", expected="[batch, tokens>=1]")
            start = 0 if past is None else past[0][0].shape[2]
            t = ids.shape[1]
            if positions is None:
                positions = (torch.arange(start, start + t) + int(rope_delta)).view(1, -1).expand(3, -1)
            cos, sin = (c.to(self.device) for c in mrope_cos_sin(positions, self.rotary_dim, self.theta, self.section))
            new_past = []

            def attend(i, layer, normed, cos, sin):
                q, k, v = self._qkv(layer, normed, cos, sin)
                if past is not None:
                    k, v = torch.cat((past[i][0], k), dim=2), torch.cat((past[i][1], v), dim=2)
                new_past.append((k, v))
                return self._sdpa(q, k, v, start)

            logits = self._stack(ids, prompt_table, cos, sin, attend)
        return logits, tuple(new_past)

    # ------------------------------------------------------------------ in-flight batching (the engine loop)

    def new_cache(self, capacity: int):
        """An empty KV cache for one sequence of up to `capacity` tokens (glmtrt.reference.model.KVCache)."""
        from glmtrt.reference.model import KVCache

        geo = self.geometry
        cache = KVCache(geo.num_layers, geo.num_kv_heads, capacity, geo.head_size, self.dtype, self.device)
        cache.rope_delta = 0
        return cache

    def prefill(self, input_ids, cache, prompt_table=None, mrope_rotary_cos_sin=None, rope_delta: int = 0):
        """Context phase of one prompt into an empty `cache`, as the engine runs it: rotary from the
        request's `mrope_rotary_cos_sin` table (per position rotary_dim/2 (cos, sin) pairs; None = text
        positions), `rope_delta` kept in the cache for the generation phase. Logits float32 [T, V]."""
        import torch

        from glmtrt.models.glm4v.positions import mrope_cos_sin

        with torch.inference_mode():
            ids = torch.as_tensor([list(input_ids)], dtype=torch.long, device=self.device)
            t = ids.shape[1]
            if cache.length != 0 or t > cache.capacity:
                raise GlmtrtError(f"prefill of {t} tokens into a cache holding {cache.length}/{cache.capacity}",
                                  expected="an empty cache with room for the prompt")
            if mrope_rotary_cos_sin is not None:
                tbl = torch.as_tensor(mrope_rotary_cos_sin, dtype=torch.float32).reshape(-1, self.rotary_dim // 2, 2)
                if tbl.shape[0] < t:
                    raise GlmtrtError(f"mrope_rotary_cos_sin covers {tbl.shape[0]} positions for a {t}-token prompt",
                                      expected=f"max_position_embeddings x rotary_dim ({self.rotary_dim}) floats")
                cos, sin = tbl[:t, :, 0].to(self.device), tbl[:t, :, 1].to(self.device)
            else:
                cos, sin = (c.to(self.device) for c in mrope_cos_sin(
                    torch.arange(t).view(1, -1).expand(3, -1), self.rotary_dim, self.theta, self.section))

            def attend(i, layer, normed, cos, sin):
                q, k, v = self._qkv(layer, normed, cos, sin)
                cache.k[i, :, :t], cache.v[i, :, :t] = k[0], v[0]
                return self._sdpa(q, k, v, 0)

            table = None if prompt_table is None else torch.as_tensor(prompt_table)
            logits = self._stack(ids, table, cos, sin, attend)
            cache.length, cache.rope_delta = t, int(rope_delta)
        return logits[0]

    def decode(self, tokens, caches):
        """One generation step of several sequences together (position = cache length + rope delta on all
        three axes); each row equals decoding that sequence alone. Logits float32 [B, V]."""
        import torch

        from glmtrt.models.glm4v.positions import mrope_cos_sin

        with torch.inference_mode():
            ids = torch.as_tensor([[int(t)] for t in tokens], dtype=torch.long, device=self.device)
            lengths = [c.length for c in caches]
            if any(n >= c.capacity for n, c in zip(lengths, caches)):
                raise GlmtrtError("a sequence outgrew its KV cache", expected="prompt + output within capacity")
            pos = torch.tensor([n + c.rope_delta for n, c in zip(lengths, caches)]).view(1, -1).expand(3, -1)
            cos, sin = (c[:, None, None, :].to(self.device) for c in
                        mrope_cos_sin(pos, self.rotary_dim, self.theta, self.section))

            def attend(i, layer, normed, cos, sin):
                q, k, v = self._qkv(layer, normed, cos, sin)
                outs = []
                for b, (n, c) in enumerate(zip(lengths, caches)):
                    c.k[i, :, n], c.v[i, :, n] = k[b, :, 0], v[b, :, 0]
                    outs.append(self._sdpa(q[b:b + 1], c.k[i, None, :, :n + 1], c.v[i, None, :, :n + 1], None))
                return torch.cat(outs)

            logits = self._stack(ids, None, cos, sin, attend)
            for c in caches:
                c.length += 1
        return logits[:, -1]

    def prompt_forward(self, prompt: MultimodalPrompt):
        """Context-phase logits [1, T, V] and past of a prepared prompt."""
        return self.forward([prompt.input_ids], None, prompt.prompt_table,
                            prompt.positions if prompt.grids else None)

    def generate(self, prompt: MultimodalPrompt | Sequence[int], max_new_tokens: int, end_id: int | None,
                 stop_ids=(), temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                 seed: int | None = None) -> Iterator[int]:
        """Yield new token ids (batch 1, KV cache; greedy when temperature == 0 or top_k == 1), like
        ReferenceModel.generate: end_id is not yielded, a stop id is yielded and ends generation."""
        if not isinstance(prompt, MultimodalPrompt):
            prompt = self.prepare(prompt)
        if max_new_tokens < 0:
            raise GlmtrtError(f"max_new_tokens={max_new_tokens}", expected=">= 0")
        sampling.validate_sampling(temperature, top_k, top_p)
        gen = None if sampling.is_greedy(temperature, top_k) else sampling.make_generator(seed, self.device)
        return self._generate(prompt, max_new_tokens, -1 if end_id is None else int(end_id),
                              {int(s) for s in stop_ids}, temperature, top_k, top_p, gen)

    def _generate(self, prompt, max_new_tokens, end_id, stop, temperature, top_k, top_p, gen):
        """Through the engine step interface (prefill with the request's M-RoPE table, then decode), the
        path the CPU stand-in serves."""
        from glmtrt.models.glm4v.positions import mrope_table

        cache = self.new_cache(len(prompt.input_ids) + max_new_tokens)
        table = None
        if prompt.grids:
            table = mrope_table(prompt.positions, self.rotary_dim, self.theta, self.section, self.max_positions).numpy()
        first = lambda: self.prefill(prompt.input_ids, cache, prompt.prompt_table, table, prompt.rope_delta)[-1]  # noqa: E731
        return sampling.generate_loop(first, lambda tok: self.decode([tok], [cache])[0], max_new_tokens, end_id,
                                      stop, temperature, top_k, top_p, gen)
