"""Per-layer calibration cost of a model (docs/BENCHMARKS.md, int8-sq calibration projection).

Times `LayerCalibrator.run` (the float32 decoder-layer forward with range recorders, what
calibration costs per token) on layer 0 of MODEL for SAMPLES x SEQ_LEN token shapes, alternated,
and prints the median seconds per shape. Hidden states are random (the cost does not depend on
their values).

    .venv/bin/python scripts/bench_calib_layer.py MODEL [--shapes 16x256,8x512] [--rounds 3]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time


def main() -> None:
    import torch

    from glmtrt.convert.pipeline import ConvertOptions, plan_conversion
    from glmtrt.quant.calibrate import LayerCalibrator
    from glmtrt.quant.convert_calibrated import L, materialize

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model")
    ap.add_argument("--shapes", default="16x256,8x512")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=4, help="samples per forward (CalibOptions.batch_size)")
    args = ap.parse_args()
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    ckpt, _, spec, rows, _, _, config = plan_conversion(args.model, ConvertOptions("float16", 1, "int8-sq", None, None,
                                                                                  False))
    prefix = L.format(i=0)
    t0 = time.perf_counter()
    layer = {r.target[len(prefix):]: materialize(r, ckpt, torch.float32) for r in rows if r.target.startswith(prefix)}
    load_s = time.perf_counter() - t0
    cal = LayerCalibrator(config)
    g = torch.Generator().manual_seed(0)
    times: dict = {s: [] for s in shapes}
    for _ in range(args.rounds):
        for n, t in shapes:
            hidden = [torch.randn(min(args.batch, n - k), t, spec.hidden_size, generator=g)
                      for k in range(0, n, args.batch)]
            t1 = time.perf_counter()
            cal.run(layer, hidden)
            times[(n, t)].append(time.perf_counter() - t1)
    print(json.dumps({"layer0_materialize_s": round(load_s, 2), "rounds": args.rounds,
                      "median_s": {f"{n}x{t}": round(statistics.median(v), 2) for (n, t), v in times.items()},
                      "all_s": {f"{n}x{t}": [round(x, 2) for x in v] for (n, t), v in times.items()}}))


if __name__ == "__main__":
    main()
