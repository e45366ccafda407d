"""Train the tiny GLM (if absent) and print the docs/QUANTIZATION.md quality table.

    .venv/bin/python scripts/quant_quality.py [--out build/quality] [--steps 600]
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from glmtrt.quant.quality import markdown, quality_table
from glmtrt.quant.tiny_trained import train_tiny_glm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("build/quality"))
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: a tiny model on a shared 2-core box is >10x slower with 2)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    model = args.out / "tiny-glm"
    t0 = time.time()
    if not (model / "training.json").is_file():
        info = train_tiny_glm(model, steps=args.steps)
        print(f"trained {model} in {time.time() - t0:.0f} s: {json.dumps(info)}")
    else:
        print(f"using {model}: {(model / 'training.json').read_text()}")
    rows = quality_table(model, args.out / "ckpts")
    print(markdown(rows))


if __name__ == "__main__":
    main()
