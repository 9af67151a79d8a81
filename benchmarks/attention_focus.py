"""Does the policy look at what it must act on? For frames spread over each task's episodes of a dataset, the
action tokens' fused attention over the first view's patches (`policy.attention`, the maps `reasonact
attention` draws) and the share of it on the patch under the task's object and under its goal (the dataset's
recorded points), against the 1/g^2 a uniform map puts on any patch. The quantitative form of ReFineVLA's
attention figures: run it on a model before and after reasoning-aware fine-tuning.

    python benchmarks/attention_focus.py --checkpoint checkpoints/mt10 runs/refine --data data/mt10-zwj-h
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402


def task_frames(ds, task: int, n: int) -> np.ndarray:
    """n frame indices of a task, evenly spread over its frames that record points."""
    rows = np.nonzero((ds.task_index == task) & ~ds.path_frames)[0]
    return rows[np.unique(np.linspace(0, len(rows) - 1, min(n, len(rows))).round().astype(int))]


def focus(policy, ds, rows: np.ndarray) -> np.ndarray:
    """(len(rows), K) attention share on the patch under each recorded point (NaN where a point is off the image)."""
    from reasonact.viz.attention import share_at

    out = []
    for i in rows:
        maps = policy.attention(ds[int(i)])
        out.append(share_at(maps.fused, ds.points[i], (ds.resolution, ds.resolution)))
    return np.stack(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", nargs="+", required=True, help="one or more runs or checkpoints to compare")
    ap.add_argument("--data", required=True, help="a dataset that records object points (observation.points)")
    ap.add_argument("--frames-per-task", type=int, default=20)
    ap.add_argument("--tasks", default=None, help="comma-separated task names (default: all of the dataset's)")
    ap.add_argument("--name", default="attention_focus", help="benchmarks/results/<name>.json")
    args = ap.parse_args()

    from reasonact.data import load_dataset
    from reasonact.policy import load_policy

    ds = load_dataset(args.data)
    if ds.points is None:
        raise SystemExit(f"{args.data} records no object points (observation.points); collect it again")
    names = args.tasks.split(",") if args.tasks else list(ds.task_names)
    unknown = sorted(set(names) - set(ds.task_names))
    if unknown:
        raise SystemExit(f"{args.data} has no task {', '.join(unknown)}; it has {', '.join(ds.task_names)}")
    rows = []
    for ckpt in args.checkpoint:
        policy = load_policy(ckpt, "cpu")
        g2 = policy.model.cfg.model.n_patches
        shares = []
        for name in names:
            s = focus(policy, ds, task_frames(ds, list(ds.task_names).index(name), args.frames_per_task))
            shares.append(s)
            rows.append(dict(checkpoint=ckpt, task=name, frames=len(s), object_share=float(np.nanmean(s[:, 0])),
                             goal_share=float(np.nanmean(s[:, 1])) if s.shape[1] > 1 else None,
                             object_x_uniform=float(np.nanmean(s[:, 0]) * g2)))
        s = np.concatenate(shares)
        rows.append(dict(checkpoint=ckpt, task="all", frames=len(s), object_share=float(np.nanmean(s[:, 0])),
                         goal_share=float(np.nanmean(s[:, 1])) if s.shape[1] > 1 else None,
                         object_x_uniform=float(np.nanmean(s[:, 0]) * g2), uniform=1 / g2))
    report(args.name, rows, ["checkpoint", "task", "frames", "object_share", "goal_share", "object_x_uniform"],
           extra=dict(data=args.data, frames_per_task=args.frames_per_task))


if __name__ == "__main__":
    main()
