"""``reasonact collect``: scripted-expert demonstrations from Meta-World or LIBERO, written as a dataset.

``--expert path`` adds random-path episodes instead (the end effector visits random waypoints in each
task's scene; see :mod:`reasonact.envs.paths`), ``--expert short`` short random paths (a few centimetres,
each waypoint closed to a few millimetres), ``--expert donor`` donor-path episodes (it follows another
layout's demonstration in this one): trained with the trace given, they teach steering.

Resumable: every finished episode is its own atomically written file, and a re-run of the same command
collects only what is missing. Episodes are independent jobs ``(task, seed)`` fanned out over worker
processes (one simulator per process); the main process alone writes files.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..envs.paths import EXPERTS, PATH_HEIGHTS, SHORT_PATHS, PathExpert, donor_seed, height_range
from ..io import encode_png, quantize_depth, write_json_atomic
from .format import (
    CODEBASE_VERSION,
    LEGACY_VERSION,
    DatasetError,
    append_failure,
    camera_columns,
    check_settings,
    existing_episodes,
    finalize,
    is_legacy,
    read_failures,
    write_episode,
)

MAX_START_JITTER = 0.15  # metres: beyond it the hand starts outside some tasks' reach
MAX_FAILURES_PER_TASK = 20  # an expert that fails this often on a task is reported and not retried forever...
MIN_SUCCESS_RATE = 0.1  # ...unless this share of its tries succeeded (random paths into a door or a window frame fail)


@dataclass
class CollectSummary:
    out: Path
    episodes: dict[str, int]
    new_episodes: int
    failures: dict[str, int]
    frames: int
    seconds: float
    gave_up: list[str] = field(default_factory=list)
    failures_before_giving_up: dict[str, int] = field(default_factory=dict)  # per task given up: its failures in all
    expert: str = "task"  # whose episodes ``episodes`` counts

    def __str__(self) -> str:
        fails = sum(self.failures.values())
        kind = {"path": "random-path ", "short": "short-path ", "donor": "donor-path "}.get(self.expert, "")
        lines = [
            f"dataset {self.out}: {sum(self.episodes.values())} {kind}episodes, {self.frames} frames in all "
            f"({self.new_episodes} new in {self.seconds:.0f}s, {fails} expert failure(s) skipped)"
        ]
        for t in self.gave_up:
            lines.append(f"warning: gave up on {t} after {self.failures_before_giving_up.get(t, MAX_FAILURES_PER_TASK)} "
                         f"expert failures (fewer than {MIN_SUCCESS_RATE:.0%} of its tries succeeded)")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# worker side: one simulator per process, kept while consecutive jobs use the same task
_WORKER_ENV = None


def _worker_init() -> None:
    from ..workers import die_with_parent

    die_with_parent()
    os.environ.setdefault("MUJOCO_GL", "egl")


def _get_env(task: str, resolution: int, camera: str, state_mode: str, fast_render: bool = False):
    global _WORKER_ENV
    key = (task, resolution, camera, state_mode, fast_render)
    if _WORKER_ENV is not None and _WORKER_ENV[0] == key:
        return _WORKER_ENV[1]
    if _WORKER_ENV is not None:
        _WORKER_ENV[1].close()
        _WORKER_ENV = None
    from ..envs import make_env

    env = make_env(task, resolution=resolution, camera=camera, state_mode=state_mode,
                   **({"fast_render": True} if fast_render else {}))
    _WORKER_ENV = (key, env)
    return env


def run_expert_episode(task: str, seed: int, resolution: int, camera: str, state_mode: str,
                       expert: str = "task", start_jitter: float = 0.0, path_hold: int = 0,
                       path_heights: str = "hand", path_settle: bool = False, fast_render: bool = False) -> dict:
    """Roll out one layout with the task's scripted expert (``expert="task"``), along a random path
    (``"path"``, see :mod:`reasonact.envs.paths`; its waypoints at the hand's starting height,
    ``path_heights="hand"``, or at random heights, ``"random"``, or at random heights from the table up,
    ``"full"``), along a short random path (``"short"``: :data:`~reasonact.envs.paths.SHORT_PATHS`, the same
    heights) or along the expert's path on another layout (``"donor"``), staying ``path_hold`` steps at a
    path's end (``path_settle``: servoing onto it meanwhile); frames are PNG-encoded here, in the worker."""
    env = _get_env(task, resolution, camera, state_mode, fast_render)
    if expert == "donor":  # the other layout's demonstration first: it leaves the simulator on that layout
        donor, grippers, ok = env.expert_path(donor_seed(seed), start_jitter=start_jitter)
        if not ok:
            return {"task": task, "seed": int(seed), "expert": expert, "success": False, "length": 0,
                    "views": env.views}
    obs = env.reset(seed, start_jitter=start_jitter)
    path, steps = None, env.max_steps
    if expert in ("path", "short"):
        path = PathExpert.for_episode(task, seed, obs["ee_pos"], hold=path_hold, settle=path_settle,
                                      **height_range(path_heights), **(SHORT_PATHS if expert == "short" else {}))
    elif expert == "donor":
        path = PathExpert.along(donor, grippers, hold=path_hold, settle=path_settle)
    if path is not None:
        steps = min(steps, path.step_budget(obs["ee_pos"]))
    cols: dict[str, list] = defaultdict(list)
    success = False
    for _ in range(steps):
        action = env.expert_action() if path is None else path.action(obs["ee_pos"])
        for view in env.views:
            image, intrinsics, extrinsics = camera_columns(view)
            cols[image].append(encode_png(obs["images"][view]))
            cols[intrinsics].append(obs["cameras"][view][0].reshape(-1))
            cols[extrinsics].append(obs["cameras"][view][1].reshape(-1))
        cols["observation.depth"].append(quantize_depth(obs["depth"]))
        cols["observation.state"].append(obs["state"])
        cols["observation.ee_pos"].append(obs["ee_pos"])
        cols["observation.privileged"].append(obs["privileged"]["full_state"])
        cols["observation.points"].append(obs["privileged"]["points"].reshape(-1))
        cols["action"].append(action)
        obs, success, done = env.step(action)
        if path is not None:  # the task's own success is beside the point here
            success = path.update(obs["ee_pos"])
            done = success or path.stuck or env.elapsed_steps >= steps
        cols["next.success"].append(success)
        if done:
            break
    result = {"task": task, "seed": int(seed), "expert": expert, "success": bool(success),
              "length": len(cols["action"]), "views": env.views}
    if success:
        result["columns"] = {
            k: v if k == "next.success" or isinstance(v[0], bytes) else np.stack(v).astype(np.float32)
            for k, v in cols.items()
        }
        result["dims"] = (env.state_dim, env.action_dim, len(obs["privileged"]["full_state"]),
                          obs["privileged"]["points"].size)
    return result


def _open(root: Path, settings: dict, task_list: list[str]) -> list[str]:
    """Create the dataset or check that it was collected with these settings; mark it incomplete until
    :func:`finalize`. Returns every task it holds."""
    info = check_settings(root, settings)
    (root / "meta").mkdir(parents=True, exist_ok=True)
    if info is None:
        info = {"codebase_version": CODEBASE_VERSION, **settings, "cameras": settings["camera"].split(","),
                "complete": False, "tasks": []}
    elif is_legacy(info):
        raise DatasetError(f"{root} is in reasonact's earlier layout ({LEGACY_VERSION}): it still loads for training "
                           "and evaluation but cannot be extended; collect into a new --out")
    all_tasks = list(dict.fromkeys(list(info.get("tasks", [])) + task_list))
    info.update(tasks=all_tasks, complete=False)
    write_json_atomic(root / "meta" / "info.json", info)
    return all_tasks


def _simulator_settings(suite: str, tasks, resolution: int, camera: str | None, state_mode: str | None, expert: str,
                        fast_render: bool = False) -> tuple[str, list[str], str, str]:
    """(simulator name, tasks, cameras normalised, state mode) for a suite, defaults filled in, or a clear error."""
    from ..envs import simulator, simulator_name

    sim = simulator(suite)
    task_list = sim.resolve_tasks(suite, tasks)
    camera, state_mode = camera or sim.DEFAULT_CAMERA, state_mode or sim.DEFAULT_STATE_MODE
    sim.validate_render_args(resolution, camera, state_mode)
    name = simulator_name(suite)
    if name == "libero" and expert != "task":
        raise ValueError(f"--expert {expert} is implemented for Meta-World only")
    if name != "libero" and fast_render:
        raise ValueError("--fast-render is for LIBERO's scenes (Meta-World's already render fast)")
    return name, task_list, ",".join(sim.parse_cameras(camera)), state_mode  # cameras: as the dataset records them


def _check_counts(expert: str, episodes_per_task, task_episodes: dict, task_list: list[str], seed,
                  start_jitter, path_hold=0, path_heights="hand", path_settle=False) -> None:
    if expert not in EXPERTS:
        raise ValueError(f"unknown expert {expert!r}; choose from {', '.join(EXPERTS)}")
    if not isinstance(episodes_per_task, int) or episodes_per_task < 1:
        raise ValueError(f"episodes_per_task must be a positive integer, got {episodes_per_task!r}")
    for task, n in task_episodes.items():
        if task not in task_list:
            raise ValueError(f"task_episodes names {task!r}, which is not among the tasks collected "
                             f"({', '.join(task_list)})")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"task_episodes[{task!r}] must be a positive integer, got {n!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not 0.0 <= float(start_jitter) <= MAX_START_JITTER:
        raise ValueError(f"start_jitter must be between 0 and {MAX_START_JITTER} metres, got {start_jitter!r}")
    if not isinstance(path_hold, int) or isinstance(path_hold, bool) or path_hold < 0:
        raise ValueError(f"path_hold must be a non-negative number of steps, got {path_hold!r}")
    if path_hold and expert == "task":
        raise ValueError("path_hold is for path episodes: pass it with expert='path' or 'donor' (--expert path)")
    if path_settle and not path_hold:
        raise ValueError("path_settle acts while the hand is held at the path's end: pass it with path_hold > 0")
    if path_heights not in PATH_HEIGHTS:
        raise ValueError(f"path_heights must be one of {', '.join(PATH_HEIGHTS)}, got {path_heights!r}")
    if path_heights != "hand" and expert not in ("path", "short"):
        raise ValueError("path_heights is for random-path episodes: pass it with expert='path' or 'short' "
                         "(--expert path)")


def collect(
    out: str | os.PathLike,
    *,
    suite: str = "mt10",
    tasks: str | list[str] | None = None,
    episodes_per_task: int = 50,
    resolution: int = 128,
    camera: str | None = None,
    state_mode: str | None = None,
    workers: int | None = None,
    seed: int = 0,
    expert: str = "task",
    start_jitter: float = 0.0,
    path_hold: int = 0,
    path_heights: str = "hand",
    path_settle: bool = False,
    task_episodes: dict[str, int] | None = None,
    fast_render: bool = False,
    progress: bool = True,
) -> CollectSummary:
    """Collect (or resume, or extend) a dataset of successful episodes: ``episodes_per_task`` of the given
    ``expert`` per task (``task_episodes``: named tasks' own counts, e.g. ``{"push-v3": 200}``). ``"task"``: the
    task's scripted expert; ``"path"``: random paths through its scene (:mod:`reasonact.envs.paths`), the
    waypoints at the hand's height (``path_heights="hand"``) or random heights (``"random"``, ``"full"``);
    ``"short"``: a few centimetres of one; ``"donor"``: the expert's path on another layout, followed in this one.
    Path episodes teach steering; the hand stays ``path_hold`` steps at a path's end (``path_settle``: closing on it).
    ``start_jitter`` (metres) starts each hand at a random offset from its home, so that where the hand is says
    nothing about where the object is. ``camera``, ``state_mode``: the simulator's by default. ``fast_render``:
    LIBERO's cheaper frames (:class:`~reasonact.envs.libero.LiberoEnv`), which its policies are evaluated with."""
    sim_name, task_list, camera, state_mode = _simulator_settings(suite, tasks, resolution, camera, state_mode,
                                                                 expert, fast_render)
    task_episodes = dict(task_episodes or {})
    _check_counts(expert, episodes_per_task, task_episodes, task_list, seed, start_jitter, path_hold,
                  path_heights, path_settle)
    wanted = {t: task_episodes.get(t, episodes_per_task) for t in task_list}
    workers = workers or min(os.cpu_count() or 1, 8)
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")

    root = Path(out)
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"--out {root} is a file; a dataset is a directory: choose another --out")
    settings = dict(env=sim_name, suite=suite, resolution=resolution, camera=camera, state_mode=state_mode,
                    seed=seed, start_jitter=float(start_jitter), fast_render=bool(fast_render))
    all_tasks = _open(root, settings, task_list)
    existing = existing_episodes(root)
    tried, have, n_failed = _so_far(existing, read_failures(root), expert)

    def seed_stream(task: str):
        s = seed
        while True:
            if s not in tried[task]:
                tried[task].add(s)
                yield s
            s += 1

    streams = {t: seed_stream(t) for t in task_list}

    def hopeless(t: str) -> bool:
        return n_failed[t] >= MAX_FAILURES_PER_TASK and have[t] < MIN_SUCCESS_RATE * (have[t] + n_failed[t])

    # A task this expert already failed too often on (an earlier run gave up on it) is not retried.
    gave_up = [t for t in task_list if hopeless(t) and have[t] < wanted[t]]
    need = {t: 0 if t in gave_up else max(0, wanted[t] - have[t]) for t in task_list}
    jobs = [(t, next(streams[t])) for t in task_list for _ in range(need[t])]
    total_needed = sum(need.values())
    next_episode = (existing[-1]["episode_index"] + 1) if existing else 0
    next_frame = sum(e["length"] for e in existing)
    task_index = {t: i for i, t in enumerate(all_tasks)}
    new_failures: dict[str, int] = defaultdict(int)
    new_episodes = 0
    t0 = time.time()

    from ..progress import progress_bar

    bar = progress_bar(total=total_needed, desc="collect", unit="ep", disable=not progress or total_needed == 0)

    def handle(result: dict) -> tuple[str, int] | None:
        """Write a finished episode or log a failure; return a replacement job if one is needed."""
        nonlocal next_episode, next_frame, new_episodes
        task = result["task"]
        if result["success"]:
            write_episode(root, result, next_episode, next_frame, task_index[task])
            next_episode += 1
            next_frame += result["length"]
            new_episodes += 1
            have[task] += 1
            bar.update(1)
            return None
        append_failure(root, task, result["seed"], expert)
        new_failures[task] += 1
        n_failed[task] += 1
        bar.set_postfix(failures=sum(new_failures.values()))
        if hopeless(task):
            if task not in gave_up:
                gave_up.append(task)
            return None
        return task, next(streams[task])

    args = (resolution, camera, state_mode, expert, float(start_jitter), int(path_hold), path_heights,
            bool(path_settle), bool(fast_render))
    try:
        if workers == 1 or total_needed <= 1:
            _run_here(jobs, handle, args, gave_up)
        else:
            _run_in_pool(jobs, handle, args, gave_up, min(workers, total_needed))
    finally:
        bar.close()
        if _WORKER_ENV is not None and workers == 1:
            _close_local_env()

    frames = finalize(root)
    return CollectSummary(out=root, episodes={t: have[t] for t in all_tasks}, new_episodes=new_episodes,
                          failures=dict(new_failures), frames=frames, seconds=time.time() - t0, gave_up=gave_up,
                          failures_before_giving_up={t: n_failed[t] for t in gave_up}, expert=expert)



def _so_far(existing: list[dict], failures: list[dict], expert: str) -> tuple[dict, dict, dict]:
    """Per task: the layout seeds already tried (by either expert: every layout is used once), and this
    expert's successful episodes and failures."""
    tried: dict[str, set[int]] = defaultdict(set)
    have: dict[str, int] = defaultdict(int)
    n_failed: dict[str, int] = defaultdict(int)
    for e in existing:
        tried[e["task"]].add(e["seed"])
        have[e["task"]] += e["expert"] == expert
    for f in failures:
        tried[f["task"]].add(f["seed"])
        n_failed[f["task"]] += f.get("expert", "task") == expert
    return tried, have, n_failed


def _run_here(jobs: list, handle, args: tuple, gave_up: list) -> None:
    """Run the jobs one after another in this process (``handle`` may queue a replacement)."""
    queue = list(jobs)
    while queue:
        task, s = queue.pop(0)
        if task in gave_up:
            continue
        replacement = handle(run_expert_episode(task, s, *args))
        if replacement:
            queue.append(replacement)


def _run_in_pool(jobs: list, handle, args: tuple, gave_up: list, workers: int) -> None:
    """Run the jobs in simulator worker processes; results are handled here, in the main process."""
    ctx = mp.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init) as pool:
        task_of = {pool.submit(run_expert_episode, t, s, *args): t for t, s in jobs}
        pending = set(task_of)
        try:
            while pending:
                done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    if fut.cancelled():
                        continue
                    try:
                        result = fut.result()
                    except cf.process.BrokenProcessPool as e:
                        raise RuntimeError("a collection worker died (simulator crash?). Finished episodes are "
                                           "saved; re-run the same command to resume.") from e
                    replacement = handle(result)
                    if replacement:
                        new = pool.submit(run_expert_episode, *replacement, *args)
                        task_of[new] = replacement[0]
                        pending.add(new)
                    elif result["task"] in gave_up:  # drop its queued jobs
                        for f in pending:
                            if task_of[f] == result["task"]:
                                f.cancel()
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise

def _close_local_env() -> None:
    global _WORKER_ENV
    if _WORKER_ENV is not None:
        _WORKER_ENV[1].close()
        _WORKER_ENV = None
