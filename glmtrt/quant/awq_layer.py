"""INT4-AWQ tensors of one decoder layer (plan + quantize), over the family's smoothing groups.

Per quantized linear (see glmtrt.quant.awq for the upstream sources):
  weight int8 (out/2, in) packed per rank, weights_scaling_factor (out, in/group) in the model
  dtype, prequant_scaling_factor (in,) in the model dtype. Column-parallel linears split the
  scale rows like the weight and replicate the pre-quant scale; row-parallel ones (dense, proj)
  split both on the input dimension. Norms, biases, embedding and lm_head stay unquantized
  (`exclude_modules` ["lm_head"] in the quantization config, as ModelOpt writes it).
"""
from __future__ import annotations

import logging

import torch

from glmtrt.quant import awq as A
from glmtrt.quant.groups import SmoothGroup

log = logging.getLogger(__name__)


def awq_layer_plan(groups: tuple[SmoothGroup, ...], float_rows: list, dtype: torch.dtype, group_size: int,
                   tp_size: int) -> list[tuple[str, torch.dtype, tuple, str]]:
    """Ordered (name inside the layer, dtype, full shape, shard kind) of one AWQ layer."""
    linears = {g.linear: g for g in groups}
    plan = []
    for r in float_rows:
        rel = r.target.split(".", 3)[3]
        lin = rel.rsplit(".", 1)[0]
        if rel.endswith(".weight") and lin in linears:
            g = linears[lin]
            out, inp = r.shape
            A.check_group(inp if g.column_parallel else inp // tp_size, group_size, f"{lin} (per rank)")
            plan.append((rel, torch.int8, (out, inp), f"pack4:{r.shard}"))
            plan.append((f"{lin}.weights_scaling_factor", dtype, (out, inp // group_size), r.shard))
            plan.append((f"{lin}.prequant_scaling_factor", dtype, (inp,),
                         "replicate" if g.column_parallel else "rows"))
            continue
        plan.append((rel, dtype, tuple(r.shape), r.shard))
    return plan


def awq_quantize_layer(weights: dict, stats: dict, groups: tuple[SmoothGroup, ...], group_size: int,
                       search: bool = True, report: dict | None = None) -> dict:
    """AWQ-search (search=False: round-to-nearest) and quantize the layer's linears."""
    res = dict(weights)
    for g in groups:
        w = weights[f"{g.linear}.weight"].float()
        if search:
            x_mean = stats[(g.linear, "xsum")] / stats[(g.linear, "n")]
            s, a, loss, rtn = A.awq_scales(w, stats[(g.linear, "xs")], x_mean, group_size)
            if report is not None:
                report.setdefault(g.linear, []).append((a, loss, rtn))
        else:
            s = torch.ones(w.shape[1])
        q, scale = A.quantize_groups(w * s[None, :], group_size)
        res[f"{g.linear}.weight"] = q
        res[f"{g.linear}.weights_scaling_factor"] = scale
        res[f"{g.linear}.prequant_scaling_factor"] = 1.0 / s
    return res
