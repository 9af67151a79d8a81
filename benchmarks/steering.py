"""Steering: does the gripper follow a drawn trace?

For held-out layouts of each task, the policy first runs on its own. It is then given a path taken from
another layout's demonstration (the expert's end-effector path in that episode, projected into the image):
of the task's demonstrations, the one farthest from the path the policy took on its own, so that following
it means doing something else. At every chunk the policy follows the part of that path still ahead of the
gripper (:class:`reasonact.steering.PathTracker`). We measure how far the executed end-effector path
(projected) stays from the given path, in pixels, steered and unsteered: if steering works, the steered
gripper stays much closer to the given path than the policy's own behaviour does; and in the world, in cm
from the executed 3D path to the given 3D path (of which the trace is the image). A third run sets the bar:
a controller that tracks the given path in 3D; its distance says how closely the path can be followed in
this layout at all (the scene might block the arm). Two more controllers see only what the policy sees: the
path ahead as the trace's few points, and (a trace with depth) those points as the trace's tokens write
them, so that their distances say what the trace, and its bins, allow.

``--paths`` chooses the paths: ``demos`` (above; ``--donors heldout`` takes the demonstrations from the
scripted expert on more held-out layouts instead of the training data, so that a policy trained on
donor-path episodes, ``collect --expert donor``, is never given a path it was trained along), ``own`` (the
scripted expert's path on the same layout: steered along it, the task should still succeed) or ``free``
(random waypoints at random heights, moves down and up included, from where the hand starts: a 2D trace
does not say how far along the camera's rays to go, so the cm figure shows what the image plane leaves open).

    python benchmarks/steering.py --checkpoint RUN [--data DIR | --donors heldout] [--paths demos|own|free|plane]
        [--tasks reach-v3,...]
        [--episodes 10] [--video DIR] [--from-gripper] [--execute N] [--pixels-only] [--correct GAIN]

A policy whose trace carries depth (``train --trace-depth``) is given the path ahead of the gripper in the
world (tracked in metres), as pixels and each point's depth from the first camera: the drawn path plus the
scene's depth. ``--pixels-only`` gives it the image path alone, as for a 2D trace: it writes the depth itself.

``--from-gripper`` gives each trace from the gripper's pixel, then the path ahead (every training trace starts at
the gripper), instead of from the path's point nearest to the gripper. ``--execute N`` runs N steps of each
steered chunk before the policy looks again (default: the whole chunk, as unsteered); fewer steps mean more
forward passes and less motion on a stale trace.

``--correct GAIN`` (a trace with depth) shifts the path given to the policy by GAIN times the sum of the
gripper's past residuals from it (:class:`reasonact.steering.Correction`): an integral term around the policy,
for an offset it leaves open call after call, as at a path's end. The reference controllers get the path as
drawn.

``--video DIR`` writes the first steered rollout of each task as ``DIR/steered_<task>_seed<s>.mp4``: the given
path in yellow and the gripper's executed path in magenta, drawn on the first view.

``--open-loop N`` asks a quicker question without the simulator: on N dataset frames, the policy is given a
straight 12-pixel trace from the gripper in a random direction; the cosine between that direction and the
image-plane motion of the predicted chunk is 1 for a policy that follows it and ~0 for one that ignores it.
Two reference rows: the demonstrations' own motion against the first segment of their recorded trace (what
following a trace looks like in the data), and the unsteered policy's motion against that recorded trace
(how much of the trace the policy already infers from the image and state). On a dataset with random-path
episodes (``collect --expert path``) three more rows, on N of their frames, where only the trace says where
to go: the policy given the frame's recorded trace, the policy without it, and the recorded motion.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402

METRICS = ("mean_px", "max_px", "end_px", "mean_cm", "upto_end_cm", "ray_cm", "end_cm")


class PathFollower:
    """A perfect follower for reference: its "trace" is the remaining path in world metres, and it moves the
    end effector toward the point ``lookahead`` metres along it, one step at a time (run it with
    ``execute=1``), gripper open. With ``points``, it sees what a policy sees instead: the path ahead from
    the gripper (as far as the policy's trace span) resampled to that many points (the trace's resolution),
    whose chords cut the path's corners; with ``tokens`` too, those points as the policy's trace tokens
    write them (pixels and depth in bins) and read back into the world."""

    def __init__(self, policy, lookahead: float = 0.02, gain: float = 10.0, points: int | None = None,
                 tokens: bool = False):
        self.info = policy.info
        self.lookahead, self.gain, self.points = lookahead, gain, points
        self.span = policy.tok.trace.span  # a policy trained on traces of a span sees only that much of the path
        self.tokens = policy.tok.trace if tokens else None

    def predict_batch(self, observations, texts=None, traces=None, diffusion_steps=None):
        from reasonact.interface import Prediction
        from reasonact.steering import point_along, truncate
        from reasonact.tokenizers.trace import resample_trace

        out = []
        for o, path in zip(observations, traces):
            if self.points:
                path = np.vstack([o["ee_pos"], path])
                path = resample_trace(path if self.span is None else truncate(path, self.span), self.points)
            if self.tokens is not None:
                path = written(path, self.tokens, o["camera_intrinsics"], o["camera_extrinsics"])
            move = self.gain * (point_along(path, self.lookahead) - o["ee_pos"])
            action = np.append(np.clip(move, -1.0, 1.0), -1.0).astype(np.float32)[None]
            out.append(Prediction(action, None, None, None, nfe=0, latency_ms=0.0))
        return out


def written(path: np.ndarray, tok, K: np.ndarray, E: np.ndarray) -> np.ndarray:
    """World points (N, 3) -> the same as a depth trace's tokens write them: projected, binned, read back."""
    from reasonact.envs import depth_of, project, unproject

    trace = tok.decode(tok.encode(np.concatenate([project(path, K, E), depth_of(path, E)[:, None]], -1)))
    return unproject(trace[:, :2], trace[:, 2], K, E)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", default=None, help="with --donors data: the dataset with the donor demonstrations "
                                                 "(default: the run's)")
    ap.add_argument("--donors", default="data", choices=("data", "heldout"),
                    help="with --paths demos, whose demonstrations to give: the dataset's (layouts the policy was "
                         "trained on), or the scripted expert's on --donor-layouts more held-out layouts per task, "
                         "which no training episode followed")
    ap.add_argument("--donor-layouts", type=int, default=8, help="with --donors heldout: donor layouts per task")
    ap.add_argument("--tasks", default=None, help="default: the run's tasks")
    ap.add_argument("--episodes", type=int, default=10, help="held-out layouts per task")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--paths", default="demos", choices=("demos", "own", "free", "plane"),
                    help="which paths to give: other layouts' demonstrations, the expert's own path on the layout, "
                         "random waypoints at random heights, or random waypoints at the hand's starting height "
                         "(as in collect --expert path)")
    ap.add_argument("--from-gripper", action="store_true",
                    help="start each given trace at the gripper, then the path ahead (as every training trace starts), "
                         "instead of at the path's point nearest to the gripper")
    ap.add_argument("--pixels-only", action="store_true",
                    help="give a policy whose trace carries depth the pixels alone: it writes the depth itself")
    ap.add_argument("--execute", type=int, default=None, metavar="N",
                    help="steps of each steered chunk run before the next prediction (default: the policy's, else its horizon)")
    ap.add_argument("--diffusion-steps", type=int, default=None, metavar="T",
                    help="refinement rounds per chunk, steered and unsteered (default: the policy's)")
    ap.add_argument("--action-values", default="mode", choices=("mode", "mean"),
                    help="each action token read as its most likely bin, or as its bins' mean (reasonact eval's option)")
    ap.add_argument("--correct", type=float, default=0.0, metavar="GAIN",
                    help="a trace with depth: shift the path given to the policy by GAIN times the sum of the gripper's "
                         "past residuals from it (reasonact.steering.Correction; 0: the path as drawn)")
    ap.add_argument("--open-loop", type=int, default=0, metavar="N", help="the open-loop check on N frames instead")
    ap.add_argument("--out", default=None)
    ap.add_argument("--video", default=None, metavar="DIR",
                    help="write the first steered rollout of each task to DIR as an MP4, the given path beside the executed one")
    a = ap.parse_args()
    if a.open_loop:
        return open_loop(a)

    from reasonact.envs import depth_of, project
    from reasonact.evaluation import Episode, held_out_seeds, rollout
    from reasonact.policy import load_policy
    from reasonact.steering import Correction, PathTracker, closest_on_path, distance_to_path, point_along

    policy = load_policy(a.checkpoint)
    policy.decode_options = replace(policy.decode_options, values=a.action_values)
    if "trace" not in policy.blocks:
        raise SystemExit(f"{a.checkpoint} has no trace block (reasoning {policy.info.reasoning!r}); "
                         "steering needs --reasoning trace or depth+trace")
    tasks = a.tasks.split(",") if a.tasks else list(policy.info.tasks)
    used = {t: set(v) for t, v in policy.info.training_seeds.items()}

    def own_path(ep) -> np.ndarray:
        K, E = ep.camera
        return project(np.asarray(ep.ee_path), K, E)

    def episodes(given=None, world=False, record=False):
        """Held-out layouts; with ``given`` (image path in pixels, world path in metres, by layout) each
        carries a tracker along its path, in the image, or (``world``) in metres for the 3D follower;
        ``record``: the first of each task keeps its frames."""
        out = []
        for t in tasks:
            for s in held_out_seeds(a.episodes, used.get(t, set())):
                if given is not None and (t, s) not in given:
                    continue
                info = {}
                if given is not None:
                    image, metres = given[(t, s)]
                    tracker = PathTracker(metres, tolerance=0.01) if world else PathTracker.in_image(image, policy.resolution)
                    info = {"given": image, "given_world": metres, "tracker": tracker,
                            "correction": Correction(a.correct)}
                first = not any(e.task == t for e in out)
                out.append(Episode(t, s, record=record and first, info=info))
        return out

    def steer(ep, obs):
        K, E = obs["camera_intrinsics"], obs["camera_extrinsics"]
        if policy.info.trace_depth and not a.pixels_only:  # the path ahead in the world, as pixels and depth
            ahead = ep.info["correction"](ep.info["tracker"].ahead(obs["ee_pos"]), obs["ee_pos"])
            pts = np.vstack([obs["ee_pos"], ahead]) if a.from_gripper else ahead
            return np.concatenate([project(pts, K, E), depth_of(pts, E)[:, None]], -1).astype(np.float32)
        here = project(obs["ee_pos"], K, E).reshape(1, 2)
        ahead = ep.info["tracker"].ahead(here[0])
        return np.concatenate([here, ahead]).astype(np.float32) if a.from_gripper else ahead

    def steer_world(ep, obs):
        return ep.info["tracker"].ahead(obs["ee_pos"])

    if a.correct < 0:
        raise SystemExit(f"--correct must be 0 or more, got {a.correct}")
    if a.correct and not (policy.info.trace_depth and not a.pixels_only):
        raise SystemExit("--correct shifts a path in the world: it needs a policy whose trace carries depth, "
                         "without --pixels-only")
    execute = a.execute or policy.info.execute
    if not 1 <= execute <= policy.horizon:
        raise SystemExit(f"--execute must be between 1 and the policy's horizon ({policy.horizon}), got {a.execute}")
    T = policy.info.default_diffusion_steps if a.diffusion_steps is None else a.diffusion_steps
    if T < 1:
        raise SystemExit(f"--diffusion-steps must be 1 or more, got {T}")
    kw = dict(diffusion_steps=T, workers=a.workers)
    free = rollout(policy, episodes(), execute=policy.horizon, **kw).episodes
    given = given_paths(a, policy, tasks, free, own_path, used)
    with_depth = policy.info.trace_depth and not a.pixels_only
    steered = rollout(policy, episodes(given, world=with_depth, record=bool(a.video)), steer=steer,
                      execute=execute, **kw).episodes
    if a.video:
        write_steered_videos(steered, Path(a.video), policy.resolution)
    followers = {"follower": PathFollower(policy), "trace_follower": PathFollower(policy, points=policy.info.trace_points)}
    if with_depth:  # the trace as its tokens write it: what the policy's trace can say at all
        followers["token_follower"] = PathFollower(policy, points=policy.info.trace_points, tokens=True)
    references = {name: rollout(f, episodes(given, world=True), steer=steer_world, diffusion_steps=1, execute=1,
                                workers=a.workers).episodes for name, f in followers.items()}
    for e in free:
        if (e.task, e.seed) in given:
            e.info["given"], e.info["given_world"] = given[(e.task, e.seed)]

    def deviation(ep):
        """Mean and largest distance of the executed path from the given one, in pixels; the final gripper
        position's distance from the path's end (pixels); the mean distance in the world (cm), over the
        episode and over its steps until the gripper first comes within 2 cm of the path's end after coming
        within 2 cm of its midpoint (all of them if it never does; a path that ends near its start is not
        reached at once): what it did along the path, without what it did after; and the mean part of the
        world distance that lies along the first view's rays (cm), which a 2D trace cannot show."""
        px = own_path(ep)
        d = distance_to_path(px, ep.info["given"])
        end = float(np.linalg.norm(px[-1] - ep.info["given"][-1]))
        world, given = np.asarray(ep.ee_path), ep.info["given_world"]
        cm = 100 * distance_to_path(world, given)
        upto = len(world)
        half = point_along(given, np.linalg.norm(np.diff(given, axis=0), axis=1).sum() / 2)
        midway = np.nonzero(np.linalg.norm(world - half, axis=1) < 0.02)[0]
        if len(midway):
            arrived = np.nonzero(np.linalg.norm(world[midway[0]:] - given[-1], axis=1) < 0.02)[0]
            upto = midway[0] + arrived[0] + 1 if len(arrived) else upto
        E = np.asarray(ep.camera[1], np.float64)
        centre = -E[:3, :3].T @ E[:3, 3]  # the camera's position in the world
        near = closest_on_path(world, given)
        ray = (near - centre) / np.linalg.norm(near - centre, axis=-1, keepdims=True)
        along = 100 * np.abs(((world - near) * ray).sum(-1))
        return (float(d.mean()), float(d.max()), end, float(cm.mean()), float(cm[:upto].mean()), float(along.mean()),
                float(100 * np.linalg.norm(world[-1] - given[-1])))

    rows = []
    key = lambda e: (e.task, e.seed)  # noqa: E731
    by = {name: {key(e): e for e in eps} for name, eps in (("own", free), *references.items())}
    runs = {"steered": steered, **{name: [d[key(e)] for e in steered] for name, d in by.items()}}
    # each steered layout's distances, for the policy and for each reference run on the same layout
    per_episode = [{"task": e.task, "seed": e.seed, "steps": len(e.ee_path), "steered_success": bool(e.success),
                    **{f"{name}_{m}": v for name, eps in runs.items() for m, v in zip(METRICS, deviation(eps[i]))}}
                   for i, e in enumerate(steered)]
    for t in tasks:
        mine = [r for r in per_episode if r["task"] == t]
        if not mine:
            continue
        row = {"task": t, "episodes": len(mine)}
        row |= {f"{name}_{m}": float(np.mean([r[f"{name}_{m}"] for r in mine])) for name in runs for m in METRICS}
        for name in ("steered", "own"):
            row[f"{name}_success"] = float(np.mean([e.success for e in runs[name] if e.task == t]))
        rows.append(row)
    cols = [f"{n}_{m}" for n in runs for m in METRICS]
    report(f"steering_{a.paths}", rows, ["task", "episodes", *cols, "steered_success", "own_success"],
           extra={"summary": within(rows, 0.015), "per_episode": per_episode,
                  "checkpoint": a.checkpoint, "resolution": policy.resolution, "paths": a.paths,
                  **({"donors": a.donors, "donor_layouts": a.donor_layouts} if a.paths == "demos" else {}),
                  "from_gripper": a.from_gripper, "steered_execute": execute, "diffusion_steps": T,
                  "action_values": a.action_values, "correct": a.correct,
                  "trace_depth": policy.info.trace_depth,
                  "depth_given": bool(with_depth),
                  "note": "distances from the executed end-effector path to the given path: in image pixels "
                          "(projected) and in the world (cm, 3D); max_px is the per-episode maximum averaged over "
                          "episodes; end_px is the final gripper position's distance to the path's end (end_cm: the same "
                          "in the world); upto_end_cm: the mean distance in the world over the steps until the gripper, "
                          "having passed within 2 cm of the path's midpoint, first came within 2 cm of its end (the whole "
                          "episode if it never did); ray_cm: the mean part of the world distance along the "
                          "first view's rays through the given path (what the image does not show); "
                          "follower: a controller tracking the given path in 3D; trace_follower: the same controller "
                          "seeing only what the policy sees, the path ahead from the gripper as the trace's points; "
                          "token_follower (a trace with depth): the same points as the policy's trace tokens write "
                          "them, binned and read back. "
                          "Paths: " + PATHS[a.paths]},
           out=a.out)


def within(rows: list[dict], metres: float) -> dict:
    """How many tasks the steered policy follows to within ``metres`` on average (over the episode, and up to
    the path's end: ``upto_end_cm``), and how many the reference controller seeing the same trace does (a
    path the arm cannot follow in a layout, pressing into the scene, is out of the policy's reach too), with
    the policy's count among those."""
    cm = 100 * metres
    close = lambda r, name: r[f"{name}_mean_cm"] <= cm  # noqa: E731
    reachable = [r for r in rows if close(r, "trace_follower")]
    return {"within_cm": cm, "tasks": len(rows),
            "steered_mean_cm": float(np.mean([r["steered_mean_cm"] for r in rows])),
            "steered_within": sum(close(r, "steered") for r in rows),
            "steered_within_up_to_the_end": sum(r["steered_upto_end_cm"] <= cm for r in rows),
            "trace_follower_within": len(reachable),
            **({"token_follower_within": sum(close(r, "token_follower") for r in rows)}
               if "token_follower_mean_cm" in rows[0] else {}),
            "steered_within_where_trace_follower_is": sum(close(r, "steered") for r in reachable)}


def write_steered_videos(steered, directory: Path, resolution: int) -> None:
    from reasonact.evaluation.videos import steered_frames
    from reasonact.viz.draw import write_video

    for e in steered:
        if e.record:
            path = write_video(directory / f"steered_{e.task}_seed{e.seed}.mp4",
                               steered_frames(e, e.info["given"], resolution), fps=30)
            print(f"wrote {path}")


PATHS = {
    "demos": "another layout's demonstration of the task, the one farthest from what the policy did on its own",
    "own": "the scripted expert's path on the same layout (steered, the task should still succeed)",
    "free": "random waypoints in the workspace at random heights (moves down and up), from where the hand starts",
    "plane": "random waypoints in the workspace at the hand's starting height (as the random-path training episodes)",
}


def given_paths(a, policy, tasks, free, own_path, used) -> dict:
    """(task, seed) -> (image path in pixels, world path in metres) to steer each held-out layout along."""
    from reasonact.envs import project
    from reasonact.steering import distance_to_path

    if a.paths in ("free", "plane"):
        import zlib

        from reasonact.envs.paths import PathExpert

        out = {}
        for e in free:
            start = np.asarray(e.ee_path[0], np.float64)
            way = PathExpert.random([e.seed, zlib.crc32(e.task.encode()), 7], start,
                                    planar=a.paths == "plane").waypoints
            world = np.vstack([start, way])
            out[(e.task, e.seed)] = (project(world, *e.camera).astype(np.float32), world.astype(np.float32))
        return out
    if a.paths == "own":
        return expert_paths(policy, [(e.task, e.seed) for e in free], a.workers)
    demos = {}
    if a.donors == "heldout":  # the held-out layouts after the evaluated ones
        from reasonact.evaluation import held_out_seeds

        layouts = [(t, s) for t in tasks
                   for s in held_out_seeds(a.episodes + a.donor_layouts, used.get(t, set()))[a.episodes:]]
        for (t, _), path in expert_paths(policy, layouts, a.workers).items():
            demos.setdefault(t, []).append(path)
    else:
        from reasonact.data import load_dataset

        ds = load_dataset(a.data or policy.spec.data.path)
        for i, ep in enumerate(ds.episodes):
            if ep["task"] in tasks and ep["expert"] == "task":
                frames = np.array(ds.episode_frames(i))
                world = ds.ee_pos[frames]
                demos.setdefault(ep["task"], []).append(
                    (project(world, ds.intrinsics[frames[0]], ds.extrinsics[frames[0]]).astype(np.float32),
                     world.astype(np.float32)))
    return {(e.task, e.seed): max(demos[e.task], key=lambda d, p=own_path(e): distance_to_path(p, d[0]).mean())
            for e in free}


def _expert_path(job):
    from reasonact.data.collect import run_expert_episode
    from reasonact.envs import project

    task, seed, resolution, camera, state_mode = job
    r = run_expert_episode(task, seed, resolution, camera, state_mode)
    if not r["success"]:
        return None
    from reasonact.data.format import camera_columns

    c = r["columns"]
    world = c["observation.ee_pos"]
    _, intrinsics, extrinsics = camera_columns(camera.split(",")[0])
    K, E = c[intrinsics][0].reshape(3, 3), c[extrinsics][0].reshape(4, 4)
    return project(world, K, E).astype(np.float32), world.astype(np.float32)


def expert_paths(policy, layouts, workers=None) -> dict:
    """The scripted expert's path on each layout (those it fails are left out), one simulator per process."""
    import multiprocessing as mp
    import os

    info = policy.info
    jobs = [(t, s, info.resolution, info.camera, info.state_mode) for t, s in layouts]
    with mp.get_context("spawn").Pool(max(1, min(workers or os.cpu_count() or 1, len(jobs)))) as pool:
        paths = pool.map(_expert_path, jobs)
    return {layout: p for layout, p in zip(layouts, paths) if p is not None}


def open_loop(a) -> None:
    from reasonact.data import load_dataset
    from reasonact.envs import project
    from reasonact.policy import load_policy

    policy = load_policy(a.checkpoint)
    ds = load_dataset(a.data or policy.spec.data.path, trace_span=policy.tok.trace.span)  # the traces it was trained on
    rng = np.random.default_rng(0)
    step_m = 0.01  # Meta-World: an action of 1 moves the end effector 1 cm
    H = policy.horizon
    cos: dict[tuple[str, str], list[float]] = {}

    def add(key, motion, direction):
        if np.linalg.norm(motion) > 1e-3 and np.linalg.norm(direction) > 1e-3:
            cos.setdefault(key, []).append(float(motion @ direction / np.linalg.norm(motion) / np.linalg.norm(direction)))

    def towards(o, world):  # image-plane displacement from the gripper now to a world point
        K, E = o["camera_intrinsics"], o["camera_extrinsics"]
        return project(world, K, E) - project(o["ee_pos"], K, E)

    def predicted(o, trace):  # where the predicted chunk takes the gripper, in the image
        return towards(o, o["ee_pos"] + policy.predict(o, trace=trace).actions[:, :3].sum(0) * step_m)

    def demonstrated(i):  # where the demonstration was H steps on, in the image
        return towards(ds[int(i)], ds.ee_pos[min(i + H, ds.episode_end[i] - 1)])

    frames = np.nonzero(~ds.path_frames)[0]  # the task's demonstrations, not random paths
    for i in rng.choice(frames, min(a.open_loop, len(frames)), replace=False):
        o = ds[int(i)]
        here = project(o["ee_pos"], o["camera_intrinsics"], o["camera_extrinsics"])
        ang = rng.uniform(0, 2 * np.pi)
        want = 12 * np.array([np.cos(ang), np.sin(ang)])
        recorded = o["trace"][1] - o["trace"][0]  # where the demonstration's own trace heads
        own = predicted(o, None)
        add(("policy given the random trace", "random trace"), predicted(o, np.linspace(here, here + want, 5)), want)
        add(("policy, no trace", "random trace"), own, want)
        add(("policy, no trace", "recorded trace"), own, recorded)
        add(("demonstration", "recorded trace"), demonstrated(i), recorded)
    # Random-path frames (collect --expert path), if any: there the trace alone says where to go.
    paths = np.nonzero(ds.path_frames)[0]
    against = "recorded trace, random-path frames"
    for i in rng.choice(paths, min(a.open_loop, len(paths)), replace=False):
        o = ds[int(i)]
        recorded = o["trace"][1] - o["trace"][0]
        add(("policy given the recorded trace", against), predicted(o, o["trace"]), recorded)
        add(("policy, no trace", against), predicted(o, None), recorded)
        add(("demonstration", against), demonstrated(i), recorded)
    rows = [{"motion": m, "against": d, "frames": len(v), "mean_cosine": float(np.mean(v))} for (m, d), v in cos.items()]
    rows += action_errors(a, policy, ds, rng)
    report("steering_open_loop", rows, ["motion", "against", "frames", "mean_cosine", "mean_action_error"],
           extra={"checkpoint": a.checkpoint, "note": f"image-plane motion over {H} steps; recorded trace: "
                  "the first segment of the frame's recorded trace"}, out=a.out)


def action_errors(a, policy, ds, rng) -> list[dict]:
    """The chunk predicted with the frame's recorded trace given (with its depth, for a policy that reads it)
    against the demonstration's own next actions: the mean absolute error per position coordinate (an
    action of 1 moves the hand 1 cm), for a few numbers of diffusion rounds."""
    H = policy.horizon
    rounds = sorted({1, 4, policy.info.default_diffusion_steps}) if policy.decoder == "diffusion" else [None]
    whole = np.arange(len(ds)) + H <= ds.episode_end  # a full chunk of the demonstration is left
    rows = []
    for kind, frames in (("random-path frames", ds.path_frames), ("task demonstrations' frames", ~ds.path_frames)):
        pool = np.nonzero(frames & whole)[0]
        chosen = rng.choice(pool, min(a.open_loop, len(pool)), replace=False)
        for T in rounds:
            err = []
            for batch in np.array_split(chosen, max(1, len(chosen) // 16)):
                obs = [ds[int(i)] for i in batch]
                traces = [np.concatenate([o["trace"], o["trace_depth"][:, None]], -1) if policy.info.trace_depth
                          else o["trace"] for o in obs]
                for i, p in zip(batch, policy.predict_batch(obs, traces=traces, diffusion_steps=T)):
                    err.append(np.abs(p.actions[:, :3] - ds.actions[i:i + H, :3]).mean())
            rows.append({"motion": "policy given the recorded trace" + ("" if T is None else f", T = {T}"),
                         "against": f"demonstrated actions, {kind}", "frames": len(err),
                         "mean_action_error": float(np.mean(err))})
    return rows


if __name__ == "__main__":
    main()
