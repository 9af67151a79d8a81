"""``reasonact eval``: closed-loop success on held-out layouts, written as a report."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Callable

from ..envs.perturb import parse_perturb
from ..settings import setting
from .report import build_report, worker_deaths, write_report
from .rollout import EVAL_SEED_BASE, Episode, held_out_seeds, instruction_picker, rollout
from .videos import write_videos

PARTIAL = "episodes.partial.jsonl"  # finished episodes of an evaluation in progress: a re-run resumes from them


class PartialResults:
    """Episodes written one JSON line each as they finish. The first line holds the evaluation's settings:
    a re-run with the same ones takes the finished episodes from the file and runs only the rest; other
    settings start the file afresh."""

    def __init__(self, path: Path, settings: dict):
        from ..io import content_digest, read_jsonl

        self.path, self.key = path, content_digest(settings)
        self._done: dict[tuple[str, int], Episode] = {}
        records = read_jsonl(path)  # an episode whose line a kill cut short is run again
        if records and records[0].get("settings") == self.key:
            for rec in records[1:]:
                if {"task", "seed", "success"} <= set(rec):
                    self._done[(rec["task"], rec["seed"])] = Episode(
                        rec["task"], rec["seed"], steps=rec.get("steps", 0), success=rec["success"],
                        error=rec.get("error"), info={"instruction": rec.get("instruction")}, goals=rec.get("goals"))
            if not path.read_bytes().endswith(b"\n"):  # a line cut by a kill: end it before appending
                with open(path, "a") as f:
                    f.write("\n")
        else:
            if records:  # another evaluation's episodes: kept beside, not overwritten
                kept = path.with_name(f"{path.stem}.{records[0].get('settings', 'unknown')}{path.suffix}")
                os.replace(path, kept)
                print(f"{path} was written with other settings; its {len(records) - 1} episodes are kept in {kept} "
                      "and the evaluation starts afresh", file=sys.stderr)
            path.write_text(json.dumps({"settings": self.key}) + "\n")

    def finished(self) -> dict[tuple[str, int], Episode]:
        return dict(self._done)

    def add(self, ep: Episode) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"task": ep.task, "seed": ep.seed, "success": bool(ep.success), "steps": ep.steps,
                                "error": ep.error, "instruction": ep.info.get("instruction"),
                                "goals": ep.goals}) + "\n")
            f.flush()
            os.fsync(f.fileno())


@dataclass(frozen=True)
class EvalConfig:
    suite: str = setting("mt10", "mt10, mt50 or a Meta-World task such as reach-v3; libero_spatial, libero_object, "
                         "libero_goal or libero_10 (held-out layouts: the 50 standard init states)", "episodes")
    tasks: str | None = setting(None, "comma-separated subset of the suite's tasks (default: all of them)", "episodes")
    episodes_per_task: int = setting(20, "held-out layouts per task", "episodes")
    instructions: str = setting("canonical", "phrasing of the instruction: the task's own, a seen paraphrase, or "
                                "one never used in training", "episodes", choices=("canonical", "paraphrase", "unseen"))
    perturb: str = setting("", "out-of-distribution conditions, comma-separated, each with an optional strength: "
                           "lighting, colors, camera (e.g. 'lighting,camera=0.05': the fixed cameras moved 5 cm); "
                           "drawn per episode from its layout seed", "episodes")
    max_steps: int | None = setting(None, "episode step limit (default: the task's, 500)", "episodes")
    seed_base: int = setting(EVAL_SEED_BASE, "first held-out layout seed (training seeds are skipped)", "episodes")
    decoder: str | None = setting(None, "must match the trained decoder (a check)", "policy", choices=("ar", "diffusion"))
    diffusion_steps: int | None = setting(None, "diffusion refinement rounds T per block (default: 12)", "policy")
    execute: int | None = setting(None, "actions run per chunk before the policy is asked again (default: the "
                                  "policy's, saved by train --execute; else the whole chunk)", "policy")
    remask: bool = setting(True, "diffusion: re-mask committed tokens the model no longer believes in (secondary "
                           "remasking); off for the ablation", "policy")
    commit_order: str = setting("confidence", "diffusion: which masked tokens commit first, the most confident "
                                "(easy first) or a random order (an ablation)", "policy",
                                choices=("confidence", "random"))
    anneal: bool = setting(True, "diffusion: the commit noise's temperature falls to zero over the rounds; off: "
                           "constant (an ablation)", "policy")
    action_values: str = setting("mode", "each action token read as its most likely bin (mode, as trained) or as the "
                                 "mean of its bins under the model's distribution (mean: small corrections the mode "
                                 "rounds to zero motion are kept)", "policy", choices=("mode", "mean"))
    workers: int | None = setting(None, "simulator processes (default: the CPU count)", "run")
    video: bool = setting(False, "write rollout videos with the predicted trace", "run")
    video_episodes: int = setting(1, "episodes per task recorded when --video is on", "run")
    timeout: float = setting(300.0, "seconds a simulator worker may take to answer before it is replaced", "run")

    def __post_init__(self):
        if self.episodes_per_task < 1:
            raise ValueError(f"--episodes-per-task must be at least 1, got {self.episodes_per_task}")
        for name in ("max_steps", "diffusion_steps", "execute", "workers"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
        if self.video_episodes < 0 or not self.timeout > 0:
            raise ValueError(f"--video-episodes must be 0 or more and --timeout positive; got {self.video_episodes} "
                             f"and {self.timeout}")
        if self.seed_base < 0:
            raise ValueError(f"--seed-base must be 0 or more, got {self.seed_base}")
        instruction_picker(self.instructions)  # raises on an unknown kind
        parse_perturb(self.perturb)


def set_decode_options(policy, cfg: EvalConfig) -> dict | None:
    """Give the policy the evaluation's diffusion ablations (remasking, commit order, annealing) and its action
    values; the options in effect, or None for a policy that does not decode by diffusion and reads the mode."""
    from ..decoding import DecodeOptions

    options = DecodeOptions(eta=DecodeOptions.eta if cfg.remask else 0.0, anneal=cfg.anneal, order=cfg.commit_order,
                            values=cfg.action_values)
    settable = hasattr(policy, "decode_options")
    if policy.info.decoder != "diffusion" or not settable:
        if replace(options, values="mode") != DecodeOptions():
            raise ValueError("--no-remask, --commit-order and --no-anneal change diffusion decoding, which this "
                             f"policy ({policy.info.decoder!r} decoder) does not offer")
        if options.values == "mode":
            return None
        if not settable:
            raise ValueError("--action-values mean needs the policy's token distributions: load the checkpoint here")
    policy.decode_options = options
    return asdict(options)


def evaluate(checkpoint: str | Path | None, out: str | Path, config: EvalConfig | None = None, *, policy=None,
             env_factory: Callable | None = None, device: str | None = None, progress: bool = True,
             **overrides) -> dict:
    """Evaluate a checkpoint (or ``policy``, anything with the :mod:`reasonact.interface` contract) in
    closed loop; writes report.json, report.md, success.png and, with ``video``, videos/.

    Options are :class:`EvalConfig`'s fields, given as ``config`` or as keywords."""
    from ..envs import simulator

    if isinstance(overrides.get("tasks"), (list, tuple)):
        overrides["tasks"] = ",".join(overrides["tasks"])
    known = {f.name for f in fields(EvalConfig)}
    if set(overrides) - known:
        raise ValueError(f"unknown evaluation option(s) {sorted(set(overrides) - known)}; options: {sorted(known)}")
    cfg = replace(config or EvalConfig(), **overrides)
    sim = simulator(cfg.suite)
    task_list = sim.resolve_tasks(cfg.suite, cfg.tasks)
    if policy is None:
        from ..policy import load_policy

        policy = load_policy(checkpoint, device)
    info = policy.info
    sim.check_policy(info)
    execute = cfg.execute or info.execute
    if not 1 <= execute <= info.horizon:
        raise ValueError(f"execute must be between 1 and the chunk length {info.horizon}, got {execute}")
    if cfg.decoder is not None and cfg.decoder != info.decoder:
        raise ValueError(f"this policy was trained for {info.decoder} decoding, not {cfg.decoder}")
    untrained = [t for t in task_list if t not in info.tasks]
    if untrained:
        print(f"warning: {len(untrained)} of the {len(task_list)} tasks evaluated were never in the training data "
              f"({', '.join(untrained)}); the policy was trained on {', '.join(info.tasks)}. Pass --tasks to "
              "evaluate a subset.", file=sys.stderr)
    T = cfg.diffusion_steps if cfg.diffusion_steps is not None else info.default_diffusion_steps
    decode = set_decode_options(policy, cfg)
    perturb = parse_perturb(cfg.perturb)
    used = {t: set(v) for t, v in info.training_seeds.items()}
    phrasing = instruction_picker(cfg.instructions)
    episodes = []
    for t in task_list:
        for k, s in enumerate(held_out_seeds(cfg.episodes_per_task, used.get(t, set()), cfg.seed_base)):
            episodes.append(Episode(t, s, record=cfg.video and k < cfg.video_episodes,
                                    info={"instruction": phrasing(t, len(episodes))}))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    same = {k: v for k, v in asdict(cfg).items() if k not in ("workers", "video", "video_episodes", "timeout")}
    same["execute"] = execute  # as run: whether the caller or the policy's default chose it
    described = {k: v for k, v in info.to_dict().items() if k != "default_execute"}
    partial = PartialResults(out / PARTIAL, {"policy": described, "config": same,
                                              "seeds": [(e.task, e.seed) for e in episodes]})
    done = partial.finished()
    if done:
        print(f"resuming the evaluation in {out}: {len(done)} of {len(episodes)} episodes are done")
    r = rollout(policy, [e for e in episodes if (e.task, e.seed) not in done], diffusion_steps=T, execute=execute,
                workers=cfg.workers, max_steps=cfg.max_steps, env_factory=env_factory, progress=progress,
                perturb=perturb, timeout=cfg.timeout, instruction=lambda ep: ep.info["instruction"], on_finish=partial.add)
    r.episodes.extend(done.values())
    settings = {"suite": cfg.suite, "diffusion_steps": T if info.decoder == "diffusion" else None,
                "episodes_per_task": cfg.episodes_per_task, "execute": execute, "instructions": cfg.instructions,
                "perturb": perturb, "decode": decode,
                "config": asdict(cfg)}
    report = build_report(r, task_list, info, settings)
    write_report(report, out)
    partial.path.unlink(missing_ok=True)  # the report holds every episode now
    if cfg.video:
        write_videos(r.episodes, out / "videos", info.resolution)
    died = worker_deaths(report)
    if died:
        print(f"warning: in {died} episode(s) the simulator worker process died (counted as failures; see "
              f"{out / 'report.md'}). Workers are started with 'spawn' and import the calling script again: call "
              "evaluate() from a script under `if __name__ == \"__main__\":`.", file=sys.stderr)
    return report
