"""Training throughput: samples per second and model FLOPs utilisation (MFU) per model config, on synthetic
batches of the right shapes. MFU is the step's model FLOPs as a share of a GPU's peak, or on a CPU of the rate
this machine multiplies the model's own matrices at, in the same precision (measured after each row's steps).

    python benchmarks/train.py [--configs debug,tiny,small] [--device cpu|cuda] [--batch-size 64]
        [--views 2] [--compile off,on]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--configs", default="debug,tiny,small")
    ap.add_argument("--modes", default="act,depth+trace")
    ap.add_argument("--decoder", default="diffusion")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--precisions", default=None, help="default: bf16 on CUDA; fp32,bf16 on CPU")
    ap.add_argument("--compile", default="off", help="off, on, or off,on to measure both")
    ap.add_argument("--views", type=int, default=1, help="camera views per observation (16 tokens each at 64 px)")
    ap.add_argument("--model-overrides", default="{}",
                    help='JSON merged into every config, e.g. \'{"n_layers": 2}\' (as `train --model-overrides`)')
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    overrides = json.loads(a.model_overrides)

    from reasonact.model.arm import ActionReasoningModel
    from reasonact.model.config import Config, SequenceConfig, model_config
    from reasonact.model.layout import training_span
    from reasonact.tokenizers import Vocab
    from reasonact.training.setup import FUSED_DEVICES, flops_per_sample, peak_flops

    dev = torch.device(a.device)
    precisions = (a.precisions or ("bf16" if dev.type == "cuda" else "fp32,bf16")).split(",")
    vocab = Vocab(text=512)
    rows = []
    for name in a.configs.split(","):
        mcfg = model_config(name, **{"views": a.views, **overrides})
        for mode, prec, compiled in itertools.product(a.modes.split(","), precisions, a.compile.split(",")):
            seq = SequenceConfig(reasoning=mode, decoder=a.decoder)
            torch.manual_seed(0)
            model = ActionReasoningModel(Config(mcfg, seq), vocab).to(dev)
            net = torch.compile(model) if compiled == "on" else model
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=dev.type in FUSED_DEVICES)  # as training
            B = a.batch_size
            g = torch.Generator().manual_seed(0)
            img = torch.rand(B, a.views, 3, mcfg.image_size, mcfg.image_size, device=dev)
            instr = torch.full((B, 16), vocab.pad, device=dev)
            state = torch.randn(B, 7, device=dev)
            targets = {b: torch.randint(*vocab.block_range(b), (B, seq.block_length(b)), generator=g).to(dev)
                       for b in seq.blocks}
            ctx = torch.autocast(dev.type, torch.bfloat16, enabled=prec == "bf16")

            def step():
                with ctx:
                    loss, _ = net(img, instr, state, targets, None, None)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            for _ in range(3):
                step()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(a.iters):
                step()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            sps = a.iters * B / (time.perf_counter() - t0)
            seq_len = model.n_prefix + len(training_span(model.n_prefix, model.block_lengths(), a.decoder == "diffusion")[0])
            peak = peak_flops(dev, model, B * seq_len, prec == "bf16")
            few = {b: t[:2] for b, t in targets.items()}
            fps = flops_per_sample(model, lambda: model(img[:2], instr[:2], state[:2], few, None, None)[0], 2)
            row = {"config": name, "mode": mode, "precision": prec, "compile": compiled, "views": a.views,
                   "overrides": a.model_overrides if overrides else "", "batch": B, "tokens": seq_len,
                   "params_M": sum(p.numel() for p in model.parameters()) / 1e6, "samples_per_s": sps,
                   "gflop_per_sample": fps / 1e9, "mfu": sps * fps / peak if peak else None, "device": dev.type}
            rows.append(row)
            print(row)
    report(f"train_{dev.type}", rows, ["config", "mode", "precision", "compile", "views", "overrides", "batch", "tokens",
                                       "params_M", "samples_per_s", "gflop_per_sample", "mfu", "device"], out=a.out)


if __name__ == "__main__":
    main()
