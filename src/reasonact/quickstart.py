"""``reasonact quickstart`` (what ``make demo`` runs): the main job, end to end, on a small default that
fits a 2-core laptop CPU in about 20 minutes: collect expert demonstrations for four Meta-World tasks,
push-v3 among them (its puck must be found in the image), train the ``nano`` model, evaluate it on held-out
layouts, and write a report with plots and videos.

Every stage resumes: re-running the command after an interruption continues where it stopped.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from .settings import setting
from .training.config import TRAIN_PRESETS, TrainConfig

# At ~90,000 samples the seed decided whether push was learnt; at 160,000 it was on every seed tried. The nano
# model (half tiny's cost per sample) fits them in the minutes, with small batches at a higher learning rate, the
# pointing loss and averaged weights (RESULTS.md, "The quickstart").
QUICKSTART_TRAIN = replace(TRAIN_PRESETS["nano"], reasoning="act", steps=5000, batch_size=32, lr=2e-3, ema=0.999,
                           points_weight=1.0, compile=True)


@dataclass(frozen=True)
class QuickstartConfig:
    tasks: str = setting("push-v3,drawer-open-v3,drawer-close-v3,window-close-v3", "comma-separated Meta-World tasks",
                         "quickstart")
    episodes_per_task: int = setting(20, "expert episodes collected per task", "quickstart")
    task_episodes: dict = setting({"push-v3": 200}, "episodes for named tasks instead, as JSON, e.g. '{\"push-v3\": 200}': more "
                                  "layouts for a task whose object the policy must find in the image", "quickstart")
    cameras: str = setting("zoom,gripperPOV", "camera views, comma-separated, e.g. zoom,gripperPOV (see `reasonact collect "
                           "--help`)", "quickstart")
    start_jitter: float = setting(0.1, "start the hand up to this many metres from home in collected episodes, so "
                                  "that its position does not give the object away (e.g. 0.1)", "quickstart")
    resolution: int = setting(64, "camera image size in pixels", "quickstart")
    eval_episodes: int = setting(10, "held-out layouts evaluated per task", "quickstart")
    train: TrainConfig = field(default=QUICKSTART_TRAIN)  # the training settings (every TrainConfig field)

    @classmethod
    def make(cls, **overrides) -> "QuickstartConfig":
        """Own fields and TrainConfig fields alike, by name (None values are ignored)."""
        overrides = {k: v for k, v in overrides.items() if v is not None}
        own = {f.name for f in fields(cls)} - {"train"}
        train_names = {f.name for f in fields(TrainConfig)}
        bad = set(overrides) - own - train_names
        if bad:
            raise ValueError(f"unknown quickstart option(s) {sorted(bad)}")
        train = replace(QUICKSTART_TRAIN, **{k: v for k, v in overrides.items() if k in train_names})
        return cls(**{k: v for k, v in overrides.items() if k in own}, train=train)


def quickstart(out: str | Path = "demo", *, workers: int | None = None, progress: bool = True, **overrides) -> dict:
    from .checkpoint import has_training_state, read_metrics
    from .data.collect import collect
    from .evaluation import evaluate
    from .io import write_json_atomic
    from .machine import describe, machine_info
    from .training.loop import train

    cfg = QuickstartConfig.make(**overrides)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    def stage(name: str, text: str) -> float:
        print(f"\n== {name}: {text}", flush=True)
        return time.time()

    counts = ", ".join(f"{n} of {t}" for t, n in cfg.task_episodes.items())
    t = stage("1/3 collect", f"{cfg.episodes_per_task} expert episodes for each of {cfg.tasks}"
              + (f" ({counts})" if counts else "") + f" at {cfg.resolution} px from {cfg.cameras}")
    summary = collect(out / "data", suite="mt10", tasks=cfg.tasks, episodes_per_task=cfg.episodes_per_task,
                      task_episodes=cfg.task_episodes, resolution=cfg.resolution, camera=cfg.cameras,
                      start_jitter=cfg.start_jitter, workers=workers, seed=cfg.train.seed, progress=progress)
    print(summary)
    timings["collect_s"] = time.time() - t

    run, tc = out / "run", cfg.train
    t = stage("2/3 train", f"the {tc.config} model, {tc.decoder} decoder, reasoning {tc.reasoning}, {tc.steps} steps")
    if has_training_state(run):
        train(None, run, resume=True, steps=tc.steps, progress=progress)
    else:
        train(out / "data", run, progress=progress, **asdict(tc))
    timings["train_s"] = time.time() - t

    t = stage("3/3 evaluate", f"{cfg.eval_episodes} held-out layouts per task, with videos")
    report = evaluate(run, out / "eval", suite="mt10", tasks=cfg.tasks, episodes_per_task=cfg.eval_episodes,
                      workers=workers, video=True, progress=progress)
    timings["eval_s"] = time.time() - t

    metrics = read_metrics(run)
    result = {
        "config": asdict(cfg),
        "success_rate": report["success_rate"],
        "tasks": {k: v["success_rate"] for k, v in report["tasks"].items()},
        "final_action_loss": metrics[-1].get("loss_act") if metrics else None,
        "timings_s": timings,
        "machine": machine_info(),
        "paths": {"data": str(out / "data"), "run": str(run), "report": str(out / "eval" / "report.md"),
                  "plot": str(out / "eval" / "success.png"), "videos": str(out / "eval" / "videos")},
    }
    write_json_atomic(out / "quickstart.json", result)
    total = sum(timings.values())
    print(f"\nquickstart done in {total / 60:.1f} min on {describe(result['machine'])}")
    print(f"  success on held-out layouts: {report['success_rate']:.0%} "
          + ", ".join(f"{k.removesuffix('-v3')} {v:.0%}" for k, v in result["tasks"].items()))
    for k, v in result["paths"].items():
        print(f"  {k:7s} {v}")
    return result
