"""How well does a policy reproduce demonstrations? The first action of the chunk it decodes on random frames
of a dataset (its training data, or demonstrations on other layouts), against the demonstration's action, for
several diffusion rounds T (no simulator). --first-frames takes only episodes' first frames, where the hand is
at its start and only the image says where the object is. --instruction decodes every frame with the given
instruction instead of its own (another task's: does the policy read the instruction?).

    python benchmarks/offline_actions.py --checkpoint runs/zwp-act --data data/mt10-zw --tasks push-v3,drawer-open-v3
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402


def main() -> None:
    from reasonact import load_policy
    from reasonact.data import load_dataset

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True, help="a dataset of the run's tasks and cameras")
    p.add_argument("--tasks", default="push-v3,pick-place-v3,drawer-open-v3")
    p.add_argument("--frames", type=int, default=96, help="random training frames per task")
    p.add_argument("--steps", default="1,4,12", help="diffusion rounds T to compare")
    p.add_argument("--first-frames", action="store_true", help="only episodes' first frames (up to --frames)")
    p.add_argument("--instruction", default=None, help="decode with this instruction instead of each frame's own")
    p.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/offline_actions.json)")
    a = p.parse_args()
    policy, ds = load_policy(a.checkpoint), load_dataset(a.data)
    rng = np.random.default_rng(0)
    rows = []
    for task in a.tasks.split(","):
        index = {t["task"]: i for i, t in enumerate(ds.tasks)}
        if task not in index:
            sys.exit(f"error: {a.data} has no {task!r} episodes")
        pool = np.nonzero((ds.task_index == index[task]) & ((ds.frame_index == 0) | (not a.first_frames)))[0]
        frames = rng.choice(pool, min(a.frames, len(pool)), replace=False)
        items = [ds[int(r)] for r in frames]
        if a.instruction is not None:
            items = [{**item, "instruction": a.instruction} for item in items]
        for T in (int(s) for s in a.steps.split(",")):
            preds = [q for k in range(0, len(items), 32) for q in policy.predict_batch(items[k:k + 32], diffusion_steps=T)]
            decoded = np.stack([q.actions[0] for q in preds])
            err = np.abs(decoded - ds.actions[frames]).mean(0)
            rows.append({"task": task, "T": T, "frames": len(frames), **{f"mae_{d}": float(e) for d, e in zip("xyzg", err)},
                         "mean_z": float(decoded[:, 2].mean()), "demo_mean_z": float(ds.actions[frames][:, 2].mean())})
    report("offline_actions", rows, ["task", "T", "frames", "mae_x", "mae_y", "mae_z", "mae_g", "mean_z", "demo_mean_z"],
           {"checkpoint": a.checkpoint, "data": a.data, "first_frames": a.first_frames, "instruction": a.instruction}, a.out)


if __name__ == "__main__":
    main()
