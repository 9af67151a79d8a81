"""``reasonact train``: config -> setup -> loop. Fits an Action Reasoning Model on a dataset and writes a
self-contained run directory (see :mod:`reasonact.checkpoint`).

Batches are a pure function of (seed, step, rank), so a resumed run continues exactly where it stopped.
Under ``torchrun`` the model is wrapped in DistributedDataParallel and each rank draws its own batches.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from pathlib import Path

import numpy as np
import torch

from .. import checkpoint as ckpt
from ..progress import progress_bar
from .config import TrainConfig
from .setup import FUSED_DEVICES, Setup, build, flops_per_sample, peak_flops, resolve_config


def step_seed(seed: int, step: int, rank: int) -> int:
    """The seed of one step's batch, masking and augmentation: resuming replays the same batches."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1, np.uint64)[0] >> 1)


def lr_at(step: int, cfg: TrainConfig) -> float:
    warmup = cfg.warmup_steps
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, cfg.steps - warmup))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def train(data: str | Path | None, out: str | Path, *, resume: bool = False, device: str | None = None,
          progress: bool = True, **overrides) -> Path:
    """Train a policy on ``data`` into the run directory ``out``; options are :class:`TrainConfig`'s fields
    (``config`` names a preset of :data:`reasonact.training.config.TRAIN_PRESETS`)."""
    cfg, data = resolve_config(data, Path(out), resume, overrides)
    s = build(data, out, cfg, resume=resume, device=device, progress=progress)
    if s.start >= cfg.steps:
        if s.main:
            print(f"{s.run} is already trained for {s.start} steps (asked {cfg.steps}); pass --steps N to train longer")
        return s.run
    if s.main:
        n_params = sum(p.numel() for p in s.model.parameters())
        frozen = sum(not p.requires_grad for p in s.model.parameters())
        print(f"model {s.spec.model.name}: {n_params / 1e6:.2f}M parameters, {s.seq_len} tokens per sample; "
              f"{len(s.source)} training frames; decoder {cfg.decoder}, reasoning {cfg.reasoning}; device {s.device}"
              + (f"; frozen: {frozen} tensors" if frozen else ""))
        if resume:
            ckpt.truncate_metrics(s.run, s.start)  # a resumed run writes its later lines again
    loop(s, progress and s.main)
    if s.world > 1:
        torch.distributed.barrier()
    return s.run


def batch_loss(net, cfg, batch: dict, g: torch.Generator):
    """The training loss (and its metrics) of one batch from the run's :class:`BatchSource`."""
    return net(batch["images"], batch["instr"], batch["state"], batch["targets"], batch["steered"], g,
               lambda_reason=cfg.lambda_reason, action_label_sigma=cfg.action_label_sigma,
               points=batch["points"], points_weight=cfg.points_weight, unreasoned=batch["unreasoned"])


def loop(s: Setup, show: bool) -> None:
    cfg, model = s.cfg, s.model
    per_rank = max(1, cfg.batch_size // s.world)
    bar_now = functools.partial(peak_flops, s.device, model, per_rank * s.seq_len, s.bf16)
    peak, fps = bar_now(), None
    if peak:  # the model FLOPs of a sample, counted once on two of the run's own
        few = s.source.sample(2, torch.Generator().manual_seed(cfg.seed))
        fps = flops_per_sample(model, lambda: batch_loss(model, cfg, few, torch.Generator().manual_seed(cfg.seed))[0], 2)
    if show and peak and s.device.type == "cpu":
        print(f"this CPU multiplies the model's matrices at {peak / 1e9:.0f} GFLOP/s ({'bf16' if s.bf16 else 'fp32'}, "
              f"{torch.get_num_threads()} threads); metrics.jsonl's mfu is the share of it a training step reaches")
    bar = progress_bar(range(s.start, cfg.steps), desc="train", disable=not show, initial=s.start, total=cfg.steps)
    t_start = t_last = t_saved = time.time()
    acc: dict[str, float] = {}
    n_acc, record, autocast = 0, None, s.autocast
    foreach = True if s.device.type in FUSED_DEVICES else None
    model.train()
    for step in bar:
        g = torch.Generator().manual_seed(step_seed(cfg.seed, step, s.rank))
        batch = s.source.sample(per_rank, g)
        for group in s.opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        with autocast:
            loss, m = batch_loss(s.net, cfg, batch, g)
        s.opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip, foreach=foreach)
        s.opt.step()
        if s.ema is not None:
            s.ema.update()
        acc = {k: acc.get(k, 0.0) + v for k, v in m.items()}
        n_acc += 1
        done = step + 1
        bar.set_postfix(loss=f"{acc['loss'] / n_acc:.3f}", act=f"{acc.get('acc_act', 0) / n_acc:.2f}", refresh=False)
        if done % cfg.log_every == 0 or done == cfg.steps:
            record = {"step": done, **{k: v / n_acc for k, v in acc.items()}, "lr": lr_at(step, cfg),
                      "grad_norm": float(gnorm), "samples_per_s": n_acc * per_rank * s.world / (time.time() - t_last),
                      "threads": torch.get_num_threads(),
                      "time": time.time()}
            if peak:
                record["mfu"] = record["samples_per_s"] * fps / (peak * s.world)
            if s.val_source is not None:  # the weights the run publishes
                with s.ema.applied() if s.ema is not None else contextlib.nullcontext():
                    record.update(validate(model, s.val_source, cfg, autocast))
            if s.main:
                ckpt.append_metrics(s.run, record)
            acc, n_acc, t_last = {}, 0, time.time()
        overdue = cfg.save_minutes > 0 and time.time() - t_saved >= 60 * cfg.save_minutes
        if s.main and (done % cfg.save_every == 0 or done == cfg.steps or overdue):
            t_saved = time.time()
            seconds = s.prior_seconds + time.time() - t_start
            ckpt.save_training_state(s.run, model, s.opt, done, seconds, s.ema)
            ckpt.write_summary(s.run, {"steps": done, "train_seconds": seconds, "device": str(s.device),
                                       "world_size": s.world, "last_log": record})
            if peak and s.device.type == "cpu" and done < cfg.steps:  # a VM's rate moves: the bar follows it
                t0 = time.time()
                peak = bar_now()
                t_last += time.time() - t0  # not training time
    bar.close()


@torch.no_grad()
def validate(model, source, cfg: TrainConfig, autocast, batches: int = 4) -> dict:
    model.eval()
    tot: dict[str, float] = {}
    for k in range(batches):
        g = torch.Generator().manual_seed(10_000 + k)
        b = source.sample(min(cfg.batch_size, 256), g)
        with autocast:
            _, m = model(b["images"], b["instr"], b["state"], b["targets"], None, g, points=b["points"],
                         points_weight=cfg.points_weight)
        for key, v in m.items():
            tot[f"val_{key}"] = tot.get(f"val_{key}", 0.0) + v / batches
    model.train()
    return tot
