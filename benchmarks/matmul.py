"""This CPU's (or GPU's) matrix-multiply rate on the model's own shapes, fp32 and bf16, per thread count:
the bar that training's MFU is measured against, and the evidence for choosing a precision.

    python benchmarks/matmul.py [--configs tiny,small] [--batch 64] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="tiny,small", help="model presets whose layer shapes are measured")
    ap.add_argument("--batch", type=int, default=64, help="samples per step (rows = batch x sequence length)")
    ap.add_argument("--tokens", type=int, default=87, help="sequence length per sample (tiny with a trace: 87)")
    ap.add_argument("--threads", default="1,2", help="torch thread counts to measure")
    ap.add_argument("--seconds", type=float, default=1.0, help="measuring time per row")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()

    from reasonact.machine import matmul_rate, model_matmul_shapes, native_bf16
    from reasonact.model.config import model_config

    rows = []
    for name in a.configs.split(","):
        m = model_config(name)
        shapes = model_matmul_shapes(m.d_model, m.mlp_hidden, a.batch * a.tokens)
        for threads in (int(t) for t in a.threads.split(",")):
            torch.set_num_threads(threads)
            for dtype in ("fp32", "bf16"):
                rate = matmul_rate(shapes, torch.float32 if dtype == "fp32" else torch.bfloat16, a.seconds)
                rows.append({"config": name, "rows": a.batch * a.tokens, "threads": threads, "dtype": dtype,
                             "gflops": rate / 1e9, "native_bf16": native_bf16()})
                print(rows[-1])
    report("matmul_cpu", rows, ["config", "rows", "threads", "dtype", "gflops", "native_bf16"], out=a.out)


if __name__ == "__main__":
    main()
