"""Closed-loop rollouts: held-out layouts, simulator workers, batched predictions.

Simulators run in worker processes (one environment each); the policy runs in the main process and
predicts for every waiting environment in one batch. Each prediction is an action chunk; the first
``execute`` actions run before the policy is asked again. Episodes end at success or the step limit.
A worker that dies or stops answering ends its episode with an error saying so, and is replaced.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..envs.base import EVAL_SEED_BASE  # noqa: F401  (held-out layouts start here; re-exported)


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
    return {k: obs[k] for k in ("rgb", "images", "state", "ee_pos", "camera_intrinsics", "camera_extrinsics",
                                "instruction")}


def _goals(env) -> tuple[int, int] | None:
    """(goal conditions holding, goal conditions) for a simulator that counts them (LIBERO), else None."""
    count = getattr(env, "goals_met", None)
    return tuple(count()) if count is not None else None


def _worker(conn, env_factory: Callable, env_kwargs: dict) -> None:
    from ..workers import die_with_parent

    die_with_parent()
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
                                   "path": [obs["ee_pos"]], "steps": 0, "max_steps": env.max_steps,
                                   "goals": _goals(env)}))
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
                                   "path": path, "steps": len(path), "goals": _goals(env)}))
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
            self.proc.join(timeout=5)  # a closed pipe usually means the process is gone
            if not self.proc.is_alive():
                return ("error", f"worker process died (exit code {self.proc.exitcode})")
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
    goals: list | None = None  # goal conditions [holding at the start, holding now, in all], where counted
    info: dict = field(default_factory=dict)  # free for callers (e.g. the path a steering run follows)

    def absorb(self, r: dict) -> bool:
        """Take in a worker's reply to a reset or a run of actions; True when the episode is over."""
        obs = r["obs"]
        if self.obs is None:  # the reply to a reset
            self.max_steps = r["max_steps"]
            self.camera = (obs["camera_intrinsics"], obs["camera_extrinsics"])
        if r.get("goals") is not None:
            held, total = map(int, r["goals"])
            self.goals = [held if self.goals is None else self.goals[0], held, total]
        self.steps += r["steps"]
        self.obs = obs
        self.success = self.success or r["success"]
        self.ee_path.extend(r["path"])
        if self.record:
            self.frames.extend(r["frames"])
            self.frame_traces.extend([self.traces[-1][1] if self.traces else None] * len(r["frames"]))
        return r["success"] or r["done"] or self.steps >= self.max_steps


# ---------------------------------------------------------------------------------------------
def instruction_picker(kind: str) -> Callable[[str, int], str]:
    """(task, episode number) -> the instruction to give, for ``canonical``, ``paraphrase`` or ``unseen``."""
    from ..envs import task_text

    if kind == "canonical":
        return lambda task, k: task_text(task).instruction
    if kind == "paraphrase":
        return lambda task, k: task_text(task).paraphrases[k % len(task_text(task).paraphrases)]
    if kind == "unseen":
        return lambda task, k: task_text(task).unseen[k % len(task_text(task).unseen)]
    raise ValueError(f"instructions must be canonical, paraphrase or unseen, got {kind!r}")


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
    diffusion_steps: int,
    execute: int,
    workers: int | None = None,
    max_steps: int | None = None,
    env_factory: Callable | None = None,
    steer: Callable | None = None,
    instruction: Callable | None = None,
    progress: bool = True,
    timeout: float = 300.0,
    on_finish: Callable | None = None,
    perturb: dict | None = None,
) -> Rollouts:
    """Run episodes in parallel simulator workers with batched predictions in this process.

    ``steer(episode, obs) -> (N, 2) pixels or None`` gives the trace to follow at each prediction;
    ``instruction(episode) -> str`` replaces the task's instruction; ``on_finish(episode)`` is called as
    each episode ends (to keep partial results); ``perturb`` (:func:`reasonact.envs.perturb.parse_perturb`)
    changes the simulated scene's lighting, colours or camera positions.
    """
    from ..progress import progress_bar

    info = policy.info
    env_kwargs = {"resolution": info.resolution, "camera": info.camera, "state_mode": info.state_mode,
                  "render_depth": False, "max_steps": max_steps}
    if perturb:
        env_kwargs["perturb"] = perturb
    if info.fast_render:
        env_kwargs["fast_render"] = True
    if env_factory is None:
        from ..envs import make_env as env_factory

    queue = list(episodes)
    total = len(queue)
    n_workers = max(1, min(workers or os.cpu_count() or 1, total))
    ctx = mp.get_context("spawn")
    pool = [_Worker(ctx, env_factory, env_kwargs) for _ in range(n_workers)]
    finished: list[Episode] = []
    latencies, nfes, batch_sizes = [], [], []
    bar = progress_bar(total=total, desc="eval", unit="ep", disable=not progress)
    t0 = time.time()

    def start_next(w: _Worker) -> None:
        w.episode = queue.pop(0) if queue else None
        if w.episode is not None:
            w.send(("reset", w.episode.task, w.episode.seed))

    def finish(w: _Worker, error: str | None = None) -> None:
        ep = w.episode
        ep.error = error
        finished.append(ep)
        if on_finish is not None:
            on_finish(ep)
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
                if ep.absorb(reply[1]):
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
            preds = policy.predict_batch([w.episode.obs for w in waiting], texts, traces=given,
                                         diffusion_steps=diffusion_steps)
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
