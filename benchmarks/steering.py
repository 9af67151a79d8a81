"""Steering: does the gripper follow a drawn trace?

For held-out layouts of each task, the policy is given a path taken from another layout's
demonstration (the expert's end-effector path in that episode, projected into the image) and at every
chunk follows the part still ahead of the gripper. We measure how far the executed end-effector path
(projected) stays from that path, in pixels, and compare with the same layouts run unsteered: if
steering works, the steered gripper stays much closer to the given path than the policy's own behaviour.

    python benchmarks/steering.py --checkpoint RUN --data DIR [--tasks reach-v3,...] [--episodes 10]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", default=None, help="dataset with the donor demonstrations (default: the run's)")
    ap.add_argument("--tasks", default=None, help="default: the run's tasks")
    ap.add_argument("--episodes", type=int, default=10, help="held-out layouts per task")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()

    from reasonact.data import load_dataset
    from reasonact.envs import project
    from reasonact.evaluation import Episode, held_out_seeds, rollout
    from reasonact.policy import load_policy
    from reasonact.steering import distance_to_path, remaining_path

    policy = load_policy(a.checkpoint)
    if "trace" not in policy.blocks:
        raise SystemExit(f"{a.checkpoint} has no trace block (reasoning {policy.config.sequence.mode!r}); "
                         "steering needs --reasoning trace or depth+trace")
    ds = load_dataset(a.data or policy.meta["data"]["path"])
    tasks = a.tasks.split(",") if a.tasks else policy.tasks
    used = {t: set(v) for t, v in policy.meta["data"]["seeds"].items()}

    def donor_path(task: str, k: int) -> np.ndarray:
        eps = [i for i, e in enumerate(ds.episodes) if e["task"] == task]
        frames = np.array(ds.episode_frames(eps[k % len(eps)]))
        first = frames[0]
        return project(ds.ee_pos[frames], ds.intrinsics[first], ds.extrinsics[first]).astype(np.float32)

    def make_episodes():
        out = []
        for t in tasks:
            for k, s in enumerate(held_out_seeds(a.episodes, used.get(t, set()))):
                ep = Episode(t, s)
                ep.info["donor"] = donor_path(t, k)
                out.append(ep)
        return out

    def steer(ep, obs):
        here = project(obs["ee_pos"], obs["camera_intrinsics"], obs["camera_extrinsics"])
        return remaining_path(ep.info["donor"], here)

    kw = dict(steps=policy.default_steps, execute=policy.horizon, workers=a.workers)
    steered = rollout(policy, make_episodes(), steer=steer, **kw).episodes
    free = rollout(policy, make_episodes(), **kw).episodes

    def deviation(ep):
        K, E = ep.camera
        px = project(np.asarray(ep.ee_path), K, E)
        d = distance_to_path(px, ep.info["donor"])
        end = float(np.linalg.norm(px[-1] - ep.info["donor"][-1]))
        return float(d.mean()), float(d.max()), end

    rows = []
    key = lambda e: (e.task, e.seed)  # noqa: E731
    free_by = {key(e): e for e in free}
    for t in tasks:
        s = [deviation(e) for e in steered if e.task == t]
        f = [deviation(free_by[key(e)]) for e in steered if e.task == t]
        rows.append({
            "task": t, "episodes": len(s),
            "steered_mean_px": float(np.mean([x[0] for x in s])), "steered_max_px": float(np.mean([x[1] for x in s])),
            "steered_end_px": float(np.mean([x[2] for x in s])),
            "own_mean_px": float(np.mean([x[0] for x in f])), "own_max_px": float(np.mean([x[1] for x in f])),
            "own_end_px": float(np.mean([x[2] for x in f])),
        })
    report("steering", rows, ["task", "episodes", "steered_mean_px", "steered_max_px", "steered_end_px",
                              "own_mean_px", "own_max_px", "own_end_px"],
           extra={"checkpoint": a.checkpoint, "resolution": policy.resolution,
                  "note": "distances in image pixels from the executed end-effector path to the given path; "
                          "max_px is the per-episode maximum averaged over episodes; end_px is the final "
                          "gripper position's distance to the path's end"}, out=a.out)


if __name__ == "__main__":
    main()
