"""An evaluation's report: ``report.json`` (per task and per episode), ``report.md`` and ``success.png``."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..io import write_bytes_atomic, write_json_atomic
from .rollout import Rollouts

WORKER_DIED = "worker process died"


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a binomial proportion."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # the interval holds p itself (at p = 1 rounding would otherwise put the upper end at 0.9999999999999999)
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def task_summary(eps: list[dict]) -> dict:
    """One task's episodes (each with seed, success, steps, error and, where counted, goals): counts, 95% interval,
    seeds, errors and the mean fraction of goal conditions holding at the start and at the end."""
    wins = sum(bool(e["success"]) for e in eps)
    summary = {"episodes": len(eps), "successes": wins, "success_rate": wins / max(1, len(eps)),
               "ci95": list(wilson(wins, len(eps))), "seeds": sorted(e["seed"] for e in eps),
               "mean_steps": float(np.mean([e["steps"] for e in eps])) if eps else 0.0,
               "errors": [{"seed": e["seed"], "error": e["error"]} for e in eps if e["error"]]}
    goals = np.array([e["goals"] for e in eps if e.get("goals")], dtype=float).reshape(-1, 3)
    if len(goals):
        summary["goals_start"] = float(np.mean(goals[:, 0] / goals[:, 2]))
        summary["goals_end"] = float(np.mean(goals[:, 1] / goals[:, 2]))
    return summary


def build_report(r: Rollouts, task_list: list[str], info, settings: dict) -> dict:
    """Per-task success with its 95% interval, every episode (task, seed, success, steps, error), costs."""
    used = {t: set(v) for t, v in info.training_seeds.items()}
    per_task = {}
    for t in task_list:
        per_task[t] = task_summary([{"seed": e.seed, "success": e.success, "steps": e.steps, "error": e.error,
                                     "goals": e.goals} for e in r.episodes if e.task == t])
        overlap = set(per_task[t]["seeds"]) & used.get(t, set())
        assert not overlap, f"evaluation seeds {sorted(overlap)} of {t} were used for training"
    from ..machine import machine_info

    return {
        **settings,
        "checkpoint": info.checkpoint,
        "weights_sha256": weights_sha256(info.checkpoint),
        "decoder": info.decoder,
        "reasoning": info.reasoning,
        "untrained_tasks": [t for t in task_list if t not in info.tasks],
        "tasks": per_task,
        "success_rate": float(np.mean([v["success_rate"] for v in per_task.values()])),
        "latency_ms_per_chunk": float(np.mean(r.latencies_ms)) if r.latencies_ms else None,
        "mean_batch": float(np.mean(r.batch_sizes)) if r.batch_sizes else None,
        "nfe_per_chunk": float(np.mean(r.nfes)) if r.nfes else None,
        "errors": sum(len(v["errors"]) for v in per_task.values()),
        "episodes": [{"task": e.task, "seed": e.seed, "success": bool(e.success), "steps": e.steps,
                      "instruction": e.info.get("instruction"), "error": e.error, "goals": e.goals}
                     for e in sorted(r.episodes, key=lambda e: (task_list.index(e.task), e.seed))],
        "seconds": r.seconds,
        "machine": machine_info(),
    }


# settings of an evaluation that may differ between parts of one merged evaluation
_PART_SETTINGS = ("seed_base", "episodes_per_task", "tasks", "workers", "video", "video_episodes", "timeout")


def weights_sha256(checkpoint: str | Path) -> str | None:
    """SHA-256 of a checkpoint's weights file (None when it is not on disk)."""
    import hashlib

    f = Path(checkpoint) / "model.safetensors"
    return hashlib.sha256(f.read_bytes()).hexdigest() if f.exists() else None


def merge_reports(reports: list[dict]) -> dict:
    """One report from parts of one evaluation run apart (other ``--seed-base``, say): the same weights and
    settings, disjoint episodes. Counts, intervals and means are over all episodes; latency and batch size are
    the parts' means weighted by their episodes; seconds add up."""
    if len(reports) < 2:
        raise ValueError("merging needs at least two reports")
    first = reports[0]
    # each part's weights digest, as recorded at evaluation, else read (once) from its checkpoint on disk
    digests = [r.get("weights_sha256") or weights_sha256(r["checkpoint"]) for r in reports]
    keys = ("suite", "diffusion_steps", "execute", "instructions", "perturb", "decode", "decoder", "reasoning")
    for r, digest in zip(reports[1:], digests[1:]):
        differ = [k for k in keys if r.get(k) != first.get(k)]
        differ += [f"config.{k}" for k in set(first["config"]) | set(r["config"])
                   if k not in _PART_SETTINGS and first["config"].get(k) != r["config"].get(k)]
        if differ:
            raise ValueError(f"these reports are not parts of one evaluation: {', '.join(sorted(differ))} differ")
        if r["checkpoint"] != first["checkpoint"] and (digest is None or digest != digests[0]):
            raise ValueError(f"{first['checkpoint']} and {r['checkpoint']} are not the same weights (or neither "
                             "report records its weights' SHA-256 and one is missing on disk): only parts evaluated "
                             "from one policy are merged")
    episodes = [e for r in reports for e in r["episodes"]]
    seen = [(e["task"], e["seed"]) for e in episodes]
    if len(set(seen)) != len(seen):
        raise ValueError("the reports share episodes (the same task and seed): pass each part once, with "
                         "disjoint --seed-base ranges")
    tasks = list(dict.fromkeys(t for r in reports for t in r["tasks"]))
    per_task = {t: task_summary([e for e in episodes if e["task"] == t]) for t in tasks}
    n = [len(r["episodes"]) for r in reports]

    def weighted(key):
        vals = [(r[key], k) for r, k in zip(reports, n) if r.get(key) is not None]
        return float(sum(v * k for v, k in vals) / sum(k for _, k in vals)) if vals else None

    return {**first, "episodes_per_task": min(v["episodes"] for v in per_task.values()),
            "config": {**first["config"], "seed_base": min(r["config"]["seed_base"] for r in reports)},
            "tasks": per_task, "success_rate": float(np.mean([v["success_rate"] for v in per_task.values()])),
            "latency_ms_per_chunk": weighted("latency_ms_per_chunk"), "mean_batch": weighted("mean_batch"),
            "errors": sum(len(v["errors"]) for v in per_task.values()),
            "episodes": sorted(episodes, key=lambda e: (tasks.index(e["task"]), e["seed"])),
            "seconds": float(sum(r["seconds"] for r in reports)),
            "weights_sha256": next(filter(None, digests), None),
            "parts": [p for r in reports for p in r.get("parts") or [  # a merged report brings its own parts
                {"checkpoint": r["checkpoint"], "seed_base": r["config"]["seed_base"], "episodes": len(r["episodes"]),
                 "seconds": r["seconds"], "machine": r["machine"]}]]}


def _decode_ablations(decode: dict) -> list[tuple[str, bool]]:
    return [("no secondary remasking", decode.get("eta", 0.5) == 0),
            ("commits in a random order", decode.get("order", "confidence") == "random"),
            ("a constant commit temperature", decode.get("anneal", True) is False),
            ("actions read as their bins' mean", decode.get("values", "mode") == "mean")]


def markdown(report: dict) -> str:
    from ..machine import describe

    T = report.get("diffusion_steps")
    lines = [
        f"# Evaluation of `{report['checkpoint']}`",
        "",
        f"Decoder `{report['decoder']}`" + (f" (T = {T})" if T else "")
        + f", reasoning `{report['reasoning']}`, {report['episodes_per_task']} "
        + ("of the suite's standard init states" if str(report.get("suite", "")).startswith("libero") else "held-out layouts")
        + " per task, "
        f"{report['execute']} actions executed per chunk, {report.get('instructions', 'canonical')} instructions.",
        "",
    ]
    changed = [what for what, on in _decode_ablations(report.get("decode") or {}) if on]
    if changed:
        lines += [f"**Decoder ablation**: {', '.join(changed)}.", ""]
    if report.get("perturb"):
        what = ", ".join(f"{k} {v:g}" for k, v in report["perturb"].items())
        lines += [f"**Out of distribution**: the scene perturbed ({what}; `--perturb`), drawn per layout.", ""]
    if report.get("untrained_tasks"):
        lines += [f"**Not trained on** {', '.join(report['untrained_tasks'])}: the policy never saw these tasks.", ""]
    counted = any("goals_end" in v for v in report["tasks"].values())  # LIBERO: the goal's conditions
    goal_head, goal_rule = (" goal conditions held, start → end |", " --- |") if counted else ("", "")
    lines += ["| task | success | 95% CI | episodes | mean steps |" + goal_head, "| --- | --- | --- | --- | --- |" + goal_rule]
    for t, v in report["tasks"].items():
        goal = f" {v['goals_start']:.0%} → {v['goals_end']:.0%} |" if "goals_end" in v else (" |" if counted else "")
        lines.append(f"| {t} | {v['success_rate']:.0%} | {v['ci95'][0]:.0%}-{v['ci95'][1]:.0%} | {v['episodes']} "
                     f"| {v['mean_steps']:.0f} |" + goal)
    mean_goals = ""
    if counted:
        held = [(v["goals_start"], v["goals_end"]) for v in report["tasks"].values() if "goals_end" in v]
        mean_goals = " {:.0%} → {:.0%} |".format(*np.mean(held, axis=0))
    lines += [f"| **mean** | **{report['success_rate']:.1%}** | | | |" + mean_goals, ""]
    if counted:
        lines += ["Goal conditions: the predicates of the task's BDDL goal holding at an episode's start and end "
                  "(mean fraction); success is all of them at once.", ""]
    if report["latency_ms_per_chunk"] is None:
        lines.append("No prediction was made: every episode ended in an error before the policy was asked.")
    else:
        lines.append(f"Latency per chunk: {report['latency_ms_per_chunk']:.1f} ms (batches of {report['mean_batch']:.1f} "
                     f"observations on average); {report['nfe_per_chunk']:.0f} forward passes per chunk.")
    lines.append(f"Time: {report['seconds']:.0f} s on {describe(report['machine'])}.")
    if report["errors"]:
        lines += ["", f"**{report['errors']} episode(s) ended in a simulator error** (counted as failures):"]
        for t, v in report["tasks"].items():
            lines += [f"- {t} seed {e['seed']}: {e['error']}" for e in v["errors"]]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["tasks"])
    rates = np.array([report["tasks"][t]["success_rate"] for t in names])
    ci = np.array([report["tasks"][t]["ci95"] for t in names])
    fig, ax = plt.subplots(figsize=(max(4, 0.8 * len(names) + 2), 3.6))
    ax.bar(range(len(names)), rates * 100, color="#3b7dd8",
           yerr=[(rates - ci[:, 0]) * 100, (ci[:, 1] - rates) * 100], capsize=3)
    ax.axhline(report["success_rate"] * 100, color="k", ls="--", lw=1, label=f"mean {report['success_rate']:.0%}")
    labels = [n.removesuffix("-v3") for n in names]
    labels = [n if len(n) <= 28 else n[:26] + "…" for n in labels]  # LIBERO's task names are sentences
    ax.set_xticks(range(len(names)), labels, rotation=35, ha="right")
    ax.set_ylabel("success (%)")
    ax.set_ylim(0, 105)
    ax.legend(loc="lower right")
    ax.set_title(f"{report['decoder']} / {report['reasoning']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(report: dict, out: Path) -> None:
    write_json_atomic(out / "report.json", report)
    write_bytes_atomic(out / "report.md", markdown(report).encode())
    plot(report, out / "success.png")


def worker_deaths(report: dict) -> int:
    return sum(1 for e in report["episodes"] if e["error"] and WORKER_DIED in e["error"])
