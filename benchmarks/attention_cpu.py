"""Attention forward + backward on this CPU: the fused kernel (scaled_dot_product_attention) against explicit
matmuls with an fp32 softmax, at the tiny model's training shape (batch 64, 4 heads, 82 tokens, head 48).
The model uses the explicit form for bf16 on CPU (model/layers.py); this measures why.

    python benchmarks/attention_cpu.py
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402


def explicit(q, k, v, mask):
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    return scores.masked_fill(~mask, float("-inf")).softmax(-1, dtype=torch.float32).to(v.dtype) @ v


def fused(q, k, v, mask):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def timed(fn, q, k, v, mask, repeats: int) -> float:
    for _ in range(3):
        fn(q, k, v, mask).float().sum().backward()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn(q, k, v, mask).float().sum().backward()
    return (time.perf_counter() - t0) / repeats * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--tokens", type=int, default=82)
    p.add_argument("--head-dim", type=int, default=48)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(a.batch, 1, a.tokens, a.tokens, generator=g) > 0.3
    mask[..., 0] = True
    rows = []
    for dtype in (torch.bfloat16, torch.float32):
        q, k, v = (torch.randn(a.batch, a.heads, a.tokens, a.head_dim, generator=g).to(dtype).requires_grad_()
                   for _ in range(3))
        ref = fused(q.float(), k.float(), v.float(), mask)
        for name, fn in (("fused", fused), ("explicit", explicit)):
            err = float((fn(q, k, v, mask).float() - ref).abs().max().detach())
            rows.append({"dtype": str(dtype).removeprefix("torch."), "kernel": name,
                         "fwd_bwd_ms": timed(fn, q, k, v, mask, a.repeats), "max_abs_err_vs_fp32": err})
    report("attention_cpu", rows, ["dtype", "kernel", "fwd_bwd_ms", "max_abs_err_vs_fp32"],
           {"shape": [a.batch, a.heads, a.tokens, a.head_dim], "threads": torch.get_num_threads()}, a.out)


if __name__ == "__main__":
    main()
