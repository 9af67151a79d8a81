"""``reasonact quickstart`` (what ``make demo`` runs): the main job, end to end, on a small default that
fits a 2-core laptop CPU in about 20 minutes: collect expert demonstrations for a few Meta-World tasks,
train the ``tiny`` model, evaluate it on held-out layouts, and write a report with plots and videos.

Every stage resumes: re-running the command after an interruption continues where it stopped.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class QuickstartConfig:
    tasks: str = "reach-v3,drawer-open-v3,drawer-close-v3,window-close-v3"
    episodes_per_task: int = 30
    resolution: int = 64
    config: str = "tiny"
    decoder: str = "diffusion"
    reasoning: str = "trace"
    steps: int = 1000
    batch_size: int = 64
    eval_episodes: int = 10
    seed: int = 0


def quickstart(out: str | Path = "demo", *, workers: int | None = None, progress: bool = True, **overrides) -> dict:
    from .data.collect import collect
    from .evaluation import evaluate
    from .io import write_json_atomic
    from .machine import describe, machine_info
    from .training import train

    cfg = QuickstartConfig(**overrides)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    def stage(name: str, text: str) -> float:
        print(f"\n== {name}: {text}", flush=True)
        return time.time()

    t = stage("1/3 collect", f"{cfg.episodes_per_task} expert episodes for each of {cfg.tasks} at {cfg.resolution} px")
    summary = collect(out / "data", suite="mt10", tasks=cfg.tasks, episodes_per_task=cfg.episodes_per_task,
                      resolution=cfg.resolution, workers=workers, seed=cfg.seed, progress=progress)
    print(summary)
    timings["collect_s"] = time.time() - t

    run = out / "run"
    t = stage("2/3 train", f"the {cfg.config} model, {cfg.decoder} decoder, reasoning {cfg.reasoning}, {cfg.steps} steps")
    opts = dict(config=cfg.config, decoder=cfg.decoder, reasoning=cfg.reasoning, steps=cfg.steps,
                batch_size=cfg.batch_size, seed=cfg.seed)
    if (run / "checkpoint.pt").exists():
        train(None, run, resume=True, steps=cfg.steps, progress=progress)
    else:
        train(out / "data", run, progress=progress, **opts)
    timings["train_s"] = time.time() - t

    t = stage("3/3 evaluate", f"{cfg.eval_episodes} held-out layouts per task, with videos")
    report = evaluate(run, out / "eval", suite="mt10", tasks=cfg.tasks, episodes_per_task=cfg.eval_episodes,
                      workers=workers, video=True, progress=progress)
    timings["eval_s"] = time.time() - t

    metrics = [line for line in (run / "metrics.jsonl").read_text().splitlines() if line]
    import json

    last = json.loads(metrics[-1]) if metrics else {}
    result = {
        "config": asdict(cfg),
        "success_rate": report["success_rate"],
        "tasks": {k: v["success_rate"] for k, v in report["tasks"].items()},
        "final_action_loss": last.get("loss_act"),
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
