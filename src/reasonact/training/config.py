"""``TrainConfig``: every setting of a training run, typed and frozen, with named presets.

A preset (``--config``) names a model size and the training settings that go with it; any field can be
overridden (``reasonact train --config debug --steps 20``). The command line is generated from these
fields and their ``help``, so every setting is settable there, with its default shown.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ..model.config import MODEL_PRESETS, parse_mode
from ..settings import from_preset, setting


@dataclass(frozen=True)
class TrainConfig:
    # -- model and sequence --------------------------------------------------------------------------
    config: str = setting("tiny", "named preset: the model size and the training settings that go with it "
                          f"({', '.join(MODEL_PRESETS)})",
                          "model")
    decoder: str = setting("diffusion", "how blocks are decoded and trained: masked discrete diffusion or "
                           "left to right", "model", choices=("ar", "diffusion"))
    reasoning: str = setting("act", "blocks written before the actions: act, trace, depth+trace, full "
                             "(rationale+depth+trace), or a '+'-joined set of think, depth, trace", "model")
    horizon: int = setting(8, "actions per chunk (H)", "model")
    execute: int | None = setting(None, "actions a caller runs from each chunk before asking again, saved as the "
                                  "policy's default for eval, console and select_action (default: the whole chunk)",
                                  "model")
    trace_points: int = setting(5, "points in the visual trace, from now to the episode's end", "model")
    trace_span: float | None = setting(None, "metres of the end effector's path ahead that the trace covers, its points "
                                       "evenly spaced along it (default: to the episode's end, evenly in time)", "model")
    trace_relative: bool = setting(False, "write the trace's later points as offsets from its first (the gripper), so "
                                   "that which way the path goes is one pair of tokens", "model")
    trace_offset_range: float = setting(1.0, "with --trace-relative: the offsets are written over +- this fraction of "
                                        "the image (and of the depth range); 0.25 gives bins four times finer, for "
                                        "a trace through the next 20 cm at 64 px (offsets beyond it are clipped)",
                                        "model")
    trace_depth: bool = setting(False, "each trace point also carries its depth from the first camera, a third token, "
                                "so that a given path says how far along the camera's rays to go", "model")
    think_tokens: int = setting(56, "length of the rationale block in tokens", "model")
    model_overrides: dict = setting({}, "model fields to change from the preset, as JSON, e.g. "
                                    "'{\"d_model\": 256}'", "model")
    # -- tokenizers -------------------------------------------------------------------------------------
    text_vocab: int = setting(512, "size of the BPE fitted on the instructions and rationales", "tokenizers")
    depth_vae: str | None = setting(None, "a trained depth tokenizer directory, e.g. from train-depth-vae "
                                    "--codebook 512 (the vocabulary takes its number of codes); else one of 128 "
                                    "codes is trained on the dataset's depth maps", "tokenizers")
    depth_vae_steps: int = setting(1500, "training steps of the depth tokenizer when one is trained",
                                   "tokenizers")
    # -- optimiser -----------------------------------------------------------------------------------
    steps: int = setting(2000, "optimiser steps", "optimiser")
    batch_size: int = setting(64, "global batch size (split over ranks under torchrun)", "optimiser")
    lr: float = setting(1e-3, "peak learning rate", "optimiser")
    weight_decay: float = setting(0.01, "AdamW weight decay (matrices only)", "optimiser")
    warmup: int | None = setting(None, "linear warm-up steps (default: a tenth of the steps, at most 100)",
                                 "optimiser")
    min_lr_ratio: float = setting(0.1, "final learning rate of the cosine schedule, as a share of the peak",
                                  "optimiser")
    grad_clip: float = setting(1.0, "gradient norm clip", "optimiser")
    lambda_reason: float = setting(1.0, "weight of the reasoning blocks' loss: L_act + lambda * L_reason",
                                   "optimiser")
    action_label_sigma: float = setting(0.0, ">0: Gaussian soft labels over neighbouring action bins",
                                        "optimiser")
    ema: float = setting(0.0, "decay of an exponential moving average of the weights, e.g. 0.999 (0: off); the "
                         "run's model.safetensors then holds the averaged weights", "optimiser")
    points_weight: float = setting(0.0, "weight of the pointing loss: a head finds the task's object and goal in the "
                                   "first view (the dataset's observation.points; 0: off)", "optimiser")
    init: str | None = setting(None, "start from another run's weights (its tokenizers and state "
                               "normalisation are reused)", "optimiser")
    freeze_layers: int = setting(0, "freeze the vision encoder and the lowest K transformer layers",
                                 "optimiser")
    # -- data ------------------------------------------------------------------------------------------
    augment: bool = setting(True, "random shift (moving the trace with the image), brightness and contrast "
                            "(--jitter) and colour tint (--tint)", "data")
    jitter: float = setting(0.1, "with --augment, brightness and contrast each scaled per sample by a factor "
                            "from [1-s, 1+s]", "data")
    tint: float = setting(0.0, "with --augment, every colour channel scaled per sample by a factor from "
                          "[1-s, 1+s], as a tinted light would (0: off)", "data")
    paraphrase_prob: float = setting(0.5, "share of samples given a paraphrase of the instruction", "data")
    steer_prob: float = setting(0.0, "share of samples trained with the trace given (steering), from 0 to 1",
                                "data")
    depth_dropout: float = setting(0.0, "share of steered samples given the trace's pixels without its depth, which "
                                   "they learn to write, so that a path drawn in 2D steers too (--trace-depth)", "data")
    rationale_dropout: float = setting(0.0, "share of samples whose later blocks (trace, action) see an empty "
                                       "rationale, so that actions do not lean on one the model cannot write "
                                       "(a mode with a think block; 0: off)", "data")
    task_weights: dict = setting({}, "sampling weight per task, as JSON, e.g. '{\"push-v3\": 2}': that task's frames "
                                 "are drawn twice as often as the others' (default 1)", "data")
    episode_limit: dict = setting({}, "train on only the first N episodes of a named task, as JSON, e.g. "
                                  "'{\"push-v3\": 50}' (the others keep all of theirs): fewer demonstrations "
                                  "without a second dataset", "data")
    views: str | None = setting(None, "train on only these of the dataset's camera views, comma-separated, in "
                                "order (the first holds the trace), e.g. zoom; default: all of them", "data")
    val_fraction: float = setting(0.0, "share of episodes held out for a validation loss", "data")
    seed: int = setting(0, "seed of the initial weights and of every batch", "data")
    # -- run ---------------------------------------------------------------------------------------------
    log_every: int = setting(25, "steps between lines of metrics.jsonl", "run")
    save_every: int = setting(500, "steps between checkpoints (resumable with --resume)", "run")
    save_minutes: float = setting(5.0, "also checkpoint when this many minutes have passed since the last one, so "
                                  "that a kill loses at most that much (0: by steps only)", "run")
    precision: str = setting("auto", "auto: bf16 on CUDA; on a CPU, bf16 only if the CPU computes it natively and a "
                             "training step measures faster in it (decided once, saved with the run)", "run",
                             choices=("auto", "fp32", "bf16"))
    compile: bool = setting(False, "torch.compile the model (its first steps compile: about a minute); measured "
                            "1.28x faster for tiny in bf16 on a 2-core CPU, 1.09x in fp32 "
                            "(benchmarks/results/train_cpu_compile.json)", "run")

    def __post_init__(self):
        def bad(msg: str):
            raise ValueError(msg)

        if self.config not in MODEL_PRESETS:
            bad(f"unknown model config {self.config!r}; choose from {', '.join(MODEL_PRESETS)}")
        if self.decoder not in ("ar", "diffusion"):
            bad(f"--decoder must be ar or diffusion, got {self.decoder!r}")
        blocks = parse_mode(self.reasoning)
        if self.steps < 1:
            bad(f"--steps must be at least 1, got {self.steps}")
        if self.batch_size < 1:
            bad(f"--batch-size must be at least 1, got {self.batch_size}")
        if not self.lr > 0:
            bad(f"--lr must be positive, got {self.lr}")
        if self.warmup is not None and not 0 <= self.warmup <= self.steps:
            bad(f"--warmup {self.warmup} does not fit a run of {self.steps} steps; pass a --warmup from 0 to "
                f"{self.steps} (or leave it out: a tenth of the steps, at most 100)")
        for flag, share, block, does, lacks, fix in (
                ("--steer-prob", self.steer_prob, "trace", "gives samples their trace", "has no trace block",
                 "use --reasoning trace or depth+trace"),
                ("--rationale-dropout", self.rationale_dropout, "think", "hides the rationale", "writes none",
                 "use a mode with a think block, e.g. --reasoning think or full")):
            if not 0 <= share <= 1:
                bad(f"{flag} is a share of samples, from 0 to 1; got {share}")
            if share > 0 and block not in blocks:
                bad(f"{flag} {does}, but reasoning {self.reasoning!r} {lacks}; {fix}")
        if not 0 <= self.depth_dropout <= 1:
            bad(f"--depth-dropout is a share of steered samples, from 0 to 1; got {self.depth_dropout}")
        if self.trace_span is not None and not self.trace_span > 0:
            bad(f"--trace-span is a distance in metres, e.g. 0.2; got {self.trace_span}")
        if not 0 < self.trace_offset_range <= 1:
            bad(f"--trace-offset-range is a fraction of the image, above 0 and at most 1, e.g. 0.25; got "
                f"{self.trace_offset_range}")
        if self.trace_offset_range != 1 and not self.trace_relative:
            bad("--trace-offset-range narrows the offsets of a relative trace; it needs --trace-relative")
        if self.depth_dropout > 0 and not (self.trace_depth and self.steer_prob > 0):
            bad("--depth-dropout gives steered samples their trace without its depth; it needs --trace-depth and "
                "--steer-prob above 0")
        for name, v in (("jitter", self.jitter), ("tint", self.tint)):
            if not 0 <= v < 1:
                bad(f"--{name} is the largest change of a factor on the pixel values, from 0 to below 1, e.g. 0.5; "
                    f"got {v}")
        if not 0 <= self.ema < 1:
            bad(f"--ema is a decay from 0 (off) to below 1, e.g. 0.999; got {self.ema}")
        if self.points_weight < 0:
            bad(f"--points-weight must be 0 (off) or positive, got {self.points_weight}")
        if not isinstance(self.task_weights, dict) or not all(
                isinstance(w, (int, float)) and w >= 0 for w in self.task_weights.values()):
            bad(f"--task-weights maps task names to weights of 0 or more, e.g. '{{\"push-v3\": 2}}'; "
                f"got {self.task_weights!r}")
        if not isinstance(self.episode_limit, dict) or not all(
                isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in self.episode_limit.values()):
            bad(f"--episode-limit maps task names to episode counts of 1 or more, e.g. '{{\"push-v3\": 50}}'; "
                f"got {self.episode_limit!r}")
        if not 0 <= self.val_fraction < 1:
            bad(f"--val-fraction is a share of episodes, from 0 to below 1; got {self.val_fraction}")
        if not self.save_minutes >= 0:
            bad(f"--save-minutes must be 0 (by steps only) or positive, got {self.save_minutes}")
        if self.precision not in ("auto", "fp32", "bf16"):
            bad(f"--precision must be auto, fp32 or bf16, got {self.precision!r}")
        if self.execute is not None and not 1 <= self.execute <= self.horizon:
            bad(f"--execute must be between 1 and the chunk length --horizon {self.horizon}, got {self.execute}")
        if min(self.horizon, self.trace_points, self.think_tokens, self.log_every, self.save_every) < 1:
            bad("--horizon, --trace-points, --think-tokens, --log-every and --save-every must be at least 1")

    @property
    def warmup_steps(self) -> int:
        return self.warmup if self.warmup is not None else min(100, self.steps // 10)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Settings saved in a run's config.json (runs written before a field existed take its default)."""
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        if d.get("model_overrides") is None:
            d.pop("model_overrides", None)
        return cls(**d)


TRAIN_PRESETS: dict[str, TrainConfig] = {
    # Seconds on a CPU: tests and smoke runs.
    "debug": TrainConfig(config="debug", steps=50, batch_size=8, depth_vae_steps=100, log_every=5, save_every=25),
    # Minutes to an hour on a 2-core CPU.
    "nano": TrainConfig(config="nano"),
    "tiny": TrainConfig(config="tiny"),
    # One GPU.
    "small": TrainConfig(config="small"),
    "base": TrainConfig(config="base"),
}


def train_config(config: str = "tiny", **overrides) -> TrainConfig:
    """The named preset with ``overrides`` (None values are ignored) applied."""
    return from_preset(TRAIN_PRESETS, config, "training", **{k: v for k, v in overrides.items() if v is not None})
