"""Calibrated conversion (int8-sq, int4-awq, fp8; INT8 / FP8 KV cache): HF checkpoint -> TensorRT-LLM 1.2.x checkpoint.

Layer by layer: the layer's float weights are materialised (full TP=1 layout, float32), the
calibration activations run through it (glmtrt.quant.calibrate), the family's smoothing groups
are smoothed and quantized (glmtrt.quant.smoothquant) and every tensor is split for all ranks
and appended to the rank files. Upstream's chatglm SmoothQuant works only at TP=1 (its SQ branch
never splits qkv/dense/proj); here every rank gets exactly the TP=1 tensors split like the float
weights (column-parallel scales with their rows, row-parallel smoothers with their columns).

Tensor names / dtypes / shapes per variant are those of tensorrt_llm/models/chatglm/convert.py
`get_tllm_linear_sq_weight` (see glmtrt.quant.smoothquant and tests/quant/test_sq_layout.py).
"""
from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from glmtrt.checkpoint.atomic import atomic_output_dir, check_output_dir
from glmtrt.checkpoint.dtypes import numpy_to_torch
from glmtrt.checkpoint.safetensors_stream import StreamingSafetensorsWriter
from glmtrt.checkpoint.trtllm_config import quantization_block
from glmtrt.convert.mapping import materialize as materialize_np
from glmtrt.convert.mapping import shard_tensor as shard_np
from glmtrt.convert.pipeline import ConvertOptions, plan_conversion, write_checkpoint_meta
from glmtrt.errors import GlmtrtError
from glmtrt.quant import smoothquant as SQ
from glmtrt.quant.calibrate import CalibOptions, LayerCalibrator
from glmtrt.quant.groups import SmoothGroup

log = logging.getLogger(__name__)

TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_INT_OF_SIZE = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
L = "transformer.layers.{i}."


def materialize(row, ckpt, dtype: torch.dtype) -> torch.Tensor:
    """The mapping engine's full target array of `row` (numpy, glmtrt.convert.mapping) as torch."""
    return numpy_to_torch(materialize_np(row, ckpt.array, str(dtype).removeprefix("torch.")))


def shard_tensor(t: torch.Tensor, kind: str, rank: int, ctx) -> torch.Tensor:
    """The mapping engine's shard function on a torch tensor: the shard kinds only slice, tile and
    concatenate, so they run on a same-size integer view of the bits (any dtype, meta tensors too)."""
    if t.device.type == "meta":
        shape = shard_np(np.broadcast_to(np.zeros((), np.int8), tuple(t.shape)), kind, rank, ctx).shape
        return torch.empty(shape, dtype=t.dtype, device="meta")
    raw = t.contiguous().view(_INT_OF_SIZE[t.element_size()]).numpy()
    return torch.from_numpy(np.ascontiguousarray(shard_np(raw, kind, rank, ctx))).view(t.dtype)
#: calibration input rows kept per linear for the AWQ scale search (memory: rows x in x 4 bytes)
AWQ_KEEP_TOKENS = 2048


def shard_any(t: torch.Tensor, kind: str, rank: int, ctx) -> torch.Tensor:
    """shard_tensor, plus "t:<kind>": a (1, N) row vector split like the rows of its weight."""
    if kind.startswith("t:"):
        return shard_tensor(t.t().contiguous(), kind[2:], rank, ctx).t().contiguous()
    if kind.startswith("pack4:"):                  # int4 values: split, then pack pairs of rows
        part = shard_tensor(t, kind[6:], rank, ctx)
        if part.device.type == "meta":
            return torch.empty((part.shape[0] // 2, part.shape[1]), dtype=torch.int8, device="meta")
        from glmtrt.quant.awq import pack_int4
        return pack_int4(part)
    return shard_tensor(t, kind, rank, ctx)


def layer_plan(groups: tuple[SmoothGroup, ...], float_rows: list, dtype: torch.dtype, per_channel: bool,
               per_token: bool, int8_kv: bool, qkv_rows: int, norm_dtype=None) -> list[tuple[str, torch.dtype, tuple, str]]:
    """Ordered (name inside the layer, dtype, full shape, shard kind) of one quantized layer."""
    linears = {g.linear for g in groups}
    plan = []
    for r in float_rows:                       # norms and biases keep the float layout
        rel = r.target.split(".", 3)[3]
        if rel.endswith(".weight") and rel.rsplit(".", 1)[0] in linears:
            plan.append((rel, torch.int8, tuple(r.shape), r.shard))
            continue
        plan.append((rel, dtype, tuple(r.shape), r.shard))
    for g in groups:
        out = next(tuple(r.shape) for r in float_rows if r.target.endswith(g.linear + ".weight"))[0]
        vector = per_channel or bool(g.segments)
        plan.append((f"{g.linear}.per_channel_scale", torch.float32, (1, out if vector else 1),
                     f"t:{g.shard}" if vector and g.column_parallel else "replicate"))
        if not g.norm:
            plan.append((f"{g.linear}.smoother", torch.float32, (1, g.in_features), "cols"))
        if g.norm or not per_token:
            plan.append((g.scale_to_int_name, (norm_dtype or dtype) if per_token else torch.float32, (1,),
                         "replicate"))
        if not per_token:
            plan.append((f"{g.linear}.act_scale", torch.float32, (1, 1), "replicate"))
    if int8_kv:
        plan.append(("attention.kv_cache_scaling_factor", torch.float32, (1,), "replicate"))
    return plan


def quantize_layer(weights: dict, stats: dict, groups: tuple[SmoothGroup, ...], alpha: float,
                   per_channel: bool, per_token: bool, int8_kv: bool, sq: bool = True, smooth: bool = True) -> dict:
    """Smooth + quantize one layer's float tensors (full layout) into the checkpoint tensors."""
    res = dict(weights)
    for g in groups:
        w = weights[f"{g.linear}.weight"].float()
        x_amax, y_amax = stats[(g.linear, "x")], stats[(g.linear, "y")]
        if not sq:
            continue
        # smooth=False: plain W8A8 (s = 1). NB alpha 0 is not that: s = 1 / max|W| per input channel
        s = SQ.smoothing_scales(x_amax, [w], alpha) if smooth else torch.ones_like(x_amax, dtype=torch.float32)
        if g.norm:
            res[f"{g.norm}.weight"] = weights[f"{g.norm}.weight"].float() / s
            if f"{g.norm}.bias" in weights:
                res[f"{g.norm}.bias"] = weights[f"{g.norm}.bias"].float() / s
        else:
            res[f"{g.linear}.smoother"] = s.reshape(1, -1)
        q = SQ.quantize_linear(w * s[None, :], x_amax / s, y_amax, g, per_channel, per_token)
        res[f"{g.linear}.weight"] = q.pop("weight")
        if "scale_to_int" in q:
            res[g.scale_to_int_name] = q.pop("scale_to_int")
        res.update({f"{g.linear}.{k}": v for k, v in q.items()})
    if int8_kv:
        res["attention.kv_cache_scaling_factor"] = SQ.kv_cache_scale(stats[("attention.qkv", "y")])
    return res


def convert_calibrated(src: str | Path, out: str | Path, *, smoothing_groups, dtype: str = "float16",
                       tp_size: int = 1, precision: str = "int8-sq", sq_variant: str = "per-channel-per-token",
                       alpha: float = 0.5, int8_kv_cache: bool = False, fp8_kv_cache: bool = False,
                       calib: CalibOptions = CalibOptions(),
                       group_size: int = 128, awq_search: bool = True, smooth: bool = True,
                       chatglm_version: str | None = None, allow_pickle: bool = False, force: bool = False,
                       progress: bool = True) -> Path:
    """Calibrate and write an int8-sq / int4-awq / fp8 checkpoint (or a float one with a calibrated
    INT8 / FP8 KV cache only)."""
    from tqdm import tqdm

    from glmtrt.quant.calib_data import resolve_calibration

    from glmtrt.quant import fp8 as FP8
    from glmtrt.quant.awq_layer import awq_layer_plan, awq_quantize_layer

    if precision not in ("int8-sq", "int4-awq", "fp8", "fp16", "bf16", "fp32"):
        raise GlmtrtError(f"calibrated precision {precision!r}",
                          expected="int8-sq, int4-awq, fp8 (or a float dtype with --int8-kv-cache / --fp8-kv-cache)")
    awq, fp8 = precision == "int4-awq", precision == "fp8"
    if int8_kv_cache and fp8_kv_cache:
        raise GlmtrtError("--int8-kv-cache and --fp8-kv-cache", expected="one KV-cache precision")
    if awq and (int8_kv_cache or fp8_kv_cache):
        raise GlmtrtError("a quantized KV cache with int4-awq", expected="int4-awq alone, or int8-sq --int8-kv-cache")
    if fp8 and int8_kv_cache:
        raise GlmtrtError("--int8-kv-cache with fp8", expected="fp8 --fp8-kv-cache (or int8-sq --int8-kv-cache)")
    if precision == "int8-sq" and fp8_kv_cache:
        raise GlmtrtError("--fp8-kv-cache with int8-sq", expected="int8-sq --int8-kv-cache, or fp8 --fp8-kv-cache")
    kv = "int8" if int8_kv_cache else "fp8" if fp8_kv_cache else None
    if sq_variant not in SQ.SQ_ALGOS:
        raise GlmtrtError(f"--sq-variant {sq_variant}", expected=" | ".join(SQ.SQ_ALGOS))
    sq = precision == "int8-sq"
    alpha = SQ.check_alpha(alpha)
    check_output_dir(out, force)
    options = ConvertOptions(dtype, tp_size, precision if (sq or awq or fp8) else None, kv,
                             chatglm_version, allow_pickle)
    ckpt, entry, spec, rows, ctx, shapes, config = plan_conversion(src, options)
    algo = SQ.SQ_ALGOS[sq_variant] if sq else None
    config["quantization"].update(quant_algo=algo, smoothquant_val=alpha)
    if awq:     # what a ModelOpt INT4-AWQ export declares (QuantConfig fields of 1.2)
        config["quantization"].update(quant_algo="W4A16_AWQ", group_size=group_size, pre_quant_scale=True,
                                      has_zero_point=False, exclude_modules=["lm_head"])
    if fp8:     # quantization/quantize.py fp8_quantize; lm_head stays float (as ModelOpt exports it)
        config["quantization"].update(quant_algo="FP8", exclude_modules=["lm_head"])
    # only non-default keys that the target releases' QuantConfig knows (it refuses unknown ones)
    config["quantization"] = quantization_block(config["quantization"])
    per_channel, per_token = SQ.sq_flags(algo) if sq else (False, False)
    groups = tuple(smoothing_groups(spec))
    tdtype = TORCH_DTYPES[dtype]
    ids = resolve_calibration(src, calib_data=calib.calib_data, calib_dataset=calib.calib_dataset,
                              num_samples=calib.num_samples, seq_len=calib.seq_len, seed=calib.seed,
                              vocab_size=spec.vocab_size)
    global_rows = [r for r in rows if not r.target.startswith("transformer.layers.")]
    per_layer = [[r for r in rows if r.target.startswith(L.format(i=i))] for i in range(spec.num_layers)]
    plans = [awq_layer_plan(groups, lr, tdtype, group_size, tp_size) if awq else
             FP8.fp8_layer_plan(groups, lr, tdtype, kv is not None) if fp8 else
             layer_plan(groups if sq else (), lr, tdtype, per_channel, per_token, kv is not None, spec.qkv_rows)
             for lr in per_layer]
    entries = [[(r.target, tdtype, shapes[r.target][k]) for r in global_rows] for k in range(tp_size)]
    meta = {}
    for i, plan in enumerate(plans):
        for rel, dt, shape, kind in plan:
            name = L.format(i=i) + rel
            meta[name] = kind
            for k in range(tp_size):
                entries[k].append((name, dt, tuple(shard_any(torch.empty(shape, device="meta"), kind, k, ctx).shape)))
    log.info("calibrated convert %s -> %s: %s alpha=%g kv_cache=%s, %d x %d calibration tokens, tp=%d",
             src, out, config["quantization"].get("quant_algo") or dtype, alpha, kv, calib.num_samples,
             calib.seq_len, tp_size)
    calibrator = LayerCalibrator(config, calib.device, keep_inputs=AWQ_KEEP_TOKENS if awq else 0)
    report: dict = {}
    with atomic_output_dir(out, force) as tmp:
        writers = [StreamingSafetensorsWriter(tmp / f"rank{k}.safetensors", entries[k]) for k in range(tp_size)]
        try:
            emb_row = next(r for r in global_rows if r.target == "transformer.vocab_embedding.weight")
            for row in global_rows:
                full = materialize(row, ckpt, tdtype)
                for k, w in enumerate(writers):
                    w.write(row.target, shard_tensor(full, row.shard, k, ctx))
            hidden = calibrator.embed(ids.split(max(1, calib.batch_size)), materialize(emb_row, ckpt, torch.float32))
            for i in tqdm(range(spec.num_layers), desc="calibrate+quantize", unit="layer", disable=not progress):
                prefix = L.format(i=i)
                layer = {r.target[len(prefix):]: materialize(r, ckpt, torch.float32) for r in per_layer[i]}
                hidden, stats = calibrator.run(layer, hidden)
                tensors = awq_quantize_layer(layer, stats, groups, group_size, awq_search, report) if awq else \
                    FP8.fp8_quantize_layer(layer, stats, groups) if fp8 else \
                    quantize_layer(layer, stats, groups, alpha, per_channel, per_token, kv == "int8", sq, smooth)
                if kv == "fp8":
                    tensors["attention.kv_cache_scaling_factor"] = FP8.kv_cache_scale(stats[("attention.kv", "amax")])
                for rel, dt, _shape, kind in plans[i]:
                    t = tensors[rel].to(dt)
                    for k, w in enumerate(writers):
                        w.write(prefix + rel, shard_any(t, kind, k, ctx))
                del layer, tensors, stats
            hashes = {w.path.name: w.close() for w in writers}
        except BaseException:
            for w in writers:
                w.abort()
            raise
        write_checkpoint_meta(tmp, config, hashes, ckpt, entry, spec, {
            **asdict(options), "precision": precision, "sq_variant": sq_variant if sq else None,
            "smoothquant_alpha": alpha if smooth else None, "calibration": asdict(calib),
            **({"group_size": group_size, "awq_search": awq_search,
                "awq_alpha": {k: [round(a, 3) for a, _, _ in v] for k, v in report.items()}} if awq else {})})
    log.info("wrote %s (%d rank file(s))", out, tp_size)
    return Path(out)
