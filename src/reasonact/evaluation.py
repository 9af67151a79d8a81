"""``reasonact eval``: closed-loop success on held-out layouts.

Simulators run in worker processes (one environment each); the policy runs in the main process and
predicts for every waiting environment in one batch. Each prediction is an action chunk; the first
``execute`` actions run before the policy is asked again. Episodes end at success or the step limit.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .io import write_json_atomic

EVAL_SEED_BASE = 1_000_000  # held-out layouts are drawn from here upwards, skipping any training seed


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a binomial proportion."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def held_out_seeds(n: int, used: set[int], base: int = EVAL_SEED_BASE) -> list[int]:
    out, s = [], base
    while len(out) < n:
        if s not in used:
            out.append(s)
        s += 1
    return out


# ---------------------------------------------------------------------------------------------
# worker side
def _pack(obs: dict) -> dict:
    return {k: obs[k] for k in ("rgb", "state", "ee_pos", "camera_intrinsics", "camera_extrinsics", "instruction")}


def _worker(conn, env_factory: Callable, env_kwargs: dict) -> None:
    os.environ.setdefault("MUJOCO_GL", "egl")
    env, task = None, None
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            break
        kind = msg[0]
        if kind == "close":
            break
        try:
            if kind == "reset":
                _, new_task, seed = msg
                if env is None or new_task != task:
                    if env is not None:
                        env.close()
                    env, task = env_factory(new_task, **env_kwargs), new_task
                obs = env.reset(seed)
                conn.send(("obs", {"obs": _pack(obs), "success": False, "done": False, "frames": [obs["rgb"]],
                                   "path": [obs["ee_pos"]], "steps": 0, "max_steps": env.max_steps}))
            elif kind == "run":
                _, actions, record = msg
                frames, path, success, done = [], [], False, False
                for a in actions:
                    obs, success, done = env.step(a)
                    path.append(obs["ee_pos"])
                    if record:
                        frames.append(obs["rgb"])
                    if success or done:
                        break
                conn.send(("obs", {"obs": _pack(obs), "success": success, "done": done, "frames": frames,
                                   "path": path, "steps": len(path)}))
        except Exception:  # report it; the main process decides what to do
            conn.send(("error", traceback.format_exc()))
    if env is not None:
        env.close()


class _Worker:
    def __init__(self, ctx, env_factory, env_kwargs):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, env_factory, env_kwargs), daemon=True)
        self.proc.start()
        child.close()
        self.episode: "Episode | None" = None

    def send(self, msg) -> None:
        self.conn.send(msg)

    def recv(self, timeout: float):
        deadline = time.time() + timeout
        while not self.conn.poll(0.2):
            if not self.proc.is_alive():
                return ("error", f"worker process died (exit code {self.proc.exitcode})")
            if time.time() > deadline:
                return ("error", f"worker did not answer within {timeout:.0f}s")
        try:
            return self.conn.recv()
        except (EOFError, OSError) as e:
            return ("error", f"worker connection lost: {e}")

    def close(self) -> None:
        try:
            self.conn.send(("close",))
        except (BrokenPipeError, OSError):
            pass
        self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.terminate()


@dataclass
class Episode:
    task: str
    seed: int
    record: bool = False
    steps: int = 0
    max_steps: int = 0
    success: bool = False
    error: str | None = None
    obs: dict | None = None
    frames: list = field(default_factory=list)
    frame_traces: list = field(default_factory=list)
    ee_path: list = field(default_factory=list)
    traces: list = field(default_factory=list)  # (step, predicted trace in pixels)
    given_trace: np.ndarray | None = None  # the last trace the policy was told to follow
    camera: tuple | None = None  # (intrinsics, extrinsics) at the start
    info: dict = field(default_factory=dict)  # free for callers (e.g. the path a steering run follows)


# ---------------------------------------------------------------------------------------------
def instruction_picker(kind: str) -> Callable[[str, int], str]:
    """(task, episode number) -> the instruction to give, for ``canonical``, ``paraphrase`` or ``unseen``."""
    from .envs import task_text

    if kind == "canonical":
        return lambda task, k: task_text(task).instruction
    if kind == "paraphrase":
        return lambda task, k: task_text(task).paraphrases[k % len(task_text(task).paraphrases)]
    if kind == "unseen":
        return lambda task, k: task_text(task).unseen[k % len(task_text(task).unseen)]
    raise ValueError(f"instructions must be canonical, paraphrase or unseen, got {kind!r}")


def _check_policy(policy, checkpoint) -> str:
    """Refuse a checkpoint that does not fit Meta-World; return its state mode."""
    from .envs.metaworld import STATE_MODES, MetaWorldEnv

    meta = policy.meta["data"]
    if meta.get("env", "metaworld") != "metaworld":
        raise ValueError(f"{checkpoint} was trained on {meta['env']!r}, not Meta-World")
    if policy.config.sequence.action_dim != MetaWorldEnv.action_dim:
        raise ValueError(f"{checkpoint} was trained for a {policy.config.sequence.action_dim}-d action space; "
                         f"Meta-World takes {MetaWorldEnv.action_dim}-d actions")
    state_mode = meta.get("state_mode", "goal")
    if policy.config.sequence.state_dim != STATE_MODES[state_mode]:
        raise ValueError(f"{checkpoint} expects a {policy.config.sequence.state_dim}-d state; Meta-World's "
                         f"{state_mode!r} state has {STATE_MODES[state_mode]}")
    return state_mode


@dataclass
class Rollouts:
    episodes: list[Episode]
    latencies_ms: list[float]
    nfes: list[int]
    batch_sizes: list[int]
    seconds: float


def rollout(
    policy,
    episodes: list[Episode],
    *,
    steps: int,
    execute: int,
    workers: int | None = None,
    max_steps: int | None = None,
    env_factory: Callable | None = None,
    steer: Callable | None = None,
    instruction: Callable | None = None,
    progress: bool = True,
    timeout: float = 300.0,
) -> Rollouts:
    """Run episodes in parallel simulator workers with batched predictions in this process.

    ``steer(episode, obs) -> (N, 2) pixels or None`` gives the trace to follow at each prediction;
    ``instruction(episode) -> str`` replaces the task's instruction.
    """
    from tqdm.auto import tqdm

    state_mode = policy.meta["data"].get("state_mode", "goal")
    env_kwargs = {"resolution": policy.resolution, "camera": policy.meta["data"].get("camera", "corner2"),
                  "state_mode": state_mode, "render_depth": False, "max_steps": max_steps}
    if env_factory is None:
        from .envs import make_env as env_factory

    queue = list(episodes)
    total = len(queue)
    n_workers = max(1, min(workers or os.cpu_count() or 1, total))
    ctx = mp.get_context("spawn")
    pool = [_Worker(ctx, env_factory, env_kwargs) for _ in range(n_workers)]
    finished: list[Episode] = []
    latencies, nfes, batch_sizes = [], [], []
    bar = tqdm(total=total, desc="eval", unit="ep", disable=not progress)
    t0 = time.time()

    def start_next(w: _Worker) -> None:
        w.episode = queue.pop(0) if queue else None
        if w.episode is not None:
            w.send(("reset", w.episode.task, w.episode.seed))

    def finish(w: _Worker, error: str | None = None) -> None:
        ep = w.episode
        ep.error = error
        finished.append(ep)
        bar.update(1)
        bar.set_postfix(success=f"{np.mean([e.success for e in finished]):.2f}")

    try:
        for w in pool:
            start_next(w)
        while any(w.episode is not None for w in pool):
            waiting = []
            for i, w in enumerate(pool):
                if w.episode is None:
                    continue
                reply = w.recv(timeout)
                ep = w.episode
                if reply[0] == "error":
                    finish(w, reply[1].strip().splitlines()[-1] if reply[1] else "error")
                    if not w.proc.is_alive() or "did not answer" in reply[1] or "lost" in reply[1]:
                        w.close()
                        pool[i] = w = _Worker(ctx, env_factory, env_kwargs)
                    start_next(w)
                    continue
                r = reply[1]
                obs = r["obs"]
                if ep.obs is None:  # the reply to a reset
                    ep.max_steps = r["max_steps"]
                    ep.camera = (obs["camera_intrinsics"], obs["camera_extrinsics"])
                ep.steps += r["steps"]
                ep.obs = obs
                ep.success = ep.success or r["success"]
                ep.ee_path.extend(r["path"])
                if ep.record:
                    ep.frames.extend(r["frames"])
                    ep.frame_traces.extend([ep.traces[-1][1] if ep.traces else None] * len(r["frames"]))
                if r["success"] or r["done"] or ep.steps >= ep.max_steps:
                    finish(w)
                    start_next(w)
                else:
                    waiting.append(w)
            if not waiting:
                continue
            given = None
            if steer is not None:
                given = [steer(w.episode, w.episode.obs) for w in waiting]
                if any(g is None for g in given):
                    raise ValueError("steer() must return a trace for every episode it is asked about")
                for w, g in zip(waiting, given):
                    w.episode.given_trace = np.asarray(g, np.float32)
            texts = [instruction(w.episode) for w in waiting] if instruction is not None else None
            t_pred = time.perf_counter()
            preds = policy.predict_batch([w.episode.obs for w in waiting], texts, traces=given, steps=steps)
            latencies.append((time.perf_counter() - t_pred) * 1000)
            batch_sizes.append(len(waiting))
            for w, p in zip(waiting, preds):
                nfes.append(p.nfe)
                if p.trace is not None:
                    w.episode.traces.append((w.episode.steps, p.trace))
                w.send(("run", p.actions[:execute], w.episode.record))
    finally:
        bar.close()
        for w in pool:
            w.close()
    return Rollouts(finished, latencies, nfes, batch_sizes, time.time() - t0)


def evaluate(
    checkpoint: str | Path,
    out: str | Path,
    *,
    suite: str = "mt10",
    tasks: str | list[str] | None = None,
    episodes_per_task: int = 20,
    decoder: str | None = None,
    steps: int | None = None,
    execute: int | None = None,
    workers: int | None = None,
    video: bool = False,
    video_episodes: int = 1,
    max_steps: int | None = None,
    seed_base: int = EVAL_SEED_BASE,
    device: str | None = None,
    progress: bool = True,
    env_factory: Callable | None = None,
    policy=None,
    timeout: float = 300.0,
    instructions: str = "canonical",
) -> dict:
    """Evaluate a checkpoint in closed loop; writes report.json, report.md, success.png (and videos).

    ``instructions``: ``canonical`` (the task's instruction), ``paraphrase`` (phrasings seen in training) or
    ``unseen`` (phrasings never used for training), cycled over episodes.
    """
    from .envs.metaworld import resolve_tasks
    from .policy import load_policy

    task_list = resolve_tasks(suite, tasks)
    if episodes_per_task < 1:
        raise ValueError(f"episodes_per_task must be at least 1, got {episodes_per_task}")
    policy = policy or load_policy(checkpoint, device)
    _check_policy(policy, checkpoint)
    execute = execute or policy.horizon
    if not 1 <= execute <= policy.horizon:
        raise ValueError(f"execute must be between 1 and the chunk length {policy.horizon}, got {execute}")
    if decoder is not None and decoder != policy.decoder:
        raise ValueError(f"this policy was trained for {policy.decoder} decoding, not {decoder}")
    steps = steps if steps is not None else policy.default_steps
    used = {t: set(v) for t, v in policy.meta["data"].get("seeds", {}).items()}
    seeds = {t: held_out_seeds(episodes_per_task, used.get(t, set()), seed_base) for t in task_list}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    episodes = [Episode(t, s, record=video and k < video_episodes) for t in task_list for k, s in enumerate(seeds[t])]
    phrasing = instruction_picker(instructions)
    for k, ep in enumerate(episodes):
        ep.info["instruction"] = phrasing(ep.task, k)
    r = rollout(policy, episodes, steps=steps, execute=execute, workers=workers, max_steps=max_steps,
                env_factory=env_factory, progress=progress, timeout=timeout,
                instruction=lambda ep: ep.info["instruction"])
    report = _report(r.episodes, task_list, seeds, checkpoint, suite, policy, steps, episodes_per_task, execute,
                     r.latencies_ms, r.nfes, r.batch_sizes, r.seconds, used)
    report["instructions"] = instructions
    write_json_atomic(out / "report.json", report)
    (out / "report.md").write_text(_markdown(report))
    _plot(report, out / "success.png")
    if video:
        _videos(r.episodes, out / "videos", policy)
    return report


def _report(finished, task_list, seeds, checkpoint, suite, policy, steps, episodes_per_task, execute,
            latencies, nfes, batch_sizes, seconds, used) -> dict:
    from .machine import machine_info

    per_task = {}
    for t in task_list:
        eps = [e for e in finished if e.task == t]
        wins = sum(e.success for e in eps)
        lo, hi = wilson(wins, len(eps))
        per_task[t] = {
            "episodes": len(eps),
            "successes": wins,
            "success_rate": wins / max(1, len(eps)),
            "ci95": [lo, hi],
            "seeds": sorted(e.seed for e in eps),
            "mean_steps": float(np.mean([e.steps for e in eps])) if eps else 0.0,
            "errors": [{"seed": e.seed, "error": e.error} for e in eps if e.error],
        }
        overlap = set(per_task[t]["seeds"]) & used.get(t, set())
        assert not overlap, f"evaluation seeds {sorted(overlap)} of {t} were used for training"
    return {
        "suite": suite,
        "checkpoint": str(checkpoint),
        "decoder": policy.decoder,
        "steps": steps if policy.decoder == "diffusion" else None,
        "reasoning": policy.config.sequence.mode,
        "episodes_per_task": episodes_per_task,
        "execute": execute,
        "tasks": per_task,
        "success_rate": float(np.mean([v["success_rate"] for v in per_task.values()])),
        "latency_ms_per_chunk": float(np.mean(latencies)) if latencies else None,
        "mean_batch": float(np.mean(batch_sizes)) if batch_sizes else None,
        "nfe_per_chunk": float(np.mean(nfes)) if nfes else None,
        "errors": sum(len(v["errors"]) for v in per_task.values()),
        "seconds": seconds,
        "machine": machine_info(),
    }


def _markdown(report: dict) -> str:
    from .machine import describe

    lines = [
        f"# Evaluation of `{report['checkpoint']}`",
        "",
        f"Decoder `{report['decoder']}`" + (f" (T = {report['steps']})" if report["steps"] else "")
        + f", reasoning `{report['reasoning']}`, {report['episodes_per_task']} held-out layouts per task, "
        f"{report['execute']} actions executed per chunk, {report.get('instructions', 'canonical')} instructions.",
        "",
        "| task | success | 95% CI | episodes | mean steps |",
        "| --- | --- | --- | --- | --- |",
    ]
    for t, v in report["tasks"].items():
        lines.append(f"| {t} | {v['success_rate']:.0%} | {v['ci95'][0]:.0%}-{v['ci95'][1]:.0%} | {v['episodes']} "
                     f"| {v['mean_steps']:.0f} |")
    lines += [
        f"| **mean** | **{report['success_rate']:.1%}** | | | |",
        "",
        f"Latency per chunk: {report['latency_ms_per_chunk']:.1f} ms (batches of {report['mean_batch']:.1f} "
        f"observations on average); {report['nfe_per_chunk']:.0f} forward passes per chunk.",
        f"Time: {report['seconds']:.0f} s on {describe(report['machine'])}.",
    ]
    if report["errors"]:
        lines += ["", f"**{report['errors']} episode(s) ended in a simulator error** (counted as failures):"]
        for t, v in report["tasks"].items():
            lines += [f"- {t} seed {e['seed']}: {e['error']}" for e in v["errors"]]
    return "\n".join(lines) + "\n"


def _plot(report: dict, path: Path) -> None:
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
    ax.set_xticks(range(len(names)), [n.removesuffix("-v3") for n in names], rotation=35, ha="right")
    ax.set_ylabel("success (%)")
    ax.set_ylim(0, 105)
    ax.legend(loc="lower right")
    ax.set_title(f"{report['decoder']} / {report['reasoning']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _videos(episodes, directory: Path, policy) -> None:
    from .viz.draw import GIVEN_TRACE_COLOR, TRACE_COLOR, draw_trace, label, write_video

    scale = max(1, 256 // policy.resolution)
    for ep in episodes:
        if not ep.record or not ep.frames:
            continue
        color = GIVEN_TRACE_COLOR if ep.given_trace is not None else TRACE_COLOR
        frames = []
        for k, (img, tr) in enumerate(zip(ep.frames, ep.frame_traces)):
            f = draw_trace(img, tr, scale=scale, color=color)
            frames.append(label(f, f"{ep.task} t={k}" + (" success" if ep.success and k == len(ep.frames) - 1 else "")))
        write_video(directory / f"{ep.task}_seed{ep.seed}.mp4", frames, fps=30)
