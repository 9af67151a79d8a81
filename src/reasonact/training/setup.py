"""Build a training run from a config and a dataset: the dataset is read once here, the tokenizers are
fitted from it in one place (:func:`fit_tokenizers`), and the run directory is written through
:mod:`reasonact.checkpoint`. :mod:`reasonact.training.loop` then only steps the optimiser."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .. import checkpoint as ckpt
from ..checkpoint import DataSettings, RunSpec, StateNorm, Tokenizers
from ..data import DatasetError, ReasonactDataset, load_dataset
from ..data.pipeline import BatchSource, episodes_kept
from ..io import content_digest, read_json
from ..model.arm import ActionReasoningModel
from ..model.config import SequenceConfig, model_config
from ..model.layout import training_span
from ..tokenizers import ActionTokenizer, TextTokenizer, TraceTokenizer, Vocab
from ..transforms import encode_rationale
from .config import TrainConfig, train_config
from .ema import WeightAverage

# Devices with fused / foreach optimiser kernels (AdamW and the gradient clip use them there).
FUSED_DEVICES = ("cuda", "cpu")
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12, "4090": 165e12}


@dataclass
class Setup:
    """Everything the loop needs, built once."""

    run: Path
    cfg: TrainConfig
    spec: RunSpec
    model: ActionReasoningModel
    net: torch.nn.Module  # the model as trained: compiled and/or wrapped in DDP
    opt: torch.optim.Optimizer
    source: BatchSource
    val_source: BatchSource | None
    device: torch.device
    rank: int
    world: int
    start: int = 0  # first step to run (a resumed run continues from its checkpoint)
    prior_seconds: float = 0.0
    ema: WeightAverage | None = None  # --ema: the averaged weights that the run publishes

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def bf16(self) -> bool:
        # "auto" is resolved when a run starts (choose_precision); runs saved before that meant bf16 on CUDA only
        return self.cfg.precision == "bf16" or (self.cfg.precision == "auto" and self.device.type == "cuda")

    @property
    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    @property
    def seq_len(self) -> int:
        m = self.model
        return m.n_prefix + len(training_span(m.n_prefix, m.block_lengths(), not m.causal)[0])



def flops_per_sample(model: torch.nn.Module, loss_of: Callable[[], torch.Tensor], samples: int) -> float:
    """Training FLOPs per sample (forward + backward), counted by PyTorch on one real batch: every matmul,
    convolution and attention of the step, the conv stem and the heads included (nanoGPT's 6N per token
    plus attention leaves the stem out: ~10% of ``tiny``'s step). ``loss_of()`` runs the eager model on ``samples``
    samples and returns the loss; the gradients it leaves on ``model`` are cleared."""
    from torch.utils import flop_counter as fc

    aten = torch.ops.aten  # the CPU's fused attention kernels, which the counter does not know by itself
    cpu_attention = {aten._scaled_dot_product_flash_attention_for_cpu:
                     lambda q, k, v, *_, **__: fc.sdpa_flop_count(q, k, v),
                     aten._scaled_dot_product_flash_attention_for_cpu_backward:
                     lambda grad, q, k, v, *_, **__: fc.sdpa_backward_flop_count(grad, q, k, v)}
    with fc.FlopCounterMode(display=False, custom_mapping=cpu_attention) as counter:
        loss_of().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / samples


def peak_flops(device: torch.device, model=None, tokens: int = 0, bf16: bool = False) -> float | None:
    """The bar for MFU: a GPU's bf16 peak when it is one we know; on a CPU, the rate this machine multiplies
    the model's own matrices at (``tokens`` rows, this precision, torch's thread count), measured now."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return next((v for k, v in PEAK_FLOPS.items() if k in name), None)
    if model is None or device.type != "cpu":
        return None
    from ..machine import matmul_rate, model_matmul_shapes

    m = model.cfg.model
    return matmul_rate(model_matmul_shapes(m.d_model, m.mlp_hidden, tokens), torch.bfloat16 if bf16 else torch.float32,
                       seconds=1.0)


def can_compile(device: torch.device, say: bool = True) -> bool:
    """``torch.compile`` on a CPU generates C++: without a compiler the run trains uncompiled (and says so)
    instead of failing at its first step."""
    import shutil

    if device.type != "cpu" or any(shutil.which(c) for c in (os.environ.get("CXX", ""), "g++", "c++", "clang++") if c):
        return True
    if say:
        print("--compile: no C++ compiler found (g++ or $CXX), which torch.compile needs on a CPU; training "
              "uncompiled (install g++ to compile)")
    return False


def choose_precision(s: "Setup", batch_size: int) -> str:
    """``--precision auto``: bf16 on CUDA; on a CPU, bf16 only where the CPU computes it natively *and* a
    training step measures faster in it than in fp32 (3 forward and backward passes each, weights untouched)."""
    from ..machine import native_bf16

    if s.device.type == "cuda":
        return "bf16"
    if s.device.type != "cpu" or s.world > 1 or not native_bf16():
        return "fp32"
    batch = s.source.sample(batch_size, torch.Generator().manual_seed(0))

    def step_seconds(bf16: bool) -> float:
        times = []
        for k in range(4):
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss, _ = s.model(batch["images"], batch["instr"], batch["state"], batch["targets"], batch["steered"],
                                  torch.Generator().manual_seed(k))
            loss.backward()
            times.append(time.perf_counter() - t0)
        s.model.zero_grad(set_to_none=True)
        return min(times[1:])

    fp32, bf16 = step_seconds(False), step_seconds(True)
    choice = "bf16" if bf16 < fp32 else "fp32"
    print(f"precision {choice}: a training step takes {bf16 * 1000:.0f} ms in bf16 and {fp32 * 1000:.0f} ms in fp32 "
          "on this CPU (it computes bf16 natively)")
    return choice


def resolve_config(data, run: Path, resume: bool, overrides: dict) -> tuple[TrainConfig, str | Path]:
    """The run's settings: a preset with overrides for a new run, the saved ones for --resume."""
    if not resume:
        if ckpt.has_training_state(run) or ckpt.is_trained(run):
            raise FileExistsError(f"{run} already holds a run; pass --resume to continue it or choose another --out")
        if data is None:
            raise ValueError("--data is required (except with --resume)")
        cfg = train_config(**overrides)
        return replace(cfg, warmup=cfg.warmup_steps), data
    if not ckpt.has_training_state(run):
        raise FileNotFoundError(f"nothing to resume: {run / ckpt.TRAINING_STATE} does not exist; train without --resume first")
    cfg = ckpt.load_spec(run).train
    changed = {k: v for k, v in overrides.items() if v is not None and k != "steps" and getattr(cfg, k) != v}
    if changed:
        raise ValueError(f"--resume continues the saved run; these settings differ from it: {changed}")
    if overrides.get("steps"):
        cfg = replace(cfg, steps=overrides["steps"])
    return cfg, ckpt.data_path(run) if data is None else data


def fit_tokenizers(ds: ReasonactDataset, run: Path, cfg: TrainConfig, seq: SequenceConfig, device,
                   progress: bool) -> Tokenizers:
    """Fit the action, trace and text tokenizers on the dataset (or take the --init run's) and, when the
    sequence has a depth block, the depth tokenizer; all saved under RUN/tokenizers."""
    if cfg.init and not ckpt.has_tokenizers(run):
        ckpt.copy_tokenizers(cfg.init, run)
        tok = ckpt.load_tokenizers(run)
        if (tok.trace.relative != cfg.trace_relative or (tok.trace.depth is not None) != cfg.trace_depth
                or tok.trace.span != cfg.trace_span or tok.trace.offset_range != cfg.trace_offset_range):
            # the --init run's trace tokenizer, written as asked
            depth = (tok.trace.depth or ds.trace_depth_range()) if cfg.trace_depth else None
            trace = replace(tok.trace, relative=cfg.trace_relative, depth=depth, span=cfg.trace_span,
                            offset_range=cfg.trace_offset_range)
            ckpt.save_tokenizers(run, replace(tok, trace=trace))
    if ckpt.has_tokenizers(run):
        tok = ckpt.load_tokenizers(run)
    else:
        texts = [x for t in ds.tasks for x in (t["instruction"], *t["paraphrases"])]
        try:
            texts += sorted(set(ds.rationales() or []))
        except DatasetError:  # an incomplete annotation: not needed unless the sequence has a think block
            pass
        text = TextTokenizer.train(texts, cfg.text_vocab)
        trace = TraceTokenizer(ds.resolution, ds.resolution, seq.trace_points, relative=cfg.trace_relative,
                               depth=ds.trace_depth_range() if cfg.trace_depth else None, span=cfg.trace_span,
                               offset_range=cfg.trace_offset_range)
        sizes = {"text": text.vocab_size}
        if "depth" in seq.blocks and cfg.depth_vae:  # as many depth codes as the given tokenizer's codebook
            sizes["depth"] = read_json(Path(cfg.depth_vae) / "depth_vae.json")["config"]["codebook"]
        tok = Tokenizers(ActionTokenizer.from_stats(ds.stats), trace, text, Vocab.for_blocks(seq.blocks, **sizes))
        ckpt.save_tokenizers(run, tok)
    if "points" in seq.blocks and "<points>" not in tok.vocab.late:
        raise ValueError(f"the tokenizers of {cfg.init or run} were made without the points block's marker; "
                         f"train the {cfg.reasoning!r} mode in a new run directory without --init")
    if "depth" in seq.blocks and not ckpt.has_depth_tokenizer(run):
        from ..tokenizers.depth_vae import DepthVAE, train_depth_vae

        if cfg.depth_vae:
            vae = DepthVAE.load(cfg.depth_vae)
            if vae.cfg.codebook != tok.vocab.depth:
                raise ValueError(f"--depth-vae has {vae.cfg.codebook} codes; the vocabulary taken from "
                                 f"{cfg.init or run} holds {tok.vocab.depth}: give a tokenizer of {tok.vocab.depth} "
                                 f"codes (train-depth-vae --codebook {tok.vocab.depth}) or train in a new run directory")
            vae.save(ckpt.depth_dir(run), read_json(Path(cfg.depth_vae) / "depth_vae.json")["metrics"])
        else:
            print(f"training the depth tokenizer (a VQ-VAE, {cfg.depth_vae_steps} steps) on the dataset's depth maps")
            m = train_depth_vae(ds, ckpt.depth_dir(run), steps=cfg.depth_vae_steps, codebook=tok.vocab.depth,
                                progress=progress, device=str(device))
            print(f"depth tokenizer: {m['mae_m'] * 100:.1f} cm mean error on held-out episodes "
                  f"(the average depth image: {m['mean_image_mae_m'] * 100:.1f} cm)")
    return tok


def depth_codes(ds: ReasonactDataset, run: Path, device) -> np.ndarray:
    """Depth codes of every frame (N, K), computed once with the run's depth tokenizer and cached."""
    from ..tokenizers.depth_vae import load_depth_frames

    codes = ckpt.load_depth_codes(run, len(ds))
    if codes is None:
        vae = ckpt.load_depth_tokenizer(run, device)
        depths, _ = load_depth_frames(ds, vae.cfg.input_size)
        codes = np.concatenate([vae.encode(torch.from_numpy(depths[k: k + 1024]).to(device)).cpu().numpy()
                                for k in range(0, len(depths), 1024)]).astype(np.int16)
        ckpt.save_depth_codes(run, codes)
    return codes


def rationale_tokens(texts: list[str], tok: Tokenizers, length: int) -> torch.Tensor:
    """(N, length) rationale ids for every frame."""
    unique = {t: encode_rationale(t, tok.text, tok.vocab, length) for t in set(texts)}
    lengths = [len(tok.text.encode(t)) for t in unique]
    cut = sum(n >= length for n in lengths)
    if cut:
        print(f"warning: {cut} of {len(unique)} distinct rationales are longer than the {length}-token block "
              f"and are cut short; the longest takes {max(lengths)} tokens (--think-tokens {max(lengths) + 1} holds "
              "them all; a text tokenizer fitted on the rationales, a run without --init, makes them shorter)")
    return torch.stack([unique[t] for t in texts])


def _distributed(device: str | None) -> tuple[int, int, torch.device]:
    rank, local_rank, world = (int(os.environ.get(k, d)) for k, d in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1")))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    from ..machine import resolve_device

    dev = resolve_device(device, f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if dev.type == "cpu" and world == 1:
        _set_threads()
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        torch.backends.cuda.matmul.allow_tf32 = True
    return rank, world, dev


def _set_threads() -> None:
    from .. import machine

    before, n = torch.get_num_threads(), machine.training_threads()
    if n is not None and n != before:
        torch.set_num_threads(n)
        if n < before:
            print(f"{before - n} of {before} cores are busy: training with {n} thread(s) (REASONACT_THREADS=N sets it)")


def _check_views(ds: ReasonactDataset, cfg: TrainConfig) -> None:
    """``--views`` must leave views the dataset's simulator can render for the policy (the first not a wrist camera)."""
    from ..envs import SIMULATORS, simulator

    if cfg.views and ds.info.get("env") in SIMULATORS:
        try:
            simulator(ds.info["env"]).parse_cameras(ds.info["camera"])
        except ValueError as e:
            raise ValueError(f"--views {cfg.views!r}: {e}") from None


def _spec(ds: ReasonactDataset, cfg: TrainConfig, data) -> RunSpec:
    """The run's frozen description (the --init run's model, chunk and state normalisation when given)."""
    _check_views(ds, cfg)
    points = 0 if cfg.points_weight == 0 or ds.points is None else ds.points.shape[1]
    mcfg = model_config(cfg.config, **{"views": len(ds.views), "points": points, **cfg.model_overrides})
    seq = SequenceConfig(reasoning=cfg.reasoning, horizon=cfg.horizon, action_dim=ds.info["action_dim"],
                         state_dim=ds.info["state_dim"], trace_points=cfg.trace_points, trace_depth=cfg.trace_depth,
                         decoder=cfg.decoder, think_tokens=cfg.think_tokens)
    if "points" in seq.blocks:
        if ds.points is None:
            raise DatasetError(f"{ds.root} records no object points (observation.points), which the points block "
                               "writes; collect it again with this version of `reasonact collect`")
        seq = replace(seq, object_points=ds.points.shape[1])
    norm = StateNorm.of(ds.stats)
    if cfg.init:
        init = ckpt.load_spec(cfg.init)
        if init.sequence.decoder != cfg.decoder:
            raise ValueError(f"--init run was trained with the {init.sequence.decoder} decoder; pass --decoder "
                             f"{init.sequence.decoder}")
        if init.model.views != len(ds.views):
            raise ValueError(f"--init run reads {init.model.views} camera view(s); the dataset has {len(ds.views)} "
                             f"({', '.join(ds.views)})")
        mcfg, norm = init.model, init.state_norm  # the weights were trained on states normalised its way
        seq = replace(seq, horizon=init.sequence.horizon, instruction_tokens=init.sequence.instruction_tokens)
    return RunSpec(mcfg, seq, cfg, DataSettings.of(ds), norm, Vocab())


def build(data, out, cfg: TrainConfig, *, resume: bool, device: str | None, progress: bool) -> Setup:
    run = Path(out)
    rank, world, dev = _distributed(device)
    main = rank == 0
    ds = load_dataset(data, trace_points=cfg.trace_points, trace_span=cfg.trace_span, views=cfg.views)
    if len(ds) == 0:
        raise DatasetError(f"dataset at {data} has no frames")
    spec = _spec(ds, cfg, data)
    rationales = ds.rationales() if "think" in spec.sequence.blocks else None
    if "think" in spec.sequence.blocks and rationales is None:
        raise DatasetError(f"reasoning mode {cfg.reasoning!r} needs rationales; run `reasonact annotate --data {data}`")
    if main and not resume:
        ckpt.claim_run_directory(run, {"data": str(Path(data).resolve()), "frames": len(ds),
                                       "stats": content_digest(ds.stats), "train": content_digest(cfg.to_dict())})
    run.mkdir(parents=True, exist_ok=True)
    if main:
        tok = ckpt.load_tokenizers(run) if resume else fit_tokenizers(ds, run, cfg, spec.sequence, dev, progress)
    if world > 1:
        torch.distributed.barrier()
    if not main:
        tok = ckpt.load_tokenizers(run)
    spec = replace(spec, vocab=tok.vocab)
    sources = _batch_sources(ds, spec, tok, cfg, dev, main, progress and main,
                             depth_codes(ds, run, dev) if "depth" in spec.sequence.blocks else None,
                             rationale_tokens(rationales, tok, spec.sequence.think_tokens) if rationales else None)
    torch.manual_seed(cfg.seed)
    model = ActionReasoningModel(spec.config, tok.vocab).to(dev)
    if cfg.init and not resume:
        ckpt.load_weights(model, Path(cfg.init) / ckpt.WEIGHTS)
    freeze(model, cfg.freeze_layers)
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg.lr, betas=(0.9, 0.95), fused=dev.type in FUSED_DEVICES)
    setup = Setup(run, cfg, spec, model, model, opt, *sources, dev, rank, world)
    if not resume and cfg.precision == "auto":  # decided once, saved: a resumed run keeps it
        setup.cfg = cfg = replace(cfg, precision=choose_precision(setup, max(1, cfg.batch_size // world)))
        setup.spec = spec = replace(spec, train=cfg)
    if main and not resume:
        ckpt.save_spec(run, spec, ds.stats)
    if cfg.ema > 0:
        setup.ema = WeightAverage(model, cfg.ema)
    if resume:
        state = ckpt.load_training_state(run, dev)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if setup.ema is not None:
            setup.ema.load_state_dict(state["ema"])
        setup.start, setup.prior_seconds = state["step"], state.get("seconds", 0.0)
    net = model
    if cfg.compile and can_compile(dev, main):
        import logging

        # The loss values logged each step (`float(loss)`) break the graph; returning them as tensors instead
        # measured slower, so the break stays, and torch's advice about it is not printed into every run's log.
        logging.getLogger("torch._dynamo.variables.tensor").setLevel(logging.ERROR)
        # Static shapes: the output head is sliced per block (trace, then actions), and slicing by sizes that
        # torch had made symbolic failed to compile; the few distinct shapes each compile once instead.
        net = torch.compile(model, dynamic=False)
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(net, device_ids=[dev.index] if dev.type == "cuda" else None)
    setup.net = net
    return setup


def _batch_sources(ds, spec: RunSpec, tok, cfg: TrainConfig, dev, main: bool, show: bool, depth, rationales):
    """Training and validation batch sources; random-path frames only when steering, never in validation."""
    episodes = np.arange(len(ds.episodes))
    val_eps = episodes[(episodes % max(2, round(1 / cfg.val_fraction))) == 1] if cfg.val_fraction > 0 else episodes[:0]
    is_val = np.isin(ds.episode_row, val_eps) & ~ds.path_frames  # validation measures the unsteered task
    use = np.ones(len(ds), bool) if cfg.steer_prob > 0 else ~ds.path_frames
    if main and not use.all():
        print(f"leaving out {int((~use).sum())} frames of random-path episodes: they teach steering and are "
              "trained only with the trace given (--steer-prob > 0)")
    if cfg.episode_limit:
        kept = episodes_kept(ds, cfg.episode_limit)
        use &= kept
        if main:
            print(f"--episode-limit: training on {len(np.unique(ds.episode_row[kept]))} of {len(ds.episodes)} episodes "
                  f"({int(kept.sum())} of {len(ds)} frames)")
    s = spec.sequence
    common = dict(image_size=spec.model.image_size, horizon=s.horizon, blocks=s.blocks, instruction_tokens=s.instruction_tokens,
                  state_norm=spec.state_norm, depth_codes=depth, rationales=rationales, device=dev, progress=show)
    common["points"] = cfg.points_weight > 0
    source = BatchSource(ds, np.nonzero(use & ~is_val)[0], tok, augment=cfg.augment, jitter=cfg.jitter,
                         tint=cfg.tint, paraphrase_prob=cfg.paraphrase_prob, steer_prob=cfg.steer_prob,
                         depth_dropout=cfg.depth_dropout, rationale_dropout=cfg.rationale_dropout,
                         task_weights=cfg.task_weights, **common)
    val = BatchSource(ds, np.nonzero(is_val)[0], tok, augment=False, paraphrase_prob=0.0, **common) if is_val.any() else None
    return source, val


def freeze(model, k: int) -> list[str]:
    """Freeze the vision encoder and transformer layers [0, k) (none when k is 0); returns their names."""
    if k > len(model.layers):
        raise ValueError(f"--freeze-layers {k} exceeds the model's {len(model.layers)} layers")
    if k <= 0:
        return []
    names = []
    for name, p in model.named_parameters():
        if name.startswith("vision.") or any(name.startswith(f"layers.{i}.") for i in range(k)):
            p.requires_grad_(False)
            names.append(name)
    return names
