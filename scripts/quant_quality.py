"""Train the tiny GLM (if absent) and print the docs/QUANTIZATION.md quality tables.

    .venv/bin/python scripts/quant_quality.py [--out build/quality] [--steps 200] [--configs all]

Table 1: the trained model as it is. Table 2: the same model after the function-preserving
outlier reparametrization of glmtrt.quant.outliers (LLM-like outlier channels, constructed).
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from glmtrt.quant.quality import CONFIGS, held_out_ids, markdown, quality_table
from glmtrt.quant.tiny_trained import train_tiny_glm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("build/quality"))
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: a tiny model on a shared 2-core box is >10x slower with 2)")
    ap.add_argument("--configs", default="all", help="comma-separated labels of glmtrt.quant.quality.CONFIGS")
    ap.add_argument("--no-outliers", action="store_true", help="skip table 2")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    configs = CONFIGS if args.configs == "all" else tuple(c for c in CONFIGS if c[0] in args.configs.split(","))
    model = args.out / "tiny-glm"
    t0 = time.time()
    if not (model / "training.json").is_file():
        info = train_tiny_glm(model, steps=args.steps)
        print(f"trained {model} in {time.time() - t0:.0f} s: {json.dumps(info)}")
    else:
        print(f"using {model}: {(model / 'training.json').read_text()}")
    t1 = time.time()
    print(markdown(quality_table(model, args.out / "ckpts", configs=configs)))
    print(f"table 1: {time.time() - t1:.0f} s")
    if args.no_outliers:
        return
    from glmtrt.quant.outliers import add_outlier_channels

    t2 = time.time()
    info = add_outlier_channels(model, args.out / "tiny-glm-outliers", check_ids=held_out_ids(model))
    print(f"outlier reparametrization: {json.dumps(info)}")
    print(markdown(quality_table(args.out / "tiny-glm-outliers", args.out / "ckpts", configs=configs)))
    print(f"table 2: {time.time() - t2:.0f} s")


if __name__ == "__main__":
    main()
