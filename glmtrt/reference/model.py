"""ReferenceModel: what a TensorRT-LLM chatglm engine computes, in plain torch.

Follows TensorRT-LLM 1.2.x `tensorrt_llm/models/chatglm/model.py` for ChatGLM2/3 and GLM-4
(GLM_ARCH2_VERSIONS):

- `ChatGLMDecoderLayer.forward`: norm_out = input_layernorm(x); attn = attention(norm_out);
  residual = norm_out if apply_residual_connection_post_layernorm else x; h = residual + attn;
  norm2 = post_layernorm(h); out = (norm2 if apply_residual... else h) + mlp(norm2).
- Attention: causal mask, q_scaling 1.0 so scores are q.k / sqrt(head_size)
  (`apply_query_key_layer_scaling` is always written False by chatglm/config.py); GQA where query
  head i reads kv head i // (num_heads / num_kv_heads); `rope_gptj` rotary on the first
  int(head_size * rotary_pct) dims, interleaved pairs (x[2i], x[2i+1]) rotated by
  pos * rotary_base^(-2i/rotary_dim), the rest of the head passes through.
- MLP `swiglu` (`tensorrt_llm/functional.py` swiglu): fc output [value; gate] -> silu(gate) * value.
- RmsNorm (or LayerNorm when `rmsnorm` is false) with `norm_epsilon`; ln_f; lm_head; logits in
  float32 (`logits_dtype` default float32 in chatglm/config.py).

Precision: `dtype=None` runs float32 math over upcast weights — the numerical *model* of the engine.
The engine itself computes in its checkpoint dtype (fp16/bf16 GEMMs, fp32 norms and softmax);
`dtype="auto"` (or an explicit half dtype) mimics that: matmuls and residuals in the half dtype,
norm statistics, rotary and softmax in float32, logits cast to float32. `verify`'s tolerance table
is measured for that mode.

Thread safety: after construction nothing is mutated. forward() is functional (it returns a new
`past`), generate() owns its cache and random generator, so requests may run in threads.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from glmtrt.errors import GlmtrtError
from glmtrt.reference import sampling
from glmtrt.reference.weights import Geometry, _torch_dtype, load_merged_weights, read_checkpoint_config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Layer:
    ln1_w: object
    ln1_b: object
    qkv_w: object
    qkv_b: object
    dense_w: object
    dense_b: object
    ln2_w: object
    ln2_b: object
    fc_w: object
    fc_b: object
    proj_w: object
    proj_b: object
    kv_scale: object = None      # INT8/FP8 KV cache: glmtrt.reference.qlinear.KVQuant


def rope_gptj_inv_freq(rotary_dim: int, base: float):
    """inv_freq[i] = base^(-2i/rotary_dim), i < rotary_dim/2: computed in float64, stored float32,
    as tensorrt_llm/functional.py `RopeEmbeddingUtils.create_sinusoidal_positions_for_attention_plugin`
    builds the table the attention plugin reads (numpy, cast to float32)."""
    import torch

    exponent = torch.arange(0, rotary_dim, 2, dtype=torch.float64) / rotary_dim
    return (1.0 / (float(base) ** exponent)).to(torch.float32)


def apply_rope_gptj(x, cos, sin, rotary_dim: int):
    """Rotate interleaved pairs of the first `rotary_dim` dims of x [..., T, D]; cos/sin [T, rotary_dim/2]."""
    import torch

    rot = x[..., :rotary_dim].float()
    even, odd = rot[..., 0::2], rot[..., 1::2]
    out = torch.stack((even * cos - odd * sin, odd * cos + even * sin), dim=-1).flatten(-2)
    return torch.cat((out.to(x.dtype), x[..., rotary_dim:]), dim=-1)


ROW_BLOCK = 12  # see ReferenceModel._linear


class KVCache:
    """Per-sequence KV cache: k, v [layers, kv_heads, capacity, head_size]; `length` tokens filled."""

    def __init__(self, layers: int, kv_heads: int, capacity: int, head_size: int, dtype, device):
        import torch

        self.k = torch.zeros(layers, kv_heads, capacity, head_size, dtype=dtype, device=device)
        self.v = torch.zeros_like(self.k)
        self.capacity = capacity
        self.length = 0


class ReferenceModel:
    """CPU/CUDA executor of a TensorRT-LLM chatglm checkpoint (see module docstring)."""

    def __init__(self, config: dict, weights: dict, device="cpu", dtype=None):
        import torch

        self.config = dict(config)
        geo = Geometry.from_config(config)
        self.geometry = geo
        self.vocab_size = geo.vocab_size
        self.device = torch.device(device)
        if dtype == "auto":
            dtype = config.get("dtype", "float32")
        self.dtype = _torch_dtype(dtype) or torch.float32
        if geo.num_heads % geo.num_kv_heads:
            raise GlmtrtError(f"num_attention_heads={geo.num_heads} is not a multiple of "
                              f"num_key_value_heads={geo.num_kv_heads}")
        self.eps = float(config.get("norm_epsilon", 1e-5))
        self.rmsnorm = bool(config.get("rmsnorm", True))
        self.post_ln_residual = bool(config.get("apply_residual_connection_post_layernorm", False))
        act = config.get("hidden_act", "swiglu")
        if act != "swiglu":
            raise GlmtrtError(f"hidden_act {act!r} is not supported", expected="swiglu")
        self.rotary_dim = int(geo.head_size * float(config.get("rotary_pct", 0.5)))
        self.pos_scale = 1.0
        scaling = config.get("rotary_scaling")
        if scaling:
            if scaling.get("type") != "linear":
                raise GlmtrtError(f"rotary_scaling {scaling!r} is not supported",
                                  expected="null or {'type': 'linear', 'factor': f}")
            self.pos_scale = 1.0 / float(scaling["factor"])
        self.inv_freq = rope_gptj_inv_freq(self.rotary_dim,
                                           float(config.get("rotary_base", 10000.0))).to(self.device)

        def w(name, required=True):
            t = weights.get(name)
            if t is None:
                if required:
                    raise GlmtrtError(f"checkpoint lacks tensor {name!r}",
                                      expected="the tensor names of docs/INTERFACES.md section 1")
                return None
            return t.to(device=self.device, dtype=self.dtype)

        from glmtrt.reference.qlinear import prepare_quantized

        weights, kv_quant = prepare_quantized(config, weights)   # quantized linears -> emulating objects
        self.embedding = w("transformer.vocab_embedding.weight")
        self.layers = []
        for i in range(geo.num_layers):
            p = f"transformer.layers.{i}."
            self.layers.append(_Layer(
                w(p + "input_layernorm.weight"), w(p + "input_layernorm.bias", False),
                w(p + "attention.qkv.weight"), w(p + "attention.qkv.bias", False),
                w(p + "attention.dense.weight"), w(p + "attention.dense.bias", False),
                w(p + "post_layernorm.weight"), w(p + "post_layernorm.bias", False),
                w(p + "mlp.fc.weight"), w(p + "mlp.fc.bias", False),
                w(p + "mlp.proj.weight"), w(p + "mlp.proj.bias", False), kv_quant.get(i)))
        self.ln_f_w, self.ln_f_b = w("transformer.ln_f.weight"), w("transformer.ln_f.bias", False)
        lm_head = w("lm_head.weight", required=False)
        self.lm_head = lm_head if lm_head is not None else self.embedding  # share_embedding_table
        q_rows = (geo.num_heads + 2 * geo.num_kv_heads) * geo.head_size
        for i, layer in enumerate(self.layers):
            if tuple(layer.qkv_w.shape) != (q_rows, geo.hidden_size):
                raise GlmtrtError(f"layer {i} qkv weight has shape {tuple(layer.qkv_w.shape)}",
                                  expected=f"({q_rows}, {geo.hidden_size}) after merging shards")

    @classmethod
    def from_checkpoint(cls, ckpt_dir: str | Path, device="cpu", dtype=None) -> "ReferenceModel":
        """Load a TensorRT-LLM checkpoint dir (any tp_size; shards merged).

        dtype None: float32 math (default); "auto": the checkpoint's dtype; or
        "float32"/"float16"/"bfloat16"/a torch.dtype.
        """
        if dtype == "auto":
            dtype = read_checkpoint_config(ckpt_dir).get("dtype", "float32")
        # cast while merging (one tensor at a time), so the model holds a single copy
        cfg, weights = load_merged_weights(ckpt_dir, dtype=_torch_dtype(dtype) or "float32")
        model = cls(cfg, weights, device=device, dtype=dtype)
        log.info("reference model: %d layers, vocab %d, compute %s on %s (checkpoint %s, tp %d)",
                 model.geometry.num_layers, model.vocab_size, str(model.dtype).replace("torch.", ""),
                 model.device, cfg.get("dtype"), model.geometry.tp_size)
        return model

    # ------------------------------------------------------------------ numerics

    def _norm(self, x, weight, bias):
        import torch

        xf = x.float()
        if self.rmsnorm:
            y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        else:
            y = torch.nn.functional.layer_norm(xf, (xf.shape[-1],), eps=self.eps)
        y = y.to(x.dtype) * weight
        return y + bias if bias is not None else y

    @staticmethod
    def _linear(x, weight, bias):
        """x @ weight.T + bias: every matmul of the model goes through here.

        Fewer than ROW_BLOCK rows are zero-padded to a multiple of 4: the CPU BLAS rounds a row's
        result differently depending on how many rows it computes together (measured here: 1, 2,
        3, 5, 6, 7, 9, 10 and 11 rows differ in the last bits from 4, 8 or >= 12 rows, which all
        agree), and a sequence must decode to the same tokens alone and inside any in-flight batch
        (tests/reference/test_ref_sampling.py checks it bit for bit on the machine it runs on).
        """
        import torch

        if hasattr(weight, "linear"):       # quantized emulation / calibration recorder (qlinear.py)
            return weight.linear(x, bias)
        rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
        padded = -(-rows // 4) * 4
        if rows >= ROW_BLOCK or rows == padded:
            return torch.nn.functional.linear(x, weight, bias)
        flat = x.reshape(rows, x.shape[-1])
        flat = torch.cat((flat, flat.new_zeros(padded - rows, flat.shape[1])))
        return torch.nn.functional.linear(flat, weight, bias)[:rows].reshape(*x.shape[:-1], weight.shape[0])

    def _rope(self, positions):
        """cos, sin tables [..., T, rotary_dim/2] for positions [T] or [B, T] (then [B, 1, T, r/2])."""
        freqs = (positions.float() * self.pos_scale)[..., None] * self.inv_freq
        if positions.dim() == 2:
            freqs = freqs[:, None]
        return freqs.cos(), freqs.sin()

    def _qkv(self, layer: _Layer, x, cos, sin):
        """q [B, heads, T, D], k and v [B, kv_heads, T, D] after rotary."""
        geo = self.geometry
        b, t, _ = x.shape
        hd, nh, nkv = geo.head_size, geo.num_heads, geo.num_kv_heads
        q, k, v = self._linear(x, layer.qkv_w, layer.qkv_b).split([nh * hd, nkv * hd, nkv * hd], dim=-1)
        q = apply_rope_gptj(q.view(b, t, nh, hd).transpose(1, 2), cos, sin, self.rotary_dim)
        k = apply_rope_gptj(k.view(b, t, nkv, hd).transpose(1, 2), cos, sin, self.rotary_dim)
        return q, k, v.view(b, t, nkv, hd).transpose(1, 2)

    def _sdpa(self, q, k, v, positions):
        """Causal GQA attention of q [b, nh, t, D] over k, v [b, nkv, s, D] -> [b, t, nh * D]."""
        import torch

        geo = self.geometry
        b, nh, t, hd = q.shape
        nkv, s = k.shape[1], k.shape[2]
        qg = q.reshape(b, nkv, nh // nkv, t, hd).float()
        scores = torch.matmul(qg, k.float().unsqueeze(2).transpose(-1, -2)) / math.sqrt(geo.head_size)
        if positions is not None:
            mask = torch.arange(s, device=q.device)[None, :] > positions[:, None]
            scores = scores.masked_fill(mask, float("-inf"))
        probs = torch.softmax(scores, dim=-1).to(v.dtype)
        out = torch.matmul(probs, v.unsqueeze(2)).reshape(b, nh, t, hd)
        return out.transpose(1, 2).reshape(b, t, nh * hd)

    def _attention(self, layer: _Layer, x, cos, sin, past_kv, positions):
        import torch

        q, k, v = self._qkv(layer, x, cos, sin)
        # INT8/FP8 KV cache: the cache holds quantized K/V; this step attends to its own K/V unquantized
        # (the context FMHA and the generation kernel use the qkv GEMM output for the current token).
        new_kv = (k, v) if layer.kv_scale is None else layer.kv_scale.cache(k, v)
        if past_kv is not None:
            k = torch.cat((past_kv[0], k), dim=2)
            v = torch.cat((past_kv[1], v), dim=2)
            new_kv = (torch.cat((past_kv[0], new_kv[0]), dim=2), torch.cat((past_kv[1], new_kv[1]), dim=2))
        return self._linear(self._sdpa(q, k, v, positions), layer.dense_w, layer.dense_b), new_kv

    def _mlp(self, layer: _Layer, x):
        import torch

        value, gate = self._linear(x, layer.fc_w, layer.fc_b).chunk(2, dim=-1)
        return self._linear(torch.nn.functional.silu(gate) * value, layer.proj_w, layer.proj_b)

    def _check_ids(self, ids):
        if int(ids.min()) < 0 or int(ids.max()) >= self.embedding.shape[0]:
            raise GlmtrtError(f"token id out of range [{int(ids.min())}, {int(ids.max())}]",
                              expected=f"ids in [0, {self.embedding.shape[0]})")

    def _stack(self, ids, attend):
        """Embedding, the decoder layers (attention by `attend(i, layer, normed)`), ln_f, lm_head."""
        import torch

        h = torch.nn.functional.embedding(ids, self.embedding)
        for i, layer in enumerate(self.layers):
            h = self._block(layer, h, lambda normed, i=i, layer=layer: attend(i, layer, normed))
        h = self._norm(h, self.ln_f_w, self.ln_f_b)
        return self._linear(h, self.lm_head, None).float()

    def _block(self, layer: _Layer, h, attend):
        """One ChatGLMDecoderLayer around `attend(normed) -> attention output`."""
        normed = self._norm(h, layer.ln1_w, layer.ln1_b)
        h = (normed if self.post_ln_residual else h) + attend(normed)
        normed = self._norm(h, layer.ln2_w, layer.ln2_b)
        return (normed if self.post_ln_residual else h) + self._mlp(layer, normed)

    def rotary(self, start: int, t: int):
        """(positions, cos, sin) of t tokens starting at position `start` (layer-by-layer calibration)."""
        import torch

        positions = torch.arange(start, start + t, device=self.device)
        cos, sin = self._rope(positions)
        return positions, cos, sin

    def decoder_layer(self, layer: _Layer, h, cos, sin, past_kv, positions):
        """One decoder layer alone: (new hidden states, this layer's (k, v) cache)."""
        kv = []

        def attend(normed):
            out, new = self._attention(layer, normed, cos, sin, past_kv, positions)
            kv.append(new)
            return out

        return self._block(layer, h, attend), kv[0]

    def forward(self, input_ids, past=None):
        """Logits float32 [B, T, V] for input_ids [B, T] continuing after `past` (None = fresh).

        Returns (logits, past); `past` is a tuple of per-layer (k, v) tensors [B, kv_heads, S, D]
        after rotary, treated as immutable (a new tuple is returned each call).
        """
        import torch

        with torch.inference_mode():
            ids = torch.as_tensor(input_ids, dtype=torch.long, device=self.device)
            if ids.dim() != 2 or ids.shape[1] == 0:
                raise GlmtrtError(f"input_ids of shape {tuple(ids.shape)}", expected="[batch, tokens>=1]")
            self._check_ids(ids)
            start = 0 if past is None else past[0][0].shape[2]
            positions = torch.arange(start, start + ids.shape[1], device=self.device)
            cos, sin = self._rope(positions)
            new_past = []

            def attend(i, layer, normed):
                out, kv = self._attention(layer, normed, cos, sin, None if past is None else past[i], positions)
                new_past.append(kv)
                return out

            logits = self._stack(ids, attend)
        return logits, tuple(new_past)

    # ------------------------------------------------------------------ in-flight batching

    def new_cache(self, capacity: int) -> "KVCache":
        """An empty KV cache for one sequence of up to `capacity` tokens."""
        geo = self.geometry
        return KVCache(geo.num_layers, geo.num_kv_heads, capacity, geo.head_size, self.dtype, self.device)

    def prefill(self, input_ids, cache: "KVCache"):
        """Run one prompt (list of ids) into an empty `cache`; logits float32 [T, V]."""
        import torch

        with torch.inference_mode():
            ids = torch.as_tensor([list(input_ids)], dtype=torch.long, device=self.device)
            self._check_ids(ids)
            t = ids.shape[1]
            if cache.length != 0 or t > cache.capacity:
                raise GlmtrtError(f"prefill of {t} tokens into a cache holding {cache.length}/{cache.capacity}",
                                  expected="an empty cache with room for the prompt")
            positions = torch.arange(t, device=self.device)
            cos, sin = self._rope(positions)

            def attend(i, layer, normed):
                q, k, v = self._qkv(layer, normed, cos, sin)
                kq, vq = (k, v) if layer.kv_scale is None else layer.kv_scale.cache(k, v)
                cache.k[i, :, :t], cache.v[i, :, :t] = kq[0], vq[0]
                return self._linear(self._sdpa(q, k, v, positions), layer.dense_w, layer.dense_b)

            logits = self._stack(ids, attend)
            cache.length = t
        return logits[0]

    def decode(self, tokens, caches: list["KVCache"]):
        """One decoding step of several sequences together: token b continues `caches[b]`.

        The linear layers run once over the whole batch; attention reads each sequence's own
        cache. Returns logits float32 [B, V]; every cache grows by one token.
        """
        import torch

        with torch.inference_mode():
            ids = torch.as_tensor([[int(t)] for t in tokens], dtype=torch.long, device=self.device)
            self._check_ids(ids)
            lengths = [c.length for c in caches]
            if any(n >= c.capacity for n, c in zip(lengths, caches)):
                raise GlmtrtError("a sequence outgrew its KV cache", expected="prompt + output within capacity")
            cos, sin = self._rope(torch.tensor(lengths, device=self.device)[:, None])

            def attend(i, layer, normed):
                q, k, v = self._qkv(layer, normed, cos, sin)
                kq, vq = (k, v) if layer.kv_scale is None else layer.kv_scale.cache(k, v)
                outs = []
                for b, (n, c) in enumerate(zip(lengths, caches)):
                    c.k[i, :, n], c.v[i, :, n] = k[b, :, 0], v[b, :, 0]     # this step: unquantized
                    outs.append(self._sdpa(q[b:b + 1], c.k[i, None, :, :n + 1], c.v[i, None, :, :n + 1], None))
                    c.k[i, :, n], c.v[i, :, n] = kq[b, :, 0], vq[b, :, 0]   # later steps read it quantized
                return self._linear(torch.cat(outs), layer.dense_w, layer.dense_b)

            logits = self._stack(ids, attend)
            for c in caches:
                c.length += 1
        return logits[:, -1]

    __call__ = forward

    def generate(self, ids, max_new_tokens: int, end_id: int | None, stop_ids=(),
                 temperature: float = sampling.DEFAULT_TEMPERATURE, top_k: int = sampling.DEFAULT_TOP_K,
                 top_p: float = sampling.DEFAULT_TOP_P, seed: int | None = None) -> Iterator[int]:
        """Yield new token ids one at a time (batch 1, KV cache).

        Sampling has the engine's semantics and defaults (`glmtrt.reference.sampling`): greedy when
        temperature == 0, top_k == 1, or neither top_k nor top_p is set (both 0, the defaults). Generation ends after `max_new_tokens`, at
        `end_id` (not yielded, like the engine's end_id; None = no end id) or after yielding a token
        in `stop_ids` (yielded, like TensorRT-LLM stop words). Argument errors raise at call time;
        the returned iterator computes lazily, one forward per yielded token.
        """
        ids = [int(i) for i in ids]
        if not ids:
            raise GlmtrtError("generate() got an empty prompt", expected="at least one token id")
        if max_new_tokens < 0:
            raise GlmtrtError(f"max_new_tokens={max_new_tokens}", expected=">= 0")
        sampling.validate_sampling(temperature, top_k, top_p, seed)
        stop = {int(s) for s in stop_ids}
        generator = None if sampling.is_greedy(temperature, top_k, top_p) else \
            sampling.make_generator(seed, self.device)
        end = -1 if end_id is None else int(end_id)
        return self._generate(ids, max_new_tokens, end, stop, temperature, top_k, top_p, generator)

    def _generate(self, ids, max_new_tokens, end_id, stop, temperature, top_k, top_p, generator):
        import torch

        past = None

        def first():
            nonlocal past
            logits, past = self.forward(torch.tensor([ids], dtype=torch.long))
            return logits[0, -1]

        def step(tok):
            nonlocal past
            logits, past = self.forward(torch.tensor([[tok]], dtype=torch.long), past)
            return logits[0, -1]

        yield from sampling.generate_loop(first, step, max_new_tokens, end_id, stop, temperature, top_k, top_p,
                                          generator)
