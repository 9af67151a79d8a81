"""How fast can a model learn to read a given trace? A synthetic check of the coordinate-token embedding.

Every sample is steered (the trace is given) and the image is noise, so the trace is the only source of
the target chunk. Two targets:

- ``position``: the chunk's x/y actions say where the trace starts (a function of single coordinate bins);
- ``direction``: the chunk moves from the trace's first point towards its second, through a fixed rotation
  and a saturating gain, like a P-controller steering an arm (a function of differences between bins).

Each is trained with and without coordinate features (``ModelConfig.coord_features``: a coordinate bin's
embedding plus a projection of Fourier features of its value), and with the features and the trace written
relative to its first point (``TraceTokenizer.relative``, ``reasonact train --trace-relative``). The score
is the cosine between the decoded chunk's mean x/y action and the target's, on fresh samples (1 = read
perfectly, 0 = not at all).

    python benchmarks/trace_reading.py [--config tiny] [--steps 300] [--eval-every 100]
        [--variants bins,features,features+relative]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402

TARGETS = ("position", "direction")


VARIANTS = {"bins": (False, False), "features": (True, False), "features+relative": (True, True)}


def make_batch(target: str, B: int, cfg, vocab, g: torch.Generator, relative: bool = False):
    """Images of noise, no instruction, zero state, a straight 5-point trace; targets (B, H, A) in [-1, 1]."""
    S, H, A = cfg.model.image_size, cfg.sequence.horizon, cfg.sequence.action_dim
    n = cfg.sequence.trace_points
    here = torch.rand(B, 2, generator=g) * 0.6 * S + 0.2 * S
    ang = torch.rand(B, generator=g) * 2 * math.pi
    heading = torch.stack([ang.cos(), ang.sin()], -1)
    length = (torch.rand(B, 1, generator=g) * 0.6 + 0.3) * S
    pts = here[:, None] + heading[:, None] * (length * torch.linspace(0, 1, n))[..., None]
    from reasonact.tokenizers import TraceTokenizer

    trace = torch.from_numpy(TraceTokenizer(S, S, n, vocab.coord, relative).encode(pts.numpy())) + vocab.offset("coord")
    if target == "position":
        xy = (here / S - 0.5) / 0.3
    else:
        rot = torch.tensor([[0.8, -0.6], [0.6, 0.8]])
        xy = ((pts[:, 1] - here) @ rot.T * (9.6 / S)).clamp(-1, 1)
    act = torch.zeros(B, H, A)
    act[..., :2] = xy[:, None]
    act_ids = ((act + 1) / 2 * 255).round().clamp(0, 255).long().reshape(B, -1) + vocab.offset("action")
    images = torch.rand(B, 3, S, S, generator=g)
    instr = torch.full((B, cfg.sequence.instruction_tokens), vocab.pad)
    state = torch.zeros(B, cfg.sequence.state_dim)
    return images, instr, state, {"trace": trace, "act": act_ids}, xy


@torch.no_grad()
def score(model, target: str, vocab, relative: bool, n: int = 256) -> float:
    from reasonact.decoding import generate

    cfg = model.cfg
    H, A = cfg.sequence.horizon, cfg.sequence.action_dim
    model.eval()
    images, instr, state, targets, want = make_batch(target, n, cfg, vocab, torch.Generator().manual_seed(12345), relative)
    res = generate(model, images, instr, state, diffusion_steps=4, given={"trace": targets["trace"]})
    model.train()
    act = (res.tokens["act"] - vocab.offset("action")).reshape(n, H, A).float() / 255 * 2 - 1
    return float(torch.nn.functional.cosine_similarity(act[..., :2].mean(1), want, dim=-1).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="tiny")
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"of {', '.join(VARIANTS)}")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()

    from reasonact.model.arm import ActionReasoningModel
    from reasonact.model.config import Config, SequenceConfig, model_config
    from reasonact.tokenizers import Vocab

    targets = a.targets.split(",")
    if set(targets) - set(TARGETS):
        ap.error(f"--targets: choose from {', '.join(TARGETS)}")
    variants = a.variants.split(",")
    if set(variants) - set(VARIANTS):
        ap.error(f"--variants: choose from {', '.join(VARIANTS)}")
    vocab = Vocab()
    checkpoints = list(range(a.eval_every, a.steps + 1, a.eval_every))
    rows = []
    for target in targets:
        for variant in variants:
            features, relative = VARIANTS[variant]
            torch.manual_seed(a.seed)
            cfg = Config(model_config(a.config, coord_features=features), SequenceConfig(reasoning="trace"))
            model = ActionReasoningModel(cfg, vocab)
            opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.0)
            g = torch.Generator().manual_seed(a.seed)
            row = {"target": target, "variant": variant}
            t0 = time.perf_counter()
            for step in range(1, a.steps + 1):
                images, instr, state, tg, _ = make_batch(target, a.batch_size, cfg, vocab, g, relative)
                loss, _ = model(images, instr, state, tg, torch.ones(a.batch_size, dtype=torch.bool))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if step in checkpoints:
                    row[f"cos@{step}"] = score(model, target, vocab, relative)
                    print(f"{target} {variant} step {step}: {row[f'cos@{step}']:.3f}", flush=True)
            row["train_s"] = time.perf_counter() - t0
            rows.append(row)
    cols = ["target", "variant", *(f"cos@{s}" for s in checkpoints), "train_s"]
    report(f"trace_reading_{a.config}", rows, cols,
           {"config": a.config, "steps": a.steps, "batch_size": a.batch_size, "lr": a.lr}, a.out)


if __name__ == "__main__":
    main()
