"""Decoding cost per action chunk: latency and transformer forward passes for ``ar`` and ``diffusion``
(T = 4, 8, 12), per reasoning mode and model config, batch size 1 (one robot). Weights are random:
the cost of decoding does not depend on them.

    python benchmarks/decode.py [--configs debug,tiny,small] [--device cpu|cuda] [--repeats 20] [--views 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--configs", default="debug,tiny,small")
    ap.add_argument("--modes", default="act,trace,depth+trace")
    ap.add_argument("--diffusion-steps", default="4,8,12", help="diffusion rounds T to measure, comma-separated")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--views", type=int, default=1, help="camera views per observation (16 image tokens each at 64 px)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()

    from reasonact.decoding import generate
    from reasonact.model.arm import ActionReasoningModel
    from reasonact.model.config import Config, SequenceConfig, model_config
    from reasonact.tokenizers import Vocab

    dev = torch.device(a.device)
    vocab = Vocab(text=512)
    rows = []
    for name in a.configs.split(","):
        mcfg = model_config(name, views=a.views)
        for mode in a.modes.split(","):
            for decoder in ("ar", "diffusion"):
                torch.manual_seed(0)
                model = ActionReasoningModel(Config(mcfg, SequenceConfig(reasoning=mode, decoder=decoder)), vocab).to(dev).eval()
                img = torch.rand(1, a.views, 3, mcfg.image_size, mcfg.image_size, device=dev)
                instr = torch.full((1, 16), vocab.pad, device=dev)
                instr[0, :5] = vocab.offset("text") + 3
                state = torch.zeros(1, 7, device=dev)
                for T in ([None] if decoder == "ar" else [int(x) for x in a.diffusion_steps.split(",")]):
                    ctx = torch.autocast(dev.type, torch.bfloat16, enabled=dev.type == "cuda")
                    times = []
                    with torch.inference_mode(), ctx:
                        for k in range(a.repeats + 2):
                            if dev.type == "cuda":
                                torch.cuda.synchronize()
                            t0 = time.perf_counter()
                            res = generate(model, img, instr, state, diffusion_steps=T or 1)
                            if dev.type == "cuda":
                                torch.cuda.synchronize()
                            if k >= 2:  # warm-up calls are not timed
                                times.append((time.perf_counter() - t0) * 1000)
                    rows.append({"config": name, "views": a.views, "mode": mode, "decoder": decoder, "T": T, "nfe": res.nfe,
                                 "latency_ms": statistics.median(times), "device": dev.type})
                    print(rows[-1])
    report(f"decode_{dev.type}", rows, ["config", "views", "mode", "decoder", "T", "nfe", "latency_ms", "device"],
           out=a.out)


if __name__ == "__main__":
    main()
