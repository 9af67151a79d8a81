"""``reasonact train``: fit an Action Reasoning Model on a dataset and write a self-contained run dir.

    RUN/config.json        model, sequence and training settings; the dataset it came from
    RUN/model.safetensors  weights for inference
    RUN/stats.json         the dataset's action/state statistics
    RUN/tokenizers/        action.json, trace.json, text.json, depth/ (VQ-VAE) when used
    RUN/metrics.jsonl      one JSON line per log step
    RUN/checkpoint.pt      everything --resume needs (weights, optimiser, step), written atomically

Batches are a pure function of (seed, step, rank), so a resumed run continues exactly where it stopped.
Under ``torchrun`` the model is wrapped in DistributedDataParallel and each rank draws its own batches.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from .data import DatasetError, load_dataset
from .io import atomic_path, read_json, write_json_atomic
from .model.config import Config, SequenceConfig, model_config, parse_mode
from .model.layout import training_span


@dataclass
class TrainConfig:
    config: str = "tiny"
    decoder: str = "diffusion"
    reasoning: str = "act"
    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: int = 100
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    horizon: int = 8
    trace_points: int = 5
    think_tokens: int = 56
    augment: bool = True
    paraphrase_prob: float = 0.5
    steer_prob: float = 0.0  # share of samples whose trace is given (steering), not predicted
    lambda_reason: float = 1.0
    action_label_sigma: float = 0.0  # >0: Gaussian soft labels over neighbouring action bins
    text_vocab: int = 512
    depth_vae: str | None = None  # a trained depth tokenizer; trained into RUN/tokenizers/depth if absent
    depth_vae_steps: int = 1500
    val_fraction: float = 0.0
    log_every: int = 25
    save_every: int = 500
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16
    compile: bool = False
    init: str | None = None  # start from another run's weights (its tokenizers and state normalisation are reused)
    freeze_layers: int = 0  # freeze the vision encoder and the lowest K transformer layers
    model_overrides: dict | None = None


PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12, "4090": 165e12}


def _peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_FLOPS.items() if k in name), None)


def flops_per_sample(model, seq_len: int) -> float:
    """Training FLOPs per sample (forward + backward), nanoGPT's estimate: 6N per token plus attention."""
    m = model.cfg.model
    n = sum(p.numel() for p in model.layers.parameters())
    return 6 * n * seq_len + 12 * m.n_layers * m.d_model * seq_len * seq_len


def step_seed(seed: int, step: int, rank: int) -> int:
    """The seed of one step's batch, masking and augmentation: resuming replays the same batches."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1, np.uint64)[0] >> 1)


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


# ---------------------------------------------------------------------------------------------
def _dist() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), world


def _build_tokenizers(ds, run: Path, cfg: TrainConfig, seq: SequenceConfig, device, progress: bool):
    """Fit the tokenizers (or take the --init run's) and save them under RUN/tokenizers; add a depth
    tokenizer when the reasoning mode needs one and there is none yet."""
    import shutil

    from .data.pipeline import Tokenizers
    from .tokenizers import ActionTokenizer, TextTokenizer, TraceTokenizer, Vocab
    from .tokenizers.depth_vae import DepthVAE, train_depth_vae

    tdir = run / "tokenizers"
    if cfg.init and not (tdir / "action.json").exists():
        shutil.copytree(Path(cfg.init) / "tokenizers", tdir, dirs_exist_ok=True)
    if (tdir / "action.json").exists():
        tok = load_tokenizers(run)
    else:
        tdir.mkdir(parents=True, exist_ok=True)
        texts = [x for t in ds.tasks for x in (t["instruction"], *t["paraphrases"])]
        from .reasoning.annotate import load_rationales

        try:
            texts += sorted(set(load_rationales(ds) or []))
        except DatasetError:
            pass
        tok = Tokenizers(ActionTokenizer.from_stats(ds.stats), TraceTokenizer(ds.resolution, ds.resolution, seq.trace_points),
                         TextTokenizer.train(texts, cfg.text_vocab), None)
        tok.vocab = Vocab(text=tok.text.vocab_size)
        write_json_atomic(tdir / "action.json", tok.action.to_dict())
        write_json_atomic(tdir / "trace.json", tok.trace.to_dict())
        write_json_atomic(tdir / "vocab.json", tok.vocab.to_dict())
        tok.text.save(tdir / "text.json")
    if "depth" in seq.blocks and not (tdir / "depth" / "depth_vae.json").exists():
        if cfg.depth_vae:
            vae = DepthVAE.load(cfg.depth_vae)
            if vae.cfg.codebook != tok.vocab.depth:
                raise ValueError(f"--depth-vae has {vae.cfg.codebook} codes; the vocabulary holds {tok.vocab.depth}")
            vae.save(tdir / "depth", read_json(Path(cfg.depth_vae) / "depth_vae.json")["metrics"])
        else:
            print("training the depth tokenizer (a VQ-VAE) on the dataset's depth maps")
            m = train_depth_vae(ds.root, tdir / "depth", steps=cfg.depth_vae_steps, codebook=tok.vocab.depth,
                                progress=progress, device=str(device))
            print(f"depth tokenizer: {m['mae_m'] * 100:.1f} cm mean error on held-out episodes "
                  f"(the average depth image: {m['mean_image_mae_m'] * 100:.1f} cm)")
    return tok


def load_tokenizers(run: Path):
    from .data.pipeline import Tokenizers
    from .tokenizers import ActionTokenizer, TextTokenizer, TraceTokenizer, Vocab

    tdir = Path(run) / "tokenizers"
    return Tokenizers(
        ActionTokenizer.from_dict(read_json(tdir / "action.json")),
        TraceTokenizer.from_dict(read_json(tdir / "trace.json")),
        TextTokenizer.load(tdir / "text.json"),
        Vocab(**read_json(tdir / "vocab.json")),
    )


def depth_codes_for(ds, run: Path, device, progress: bool) -> np.ndarray:
    """Depth codes of every frame (N, K), computed once with the run's depth tokenizer and cached."""
    from .tokenizers.depth_vae import DepthVAE, load_depth_frames

    cache = run / "tokenizers" / "depth" / f"codes-{len(ds)}.npy"
    if cache.exists():
        return np.load(cache)
    vae = DepthVAE.load(run / "tokenizers" / "depth", device)
    depths, _ = load_depth_frames(ds, vae.cfg.input_size)
    codes = np.concatenate([vae.encode(torch.from_numpy(depths[k: k + 1024]).to(device)).cpu().numpy()
                            for k in range(0, len(depths), 1024)]).astype(np.int16)
    with atomic_path(cache) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, codes)
    return codes


def rationale_tokens(ds, tok, length: int) -> torch.Tensor | None:
    """(N, length) rationale ids for every frame, when the dataset has been annotated."""
    from .data.pipeline import encode_rationale
    from .reasoning.annotate import load_rationales

    texts = load_rationales(ds)
    if texts is None:
        return None
    unique = {t: encode_rationale(t, tok.text, tok.vocab, length) for t in set(texts)}
    cut = sum(len(tok.text.encode(t)) >= length for t in unique)
    if cut:
        print(f"warning: {cut} of {len(unique)} distinct rationales are longer than the {length}-token block "
              "and are cut short (a text tokenizer fitted on the rationales makes them shorter)")
    return torch.stack([unique[t] for t in texts])


# ---------------------------------------------------------------------------------------------
def train(data: str | Path, out: str | Path, *, resume: bool = False, device: str | None = None,
          progress: bool = True, **overrides) -> Path:
    """Train a policy on ``data`` into the run directory ``out``; see :class:`TrainConfig` for options."""
    from tqdm.auto import tqdm

    from .data.pipeline import BatchSource
    from .model.arm import ActionReasoningModel

    run = Path(out)
    ckpt_path = run / "checkpoint.pt"
    known = {f.name for f in fields(TrainConfig)}
    bad = set(overrides) - known
    if bad:
        raise ValueError(f"unknown training option(s) {sorted(bad)}; options: {sorted(known)}")
    if resume:
        if not ckpt_path.exists():
            raise FileNotFoundError(f"nothing to resume: {ckpt_path} does not exist; train without --resume first")
        saved = read_json(run / "config.json")
        cfg = TrainConfig(**saved["train"])
        changed = {k: v for k, v in overrides.items() if v is not None and getattr(cfg, k) != v and k != "steps"}
        if changed:
            raise ValueError(f"--resume continues the saved run; these settings differ from it: {changed}")
        if overrides.get("steps"):
            cfg.steps = overrides["steps"]
        data = saved["data"]["path"] if data is None else data
    else:
        if ckpt_path.exists() or (run / "model.safetensors").exists():
            raise FileExistsError(f"{run} already holds a run; pass --resume to continue it or choose another --out")
        cfg = TrainConfig(**{k: v for k, v in overrides.items() if v is not None})
    if cfg.decoder not in ("ar", "diffusion"):
        raise ValueError(f"--decoder must be ar or diffusion, got {cfg.decoder!r}")
    parse_mode(cfg.reasoning)
    mcfg = model_config(cfg.config, **(cfg.model_overrides or {}))

    rank, local_rank, world = _dist()
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    if device is None:
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        torch.backends.cuda.matmul.allow_tf32 = True
    main = rank == 0
    show = progress and main

    ds = load_dataset(data, trace_points=cfg.trace_points)
    if len(ds) == 0:
        raise DatasetError(f"dataset at {data} has no frames")
    seq = SequenceConfig(mode=cfg.reasoning, horizon=cfg.horizon, action_dim=ds.info["action_dim"],
                         state_dim=ds.info["state_dim"], trace_points=cfg.trace_points, decoder=cfg.decoder,
                         think_tokens=cfg.think_tokens)
    if cfg.init:
        init_cfg = Config.from_dict(read_json(Path(cfg.init) / "config.json"))
        mcfg = init_cfg.model
        if init_cfg.sequence.decoder != cfg.decoder:
            d = init_cfg.sequence.decoder
            raise ValueError(f"--init run was trained with the {d} decoder; pass --decoder {d}")
        seq = SequenceConfig(**{**asdict(seq), "horizon": init_cfg.sequence.horizon,
                                "instruction_tokens": init_cfg.sequence.instruction_tokens})
    if not 0 <= cfg.steer_prob <= 1:
        raise ValueError(f"--steer-prob is a share of samples, from 0 to 1; got {cfg.steer_prob}")
    if cfg.steer_prob > 0 and "trace" not in seq.blocks:
        raise ValueError(f"--steer-prob gives samples their trace, but reasoning {cfg.reasoning!r} has no trace "
                         "block; use --reasoning trace or depth+trace")
    config = Config(mcfg, seq)
    run.mkdir(parents=True, exist_ok=True)
    if main:
        tok = load_tokenizers(run) if resume else _build_tokenizers(ds, run, cfg, seq, dev, show)
    if world > 1:
        torch.distributed.barrier()
    if not main:
        tok = load_tokenizers(run)

    state_mean = np.asarray(ds.stats["state"]["mean"], np.float32)
    state_std = np.maximum(np.asarray(ds.stats["state"]["std"], np.float32), 1e-3)
    if cfg.init:  # the weights were trained on states normalised the --init run's way: keep it
        norm = read_json(Path(cfg.init) / "config.json")["state_norm"]
        state_mean, state_std = np.asarray(norm["mean"], np.float32), np.asarray(norm["std"], np.float32)
    if main and not resume:
        import shutil

        shutil.copy(ds.root / "meta" / "stats.json", run / "stats.json")
        write_json_atomic(run / "config.json", {
            **config.to_dict(),
            "train": asdict(cfg),
            "data": {"path": str(Path(data).resolve()), "tasks": ds.task_names, "resolution": ds.resolution,
                     "camera": ds.info["camera"], "state_mode": ds.info["state_mode"], "env": ds.info["env"],
                     "suite": ds.info["suite"], "seeds": ds.seeds(), "frames": len(ds),
                     "episodes": len(ds.episodes)},
            "state_norm": {"mean": state_mean.tolist(), "std": state_std.tolist()},
            "vocab": tok.vocab.to_dict(),
        })

    depth_codes = depth_codes_for(ds, run, dev, show) if "depth" in seq.blocks else None
    rationales = rationale_tokens(ds, tok, seq.think_tokens) if "think" in seq.blocks else None
    if "think" in seq.blocks and rationales is None:
        raise DatasetError(f"reasoning mode {cfg.reasoning!r} needs rationales; run `reasonact annotate --data {data}`")
    episodes = np.arange(len(ds.episodes))
    val_eps = episodes[(episodes % max(2, round(1 / cfg.val_fraction))) == 1] if cfg.val_fraction > 0 else episodes[:0]
    is_val = np.isin(ds.episode_row, val_eps)
    use = np.ones(len(ds), bool) if cfg.steer_prob > 0 else ~ds.path_frames
    if main and not use.all():
        print(f"leaving out {int((~use).sum())} frames of random-path episodes: they teach steering and are "
              "trained only with the trace given (--steer-prob > 0)")
    is_val &= ~ds.path_frames  # validation measures the unsteered task
    common = dict(image_size=mcfg.image_size, horizon=seq.horizon, blocks=seq.blocks,
                  instruction_tokens=seq.instruction_tokens, state_mean=state_mean, state_std=state_std,
                  depth_codes=depth_codes, rationales=rationales, device=dev, progress=show)
    source = BatchSource(ds, np.nonzero(use & ~is_val)[0], tok, augment=cfg.augment, paraphrase_prob=cfg.paraphrase_prob,
                         steer_prob=cfg.steer_prob, **common)
    val_source = None
    if is_val.any():
        val_source = BatchSource(ds, np.nonzero(is_val)[0], tok, augment=False, paraphrase_prob=0.0, **common)

    torch.manual_seed(cfg.seed)
    model = ActionReasoningModel(config, tok.vocab).to(dev)
    if cfg.init and not resume:
        from .policy import load_weights

        load_weights(model, Path(cfg.init) / "model.safetensors")
    frozen = freeze(model, cfg.freeze_layers) if cfg.freeze_layers else []
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg.lr, betas=(0.9, 0.95), fused=dev.type == "cuda")
    start, prior_seconds = 0, 0.0
    if resume:
        ck = torch.load(ckpt_path, map_location=dev, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        start, prior_seconds = ck["step"], ck.get("seconds", 0.0)
    if start >= cfg.steps:
        if main:
            print(f"{run} is already trained for {start} steps (asked {cfg.steps}); pass --steps N to train longer")
        return run
    net = model
    if cfg.compile:
        net = torch.compile(model)
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(net, device_ids=[dev.index] if dev.type == "cuda" else None)
    use_bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and dev.type == "cuda")
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16)
    per_rank = max(1, cfg.batch_size // world)
    seq_len = model.n_prefix + len(training_span(model.n_prefix, model.block_lengths(), cfg.decoder == "diffusion")[0])
    peak = _peak_flops(dev)
    fps = flops_per_sample(model, seq_len)
    if main:
        n_params = sum(p.numel() for p in model.parameters())
        print(f"model {mcfg.name}: {n_params / 1e6:.2f}M parameters, {seq_len} tokens per sample; "
              f"{len(source)} training frames; decoder {cfg.decoder}, reasoning {cfg.reasoning}; device {dev}"
              + (f"; frozen: {len(frozen)} tensors" if frozen else ""))

    metrics_file = run / "metrics.jsonl"
    if main and resume and metrics_file.exists():  # drop log lines past the checkpoint
        lines = [ln for ln in metrics_file.read_text().splitlines() if ln and json.loads(ln)["step"] <= start]
        metrics_file.write_text("".join(ln + "\n" for ln in lines))
    bar = tqdm(range(start, cfg.steps), desc="train", disable=not show, initial=start, total=cfg.steps)
    t_start = time.time()
    acc: dict[str, float] = {}
    rec: dict | None = None
    n_acc, t_last, samples = 0, time.time(), 0
    model.train()
    for step in bar:
        g = torch.Generator().manual_seed(step_seed(cfg.seed, step, rank))
        batch = source.sample(per_rank, g)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        with autocast:
            loss, m = net(batch["images"], batch["instr"], batch["state"], batch["targets"], batch["steered"], g,
                          lambda_reason=cfg.lambda_reason, action_label_sigma=cfg.action_label_sigma)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        samples += per_rank * world
        for k, v in m.items():
            acc[k] = acc.get(k, 0.0) + v
        n_acc += 1
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            dt = time.time() - t_last
            rec = {"step": done, **{k: v / n_acc for k, v in acc.items()}, "lr": lr_at(step, cfg),
                   "grad_norm": float(gnorm), "samples_per_s": samples / dt, "time": time.time()}
            if peak:
                rec["mfu"] = rec["samples_per_s"] * fps / (peak * world)
            if val_source is not None:
                rec.update(validate(model, val_source, cfg, autocast))
            if main:
                with open(metrics_file, "a") as f:
                    f.write(json.dumps(rec) + "\n")
                bar.set_postfix(loss=f"{rec['loss']:.3f}", act=f"{rec.get('acc_act', 0):.2f}",
                                sps=f"{rec['samples_per_s']:.0f}")
            acc, n_acc, t_last, samples = {}, 0, time.time(), 0
        if main and (done % cfg.save_every == 0 or done == cfg.steps):
            seconds = prior_seconds + time.time() - t_start
            save_checkpoint(run, model, opt, done, seconds)
            write_json_atomic(run / "summary.json", {"steps": done, "train_seconds": seconds, "device": str(dev),
                                                     "world_size": world, "last_log": rec})
    bar.close()
    if world > 1:
        torch.distributed.barrier()
    return run


@torch.no_grad()
def validate(model, source, cfg: TrainConfig, autocast, batches: int = 4) -> dict:
    model.eval()
    tot: dict[str, float] = {}
    for k in range(batches):
        g = torch.Generator().manual_seed(10_000 + k)
        b = source.sample(min(cfg.batch_size, 256), g)
        with autocast:
            _, m = model(b["images"], b["instr"], b["state"], b["targets"], None, g)
        for key, v in m.items():
            tot[f"val_{key}"] = tot.get(f"val_{key}", 0.0) + v / batches
    model.train()
    return tot


def freeze(model, k: int) -> list[str]:
    """Freeze the vision encoder and transformer layers [0, k); returns the frozen parameter names."""
    if k > len(model.layers):
        raise ValueError(f"--freeze-layers {k} exceeds the model's {len(model.layers)} layers")
    names = []
    for name, p in model.named_parameters():
        if name.startswith("vision.") or any(name.startswith(f"layers.{i}.") for i in range(k)):
            p.requires_grad_(False)
            names.append(name)
    return names


def save_checkpoint(run: Path, model, opt, step: int, seconds: float = 0.0) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k != "head.weight"}
    with atomic_path(run / "model.safetensors") as tmp:
        save_file(state, str(tmp), metadata={"step": str(step)})
    with atomic_path(run / "checkpoint.pt") as tmp:
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "seconds": seconds}, tmp)
