"""Quantized-kernel emulation for the reference executor (int8-sq, fp8 and AWQ linears, INT8/FP8 KV cache).

What the engine computes, per TensorRT-LLM 1.2.x:
  - SmoothQuant GEMM (`smooth_quant_gemm` plugin, quantization/layers.py SmoothQuantLinear /
    SmoothQuantRowLinear): the input is divided by `smoother` (linears without a norm), quantized
    to int8 - per token dynamically (scale = max|x_row| / 127, `quantize_per_token`) or with the
    static `scale_to_int` / `quantization_scaling_factor` - multiplied with the int8 weight in int32,
    and scaled by per_token_scale (or `act_scale`) x `per_channel_scale`, output in the
    activation dtype. Row-parallel linears (dense, proj) quantize each rank's input slice with its
    own per-token scale and the rank outputs are summed (allreduce) in the activation dtype.
    int8 rounding is round-to-nearest-even with saturation (cuda `__float2int_rn`).
  - FP8 GEMM (quantization/layers.py FP8Linear / FP8RowLinear, the Q/DQ path our rtx4090 profile
    builds with --gemm_plugin disable): the input is quantized per tensor with the static
    activation_scaling_factor cast to the model dtype (x / s, saturated to +-448, e4m3 round to
    nearest even), multiplied with the e4m3 weight accumulating in float32 and scaled by
    activation x weights scaling factor (both cast to the model dtype); row-parallel ranks are summed.
  - KV cache (gpt_attention plugin, layers/attention.py): K (after rotary) and V are stored as
    int8 round(x * kv_cache_rcp_scaling_factor) (or FP8 e4m3) and read back times
    kv_cache_scaling_factor; the tokens of the current step attend to their own unquantized K/V.
int32 accumulation is exact here: int8 products are summed in float64 (exact below 2^53).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from glmtrt.errors import GlmtrtError

#: TRT-LLM chatglm linear prefix -> (tensor holding its static input scale, row-parallel?)
SQ_LINEARS = {
    "attention.qkv": ("input_layernorm.scale_to_int", False),
    "attention.dense": ("attention.quantization_scaling_factor", True),
    "mlp.fc": ("post_layernorm.scale_to_int", False),
    "mlp.proj": ("mlp.quantization_scaling_factor", True),
}
#: quant_algo values the reference emulates beyond weight-only (quantization/mode.py QuantAlgo).
EMULATED_ALGOS = ("W8A8_SQ_PER_CHANNEL_PER_TOKEN_PLUGIN", "W8A8_SQ_PER_CHANNEL_PER_TENSOR_PLUGIN",
                  "W8A8_SQ_PER_TENSOR_PER_TOKEN_PLUGIN", "W8A8_SQ_PER_TENSOR_PLUGIN", "W4A16_AWQ", "FP8")
_QUANT_SUFFIXES = ("per_channel_scale", "smoother", "act_scale", "scale_to_int", "quantization_scaling_factor",
                   "kv_cache_scaling_factor", "kv_cache_rcp_scaling_factor", "weights_scaling_factor",
                   "prequant_scaling_factor", "activation_scaling_factor")


def is_quant_tensor(name: str, tensor=None) -> bool:
    """Scales and int8 weights keep their stored dtype when the reference casts a checkpoint."""
    if tensor is not None and (not tensor.is_floating_point() or tensor.element_size() == 1):
        return True                   # int8 / packed int4 / float8 weights keep their bits
    return name.rsplit(".", 1)[-1] in _QUANT_SUFFIXES


def quant_merge_rule(name: str, cfg: dict, geo, merge_qkv, merge_fc, merge_dim):
    """Shard merge of the quantization tensors (None: the float rules of weights.py apply).

    INT4-AWQ: packed weights are unpacked per rank first; group scales merge like their weight
    (rows, or columns for row-parallel), pre-quant scales of row-parallel linears concatenate.

    (1, out) per_channel_scale vectors of column-parallel linears were split like their weight
    rows; row-parallel smoothers (1, in) like the weight columns; everything else is replicated.
    """
    if (cfg.get("quantization") or {}).get("quant_algo") == "W4A16_AWQ":
        from glmtrt.quant.awq import unpack_int4

        lin = next((k for k in SQ_LINEARS if f".{k}." in name), None)
        leaf = name.rsplit(".", 1)[-1]
        if lin and leaf in ("weight", "weights_scaling_factor"):
            prep = unpack_int4 if leaf == "weight" else (lambda t: t)
            if lin == "attention.qkv":
                return lambda sh: merge_qkv([prep(s) for s in sh], geo.num_heads, geo.num_kv_heads, geo.head_size)
            if lin == "mlp.fc":
                return lambda sh: merge_fc([prep(s) for s in sh])
            return lambda sh: merge_dim([prep(s) for s in sh], 1)
        if lin and leaf == "prequant_scaling_factor":
            return (lambda sh: merge_dim(sh, 0)) if SQ_LINEARS[lin][1] else (lambda sh: sh[0])
    if name.endswith(".per_channel_scale") and (".attention.qkv." in name or ".mlp.fc." in name):
        def rows(shards, fn=merge_qkv if ".qkv." in name else merge_fc):
            if shards[0].shape[-1] == 1 and len(shards) > 1:         # per-tensor (1, 1): replicated
                return shards[0]
            t = [s.reshape(-1) for s in shards]
            full = fn(t, geo.num_heads, geo.num_kv_heads, geo.head_size) if fn is merge_qkv else fn(t)
            return full.reshape(1, -1)
        return rows
    if name.endswith(".smoother"):
        return lambda shards: merge_dim(shards, 1)
    if name.rsplit(".", 1)[-1] in _QUANT_SUFFIXES:
        return lambda shards: shards[0]
    return None


def _round_sat_i8(x):
    import torch

    return torch.round(x).clamp(-128, 127)


@dataclass
class SQLinear:
    """One SmoothQuant linear: int8 weight [out, in] (full, ranks merged) and its scales."""

    weight: Any                # int8 [out, in]
    per_channel_scale: Any     # f32 (1, out) or (1, 1)
    smoother: Any = None       # f32 (1, in) or None
    static_scale: Any = None   # f32 (1,) when the activation scale is static
    act_scale: Any = None      # f32 (1, 1) when static
    tp_splits: int = 1         # >1: row-parallel over that many ranks
    out_dtype: Any = None

    @property
    def shape(self):
        return tuple(self.weight.shape)

    def to(self, device=None, dtype=None) -> "SQLinear":
        """Move to `device`; `dtype` is the activation (output) dtype."""
        mv = (lambda t: None if t is None else t.to(device)) if device is not None else (lambda t: t)
        return SQLinear(mv(self.weight), mv(self.per_channel_scale), mv(self.smoother), mv(self.static_scale),
                        mv(self.act_scale), self.tp_splits, dtype or self.out_dtype)

    def _rank(self, x, w):
        import torch

        xf = x.float()
        if self.static_scale is None:
            amax = xf.abs().amax(dim=-1, keepdim=True)
            token_scale = amax / 127.0
            q = _round_sat_i8(xf * (127.0 / amax.clamp(min=1e-30)))
        else:
            token_scale = self.act_scale.reshape(1).float()
            q = _round_sat_i8(xf * self.static_scale.float())
        acc = torch.matmul(q.double(), w.double().t())
        out = acc.float() * token_scale * self.per_channel_scale.float().reshape(-1)
        return out.to(self.out_dtype or x.dtype)

    def linear(self, x, bias):
        """y = dequant(int8(x) @ int8(W)^T) (+ bias), as the engine computes it."""
        if self.smoother is not None:
            x = (x.float() / self.smoother.float().reshape(-1)).to(x.dtype)
        if self.tp_splits > 1:
            xs = x.chunk(self.tp_splits, dim=-1)
            ws = self.weight.chunk(self.tp_splits, dim=1)
            y = self._rank(xs[0], ws[0])
            for xr, wr in zip(xs[1:], ws[1:]):
                y = y + self._rank(xr, wr)
        else:
            y = self._rank(x, self.weight)
        return y if bias is None else y + bias.to(y.dtype)


@dataclass
class KVQuant:
    """INT8 / FP8 KV-cache quantize-dequantize with the layer's kv_cache_scaling_factor."""

    scale: float
    kind: str = "INT8"

    def _qdq(self, t):
        import torch

        x = t.float() * (1.0 / self.scale)
        if self.kind == "INT8":
            x = _round_sat_i8(x)
        else:
            x = x.clamp(-448.0, 448.0).to(torch.float8_e4m3fn).float()
        return (x * self.scale).to(t.dtype)

    def cache(self, k, v):
        """What the cache holds for k, v [B, kv_heads, T, D]."""
        return self._qdq(k), self._qdq(v)


def prepare_quantized(config: dict, weights: dict) -> tuple[dict, dict[int, KVQuant]]:
    """Replace the SmoothQuant tensors of `weights` by SQLinear objects; collect KV-cache scales.

    Returns (weights without the scale tensors, {layer: KVQuant}). Unquantized and weight-only
    checkpoints pass through unchanged.
    """
    from glmtrt.quant.smoothquant import SQ_ALGOS, sq_flags

    quant = config.get("quantization") or {}
    algo, kv_algo = quant.get("quant_algo"), quant.get("kv_cache_quant_algo")
    weights = dict(weights)
    kv: dict[int, KVQuant] = {}
    n_layers = int(config["num_hidden_layers"])
    if kv_algo:
        if kv_algo not in ("INT8", "FP8"):
            raise GlmtrtError(f"kv_cache_quant_algo {kv_algo!r}", expected="INT8 or FP8")
        for i in range(n_layers):
            name = f"transformer.layers.{i}.attention.kv_cache_scaling_factor"
            if name not in weights:
                raise GlmtrtError(f"checkpoint lacks {name}", expected=f"a scale per layer for {kv_algo} KV cache")
            kv[i] = KVQuant(float(weights.pop(name).float().reshape(-1)[0]), kv_algo)
            weights.pop(name.replace("kv_cache_scaling", "kv_cache_rcp_scaling"), None)
    if algo == "W4A16_AWQ":
        return _prepare_awq(config, weights), kv
    if algo == "FP8":
        return _prepare_fp8(config, weights), kv
    if algo not in SQ_ALGOS.values():
        return weights, kv
    _, per_token = sq_flags(algo)
    tp = int((config.get("mapping") or {}).get("tp_size", 1))
    for i in range(n_layers):
        p = f"transformer.layers.{i}."
        for lin, (scale_name, row_parallel) in SQ_LINEARS.items():
            try:
                w, pcs = weights.pop(p + lin + ".weight"), weights.pop(p + lin + ".per_channel_scale")
            except KeyError as exc:
                raise GlmtrtError(f"SmoothQuant checkpoint lacks {exc.args[0]}",
                                  expected="int8 weight + per_channel_scale for qkv, dense, fc, proj") from None
            if w.dtype.is_floating_point:
                raise GlmtrtError(f"{p + lin}.weight is {w.dtype}", expected="int8 (SmoothQuant)")
            smoother = weights.pop(p + lin + ".smoother", None)
            static = weights.pop(p + scale_name, None)
            act = weights.pop(p + lin + ".act_scale", None)
            if not per_token and (static is None or act is None):
                raise GlmtrtError(f"static SmoothQuant checkpoint lacks {p + scale_name} or {p + lin}.act_scale",
                                  expected=f"both for quant_algo {algo}")
            weights[p + lin + ".weight"] = SQLinear(w, pcs, smoother, None if per_token else static,
                                                    None if per_token else act, tp if row_parallel else 1)
    return weights, kv


@dataclass
class AWQLinear:
    """W4A16 groupwise GEMM with pre-quant scale (WeightOnlyGroupwiseQuantLinear): the input is
    multiplied by prequant_scaling_factor, the int4 weight dequantized as q * scale in the
    activation dtype, the GEMM runs in that dtype; row-parallel ranks are summed."""

    weight: Any                # dequantized float32 [out, in]
    pre_quant: Any             # [in]
    tp_splits: int = 1
    out_dtype: Any = None

    @property
    def shape(self):
        return tuple(self.weight.shape)

    def to(self, device=None, dtype=None) -> "AWQLinear":
        dt = dtype or self.out_dtype or self.weight.dtype
        return AWQLinear(self.weight.to(device=device, dtype=dt), self.pre_quant.to(device), self.tp_splits, dt)

    def linear(self, x, bias):
        import torch

        x = (x * self.pre_quant.to(x.dtype)).to(x.dtype)
        w = self.weight.to(x.dtype)
        if self.tp_splits > 1:
            parts = [torch.nn.functional.linear(xr, wr) for xr, wr in
                     zip(x.chunk(self.tp_splits, -1), w.chunk(self.tp_splits, 1))]
            y = parts[0]
            for p in parts[1:]:
                y = y + p
        else:
            y = torch.nn.functional.linear(x, w)
        return y if bias is None else y + bias.to(y.dtype)


def _prepare_awq(config: dict, weights: dict) -> dict:
    import torch

    from glmtrt.quant.awq import dequantize_groups

    quant = config.get("quantization") or {}
    group = int(quant.get("group_size") or 128)
    tp = int((config.get("mapping") or {}).get("tp_size", 1))
    dt = {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(config.get("dtype"), torch.float32)
    for i in range(int(config["num_hidden_layers"])):
        for lin, (_, row_parallel) in SQ_LINEARS.items():
            p = f"transformer.layers.{i}.{lin}."
            try:
                q, scale = weights.pop(p + "weight"), weights.pop(p + "weights_scaling_factor")
                pqs = weights.pop(p + "prequant_scaling_factor")
            except KeyError as exc:
                raise GlmtrtError(f"INT4-AWQ checkpoint lacks {exc.args[0]}",
                                  expected="weight + weights_scaling_factor + prequant_scaling_factor") from None
            w = dequantize_groups(q, scale.to(dt), group).to(dt)     # the kernel dequantizes in the act dtype
            weights[p + "weight"] = AWQLinear(w, pqs.to(dt).reshape(-1), tp if row_parallel else 1, dt)
    return weights


@dataclass
class FP8Linear:
    """Per-tensor FP8 W8A8 GEMM (see the module docstring); weight e4m3 [out, in], ranks merged."""

    weight: Any                # float8_e4m3fn [out, in]
    w_scale: Any               # f32 (1,)
    a_scale: Any               # f32 (1,)
    tp_splits: int = 1
    out_dtype: Any = None

    @property
    def shape(self):
        return tuple(self.weight.shape)

    def to(self, device=None, dtype=None) -> "FP8Linear":
        mv = (lambda t: t.to(device)) if device is not None else (lambda t: t)
        return FP8Linear(mv(self.weight), mv(self.w_scale), mv(self.a_scale), self.tp_splits, dtype or self.out_dtype)

    def linear(self, x, bias):
        import torch

        from glmtrt.quant.fp8 import to_e4m3

        dt = self.out_dtype or x.dtype
        a_s = self.a_scale.reshape(1).to(dt).float()      # cast(activation_scaling_factor, self.dtype)
        alpha = a_s * self.w_scale.reshape(1).to(dt).float()
        q = to_e4m3(x.float() / a_s).float()
        w = self.weight.float()
        y = None
        for xr, wr in zip(q.chunk(self.tp_splits, -1), w.chunk(self.tp_splits, 1)):
            part = (torch.matmul(xr, wr.t()) * alpha).to(dt)  # fp32 accumulate, output in the act dtype
            y = part if y is None else y + part
        return y if bias is None else y + bias.to(y.dtype)


def _prepare_fp8(config: dict, weights: dict) -> dict:
    import torch

    tp = int((config.get("mapping") or {}).get("tp_size", 1))
    for i in range(int(config["num_hidden_layers"])):
        for lin, (_, row_parallel) in SQ_LINEARS.items():
            p = f"transformer.layers.{i}.{lin}."
            try:
                w = weights.pop(p + "weight")
                ws, xs = weights.pop(p + "weights_scaling_factor"), weights.pop(p + "activation_scaling_factor")
            except KeyError as exc:
                raise GlmtrtError(f"FP8 checkpoint lacks {exc.args[0]}",
                                  expected="weight + weights_scaling_factor + activation_scaling_factor") from None
            if w.dtype != torch.float8_e4m3fn:
                raise GlmtrtError(f"{p}weight is {w.dtype}", expected="float8_e4m3fn (quant_algo FP8)")
            weights[p + "weight"] = FP8Linear(w, ws.float(), xs.float(), tp if row_parallel else 1)
    return weights


class Recorder:
    """A float linear that records max|input| and max|output| per channel (calibration); with
    keep > 0 also sum|input| per channel, the token count and the first `keep` input rows (AWQ)."""

    def __init__(self, weight, stats: dict, key: str, keep: int = 0):
        self.weight, self.stats, self.key, self.keep = weight, stats, key, keep

    @property
    def shape(self):
        return tuple(self.weight.shape)

    def to(self, device=None, dtype=None) -> "Recorder":
        self.weight = self.weight.to(device=device, dtype=dtype)
        return self

    def linear(self, x, bias):
        import torch

        y = torch.nn.functional.linear(x, self.weight, bias)
        for part, t in (("x", x), ("y", y)):
            amax = t.detach().abs().reshape(-1, t.shape[-1]).amax(dim=0).float()
            k = (self.key, part)
            self.stats[k] = amax if k not in self.stats else torch.maximum(self.stats[k], amax)
        if self.keep:
            rows = x.detach().reshape(-1, x.shape[-1]).float()
            k = (self.key, "xsum")
            self.stats[k] = self.stats.get(k, 0) + rows.abs().sum(dim=0)
            self.stats[(self.key, "n")] = self.stats.get((self.key, "n"), 0) + rows.shape[0]
            kept = self.stats.get((self.key, "xs"))
            have = 0 if kept is None else kept.shape[0]
            if have < self.keep:
                new = rows[: self.keep - have]
                self.stats[(self.key, "xs")] = new if kept is None else torch.cat([kept, new])
        return y
