"""The run directory: a frozen description of a run and every file in it. Nothing else reads or writes
run files.

    RUN/config.json          RunSpec: model, sequence and training settings, data settings, state
                             normalisation, vocabulary
    RUN/model.safetensors    weights for inference
    RUN/stats.json           the dataset's action/state statistics
    RUN/tokenizers/          action.json, trace.json, vocab.json, text.json; depth/ (VQ-VAE) when used
    RUN/metrics.jsonl        one JSON line per log step
    RUN/summary.json         steps, seconds, device, last log line
    RUN/checkpoint.pt        everything --resume needs (weights, optimiser, step), written atomically

Run directories written by earlier versions load unchanged (``RunSpec.from_dict`` reads their names).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from .interface import PolicyInfo
from .io import atomic_path, read_json, read_jsonl, write_json_atomic
from .model.config import Config, ModelConfig, SequenceConfig
from .tokenizers import ActionTokenizer, TextTokenizer, TraceTokenizer, Vocab
from .training.config import TrainConfig

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
TRAINING_STATE = "checkpoint.pt"
STATS = "stats.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
TOKENIZERS = "tokenizers"
BUILD = "build.json"  # what a run is built from: an unfinished run's pieces are reused only for the same build


@dataclass(frozen=True)
class DataSettings:
    """The dataset a run was trained on, as far as a policy needs it."""

    path: str
    tasks: tuple[str, ...]
    resolution: int
    camera: str = "corner2"
    state_mode: str = "goal"
    env: str = "metaworld"
    suite: str = "mt10"
    seeds: dict = field(default_factory=dict)  # task -> every layout collection used or tried
    frames: int = 0
    episodes: int = 0
    fast_render: bool = False  # LIBERO frames collected with --fast-render

    @property
    def views(self) -> tuple[str, ...]:
        """The camera views the policy reads, in order (``camera`` names them comma-separated)."""
        return tuple(self.camera.split(","))

    @classmethod
    def of(cls, ds) -> "DataSettings":
        i = ds.info
        return cls(path=str(Path(ds.root).resolve()), tasks=tuple(ds.task_names), resolution=ds.resolution,
                   camera=i.get("camera", "corner2"), state_mode=i.get("state_mode", "goal"),
                   env=i.get("env", "metaworld"), suite=i.get("suite", ""), seeds=ds.seeds(), frames=len(ds),
                   episodes=len(ds.episodes), fast_render=bool(i.get("fast_render", False)))


@dataclass(frozen=True)
class StateNorm:
    mean: np.ndarray  # (state_dim,) float32
    std: np.ndarray  # (state_dim,) float32

    @classmethod
    def of(cls, stats: dict) -> "StateNorm":
        return cls(np.asarray(stats["state"]["mean"], np.float32),
                   np.maximum(np.asarray(stats["state"]["std"], np.float32), 1e-3))

    def __call__(self, state: np.ndarray) -> np.ndarray:
        return ((np.asarray(state, np.float32) - self.mean) / self.std).astype(np.float32)


@dataclass(frozen=True)
class RunSpec:
    """Everything that describes a trained run, apart from its weights and tokenizers."""

    model: ModelConfig
    sequence: SequenceConfig
    train: TrainConfig
    data: DataSettings
    state_norm: StateNorm
    vocab: Vocab

    @property
    def config(self) -> Config:
        return Config(self.model, self.sequence)

    @property
    def steer_trained(self) -> bool:
        """Trained with given traces (``--steer-prob``): steered calls hide the task part of the state."""
        return self.train.steer_prob > 0

    def policy_info(self, checkpoint: str | Path) -> PolicyInfo:
        s, d = self.sequence, self.data
        return PolicyInfo(checkpoint=str(checkpoint), resolution=d.resolution, decoder=s.decoder,
                          reasoning=s.reasoning, blocks=s.blocks, horizon=s.horizon, action_dim=s.action_dim,
                          state_dim=s.state_dim, tasks=d.tasks, env=d.env, camera=d.camera, state_mode=d.state_mode,
                          steer_trained=self.steer_trained, trace_points=s.trace_points, trace_depth=s.trace_depth,
                          trace_span=self.train.trace_span, training_seeds={t: list(v) for t, v in d.seeds.items()},
                          fast_render=d.fast_render, default_execute=self.train.execute)

    def to_dict(self) -> dict:
        data = {f.name: getattr(self.data, f.name) for f in fields(DataSettings)}
        return {**self.config.to_dict(), "train": self.train.to_dict(), "data": {**data, "tasks": list(self.data.tasks)},
                "state_norm": {"mean": self.state_norm.mean.tolist(), "std": self.state_norm.std.tolist()},
                "vocab": self.vocab.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "RunSpec":
        config = Config.from_dict(d)
        known = {f.name for f in fields(DataSettings)}
        data = {k: v for k, v in d["data"].items() if k in known}
        train = dict(d.get("train", {}))
        if train.get("warmup") is not None and train["warmup"] > train.get("steps", train["warmup"]):
            train["warmup"] = train["steps"]  # runs saved before warm-up was checked against the steps
        return cls(config.model, config.sequence, TrainConfig.from_dict(train),
                   DataSettings(**{**data, "tasks": tuple(data["tasks"])}),
                   StateNorm(np.asarray(d["state_norm"]["mean"], np.float32), np.asarray(d["state_norm"]["std"], np.float32)),
                   Vocab(**d["vocab"]))


@dataclass
class Tokenizers:
    action: ActionTokenizer
    trace: TraceTokenizer
    text: TextTokenizer
    vocab: Vocab


# -- the run as a whole ---------------------------------------------------------------------------------
def is_trained(run: str | Path) -> bool:
    return (Path(run) / CONFIG).exists() and (Path(run) / WEIGHTS).exists()


def save_spec(run: str | Path, spec: RunSpec, stats: dict) -> None:
    write_json_atomic(Path(run) / STATS, stats)
    write_json_atomic(Path(run) / CONFIG, spec.to_dict())


def load_spec(run: str | Path) -> RunSpec:
    run = Path(run)
    if not (run / CONFIG).exists():
        raise FileNotFoundError(f"no run at {run} (no {CONFIG}); train one with `reasonact train --data DIR --out RUN`")
    return RunSpec.from_dict(read_json(run / CONFIG))


def data_path(run: str | Path) -> str:
    """The dataset a run was trained on (for ``train --resume`` without ``--data``)."""
    return read_json(Path(run) / CONFIG)["data"]["path"]


@dataclass
class LoadedRun:
    root: Path
    spec: RunSpec
    tokenizers: Tokenizers

    @property
    def weights(self) -> Path:
        return self.root / WEIGHTS


def load_run(run: str | Path) -> LoadedRun:
    """A trained run's description and tokenizers (weights: :func:`load_weights` into a model)."""
    run = Path(run)
    if not is_trained(run):
        raise FileNotFoundError(f"no trained policy at {run} ({CONFIG} or {WEIGHTS} missing); "
                                "train one with `reasonact train --data DIR --out RUN`")
    return LoadedRun(run, load_spec(run), load_tokenizers(run))


# -- tokenizers ------------------------------------------------------------------------------------------
def has_tokenizers(run: str | Path) -> bool:
    return (Path(run) / TOKENIZERS / "action.json").exists()


def save_tokenizers(run: str | Path, tok: Tokenizers) -> None:
    tdir = Path(run) / TOKENIZERS
    tdir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(tdir / "trace.json", tok.trace.to_dict())
    write_json_atomic(tdir / "vocab.json", tok.vocab.to_dict())
    tok.text.save(tdir / "text.json")
    write_json_atomic(tdir / "action.json", tok.action.to_dict())  # last: its presence means all are there


def copy_tokenizers(source_run: str | Path, run: str | Path) -> None:
    shutil.copytree(Path(source_run) / TOKENIZERS, Path(run) / TOKENIZERS, dirs_exist_ok=True)


def load_tokenizers(run: str | Path) -> Tokenizers:
    tdir = Path(run) / TOKENIZERS
    return Tokenizers(
        ActionTokenizer.from_dict(read_json(tdir / "action.json")),
        TraceTokenizer.from_dict(read_json(tdir / "trace.json")),
        TextTokenizer.load(tdir / "text.json"),
        Vocab(**read_json(tdir / "vocab.json")),
    )


def depth_dir(run: str | Path) -> Path:
    return Path(run) / TOKENIZERS / "depth"


def has_depth_tokenizer(run: str | Path) -> bool:
    return (depth_dir(run) / "depth_vae.json").exists()


def load_depth_tokenizer(run: str | Path, device="cpu"):
    from .tokenizers.depth_vae import DepthVAE

    return DepthVAE.load(depth_dir(run), device)


def load_depth_codes(run: str | Path, frames: int) -> np.ndarray | None:
    cache = depth_dir(run) / f"codes-{frames}.npy"
    return np.load(cache) if cache.exists() else None


def save_depth_codes(run: str | Path, codes: np.ndarray) -> None:
    with atomic_path(depth_dir(run) / f"codes-{len(codes)}.npy") as tmp:
        with open(tmp, "wb") as f:
            np.save(f, codes)


def export_run(run: str | Path, out: str | Path, model) -> Path:
    """What a policy needs, and only that, from ``run`` to ``out`` with ``model``'s weights: config, stats,
    tokenizers (the depth tokenizer without its training cache). No optimiser state, no logs."""
    run, out = Path(run), Path(out)
    _copy_policy_files(run, out)
    from safetensors import safe_open

    with safe_open(str(run / WEIGHTS), "pt") as f:  # the training step the weights come from
        step = int((f.metadata() or {}).get("step", -1))
    save_weights(out, model, step)
    return out


def export_own_weights(run: str | Path, out: str | Path) -> Path:
    """A run trained with ``--ema`` publishes the averaged weights; this writes its own (un-averaged) weights
    at its last checkpoint to ``out`` as a policy, so that the one run can be evaluated both ways: what the
    average alone changes, with the training identical."""
    run, out = Path(run), Path(out)
    if not has_training_state(run):
        raise FileNotFoundError(f"{run} has no {TRAINING_STATE} (a shipped checkpoint keeps only the published "
                                "weights); name the run directory that `reasonact train --out` wrote")
    state = load_training_state(run, "cpu")
    if "ema" not in state:
        raise ValueError(f"{run} was trained without --ema: its {WEIGHTS} already holds its own weights")
    _copy_policy_files(run, out)
    _write_weights(out, state["model"], {"step": str(state["step"]), "weights": "own"})
    return out


def _copy_policy_files(run: Path, out: Path) -> None:
    if out.resolve() == run.resolve():
        raise ValueError(f"cannot export {run} onto itself; name another directory")
    if out.exists() and any(out.iterdir()) and not is_trained(out):
        raise FileExistsError(f"{out} exists and is not a policy directory; name a new or empty directory")
    out.mkdir(parents=True, exist_ok=True)
    for name in (CONFIG, STATS):
        shutil.copy2(run / name, out / name)
    shutil.copytree(run / TOKENIZERS, out / TOKENIZERS, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("codes-*.npy"))


# -- weights and training state -------------------------------------------------------------------------
def save_weights(run: str | Path, model, step: int) -> None:
    _write_weights(run, model.state_dict(), {"step": str(step)})


def _write_weights(run: str | Path, state: dict, metadata: dict) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in state.items() if k != "head.weight"}  # head: tied
    with atomic_path(Path(run) / WEIGHTS) as tmp:
        save_file(state, str(tmp), metadata=metadata)


def load_weights(model, path: str | Path) -> None:
    import torch
    from safetensors.torch import load_file

    try:
        weights = load_file(str(path))
    except Exception as e:  # safetensors' own error type, OSError, ...: the file, not the code
        raise ValueError(f"{path} cannot be read as safetensors ({e}): the file is damaged or incomplete; copy it "
                         "again or re-train") from None
    missing, unexpected = model.load_state_dict(weights, strict=False)
    # head.weight is tied to the embedding; weights saved before coordinate features existed load with
    # those features off (their projection is set to zero).
    if unexpected or set(missing) - {"head.weight", "coord_emb.proj.weight"}:
        raise ValueError(f"weights at {path} do not fit the model (missing {missing}, unexpected {unexpected})")
    if "coord_emb.proj.weight" in missing and model.coord_emb is not None:
        torch.nn.init.zeros_(model.coord_emb.proj.weight)


def has_training_state(run: str | Path) -> bool:
    return (Path(run) / TRAINING_STATE).exists()


RUN_FILES = (CONFIG, STATS, METRICS, SUMMARY, TOKENIZERS, BUILD, WEIGHTS)


def claim_run_directory(run: str | Path, build: dict) -> None:
    """Before a new run writes into ``run``: an empty or new directory is taken; one left by an unfinished run
    (killed or failed before its first checkpoint) is continued only if it was being built from the same data
    and settings (its fitted tokenizers are kept, its log restarts); anything else is refused, so that no
    run silently trains with another dataset's tokenizers or statistics."""
    run = Path(run)
    found = [n for n in RUN_FILES if (run / n).exists()]
    if found:
        before = read_json(run / BUILD) if (run / BUILD).exists() else None
        if before != build:
            what = "other data or settings" if before is not None else "an unknown build"
            raise FileExistsError(f"{run} holds an unfinished run ({', '.join(found)}) from {what}; delete it or "
                                  "choose another --out")
        (run / METRICS).unlink(missing_ok=True)
        print(f"{run}: continuing an unfinished build of the same run (its tokenizers are kept)")
    run.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run / BUILD, build)


def save_training_state(run: str | Path, model, opt, step: int, seconds: float, ema=None) -> None:
    """Weights for inference (the averaged ones when ``ema`` is given) and everything --resume needs, each
    written atomically."""
    import contextlib

    import torch

    with ema.applied() if ema is not None else contextlib.nullcontext():
        save_weights(run, model, step)
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "seconds": seconds}
    if ema is not None:
        state["ema"] = ema.state_dict()
    with atomic_path(Path(run) / TRAINING_STATE) as tmp:
        torch.save(state, tmp)


def load_training_state(run: str | Path, device) -> dict:
    import torch

    return torch.load(Path(run) / TRAINING_STATE, map_location=device, weights_only=False)


# -- logs ---------------------------------------------------------------------------------------------------
def append_metrics(run: str | Path, record: dict) -> None:
    with open(Path(run) / METRICS, "a") as f:
        f.write(json.dumps(record) + "\n")


def read_metrics(run: str | Path) -> list[dict]:
    """The run's log lines; a line cut short by a kill mid-write is skipped (``truncate_metrics`` drops it)."""
    return [r for r in read_jsonl(Path(run) / METRICS) if "step" in r]


def truncate_metrics(run: str | Path, step: int) -> None:
    """Drop log lines past ``step`` (a resumed run writes them again)."""
    path = Path(run) / METRICS
    if path.exists():
        keep = [r for r in read_metrics(run) if r["step"] <= step]
        path.write_text("".join(json.dumps(r) + "\n" for r in keep))


def write_summary(run: str | Path, summary: dict) -> None:
    write_json_atomic(Path(run) / SUMMARY, summary)


def read_summary(run: str | Path) -> dict:
    """summary.json of a run ({} when it has none yet)."""
    path = Path(run) / SUMMARY
    return read_json(path) if path.exists() else {}
