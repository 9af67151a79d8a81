"""How much of the next chunk does a trace determine? A small network reads the trace, nothing else.

On a dataset's random-path frames (``collect --expert path``: the trace alone says where to go), a
two-layer MLP maps a trace's points (world metres, relative to the gripper, unquantised) to the expert's
next H actions, trained on four episodes in five and scored on the fifth: the mean absolute error per
position coordinate (an action of 1 moves the hand 1 cm) and the distance between where the predicted and
the demonstrated chunk take the hand. The traces compared: the default (5 points evenly in time to the
episode's end), the next N metres of the path evenly in metres (``train --trace-span``), the next K
steps evenly in time, and the hand's own next H + 1 positions (where the chunk took it, not where the
path goes next).

    python benchmarks/trace_information.py --data data/mt10-zwj-h-paths3d [--spans 0.1,0.2,0.3] [--steps-ahead 16]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402


def fit_and_score(x: np.ndarray, y: np.ndarray, test: np.ndarray, horizon: int, steps: int, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    X, Y = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    train, held = torch.from_numpy(~test), torch.from_numpy(test)
    net = torch.nn.Sequential(torch.nn.Linear(X.shape[1], 256), torch.nn.GELU(), torch.nn.Linear(256, 256),
                              torch.nn.GELU(), torch.nn.Linear(256, Y.shape[1]))
    opt = torch.optim.AdamW(net.parameters(), 2e-3)
    Xt, Yt = X[train], Y[train]
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        b = torch.randint(0, len(Xt), (256,), generator=g)
        loss = (net(Xt[b]) - Yt[b]).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        p = net(X[held]).clamp(-1, 1).reshape(-1, horizon, 3)
        t = Y[held].reshape(-1, horizon, 3)
    return {"mean_action_error": float((p - t).abs().mean()),
            "chunk_end_cm": float((p.cumsum(1) - t.cumsum(1)).norm(dim=-1)[:, -1].mean()),
            "train_l1": float(loss)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="a dataset with random-path episodes (collect --expert path)")
    ap.add_argument("--spans", default="0.1,0.2,0.3", help="trace spans to compare, metres")
    ap.add_argument("--steps-ahead", type=int, default=16, help="a trace through this many steps, evenly in time")
    ap.add_argument("--horizon", type=int, default=8, help="actions per chunk")
    ap.add_argument("--points", type=int, default=5, help="points per trace")
    ap.add_argument("--steps", type=int, default=3000, help="training steps of each MLP")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    from reasonact.data import load_dataset
    from reasonact.data.dataset import paths_ahead, trace_frame_indices

    ds = load_dataset(a.data)
    H, P = a.horizon, a.points
    frames = np.nonzero(ds.path_frames & (np.arange(len(ds)) + H <= ds.episode_end))[0]
    if not len(frames):
        raise SystemExit(f"{a.data} has no random-path frames; collect some with --expert path")
    test = ds.episode_index[frames] % 5 == 0
    y = np.stack([ds.actions[i:i + H, :3] for i in frames]).reshape(len(frames), -1)

    def by_time(last):
        return ds.ee_pos[trace_frame_indices(frames, last, P)]

    def by_span(span):
        return paths_ahead(ds.ee_pos, ds.episode_start, ds.episode_end, frames, P, span)

    variants = {"evenly in time to the episode's end (default)": by_time(ds.episode_end[frames] - 1)}
    variants[f"evenly in time, the next {a.steps_ahead} steps"] = by_time(np.minimum(ds.episode_end[frames] - 1,
                                                                                     frames + a.steps_ahead))
    for span in (float(s) for s in a.spans.split(",")):
        variants[f"evenly in metres, the next {100 * span:g} cm (--trace-span {span:g})"] = by_span(span)
    ahead = np.minimum(frames[:, None] + np.arange(H + 1), ds.episode_end[frames][:, None] - 1)
    variants[f"the hand's next {H + 1} positions"] = ds.ee_pos[ahead]
    rows = []
    for name, pts in variants.items():
        x = (pts[:, 1:] - ds.ee_pos[frames][:, None]).reshape(len(frames), -1) * 10  # decimetres
        rows.append({"trace": name, **fit_and_score(x, y, test, H, a.steps)})
        print(rows[-1], flush=True)
    report("trace_information", rows, ["trace", "mean_action_error", "chunk_end_cm", "train_l1"],
           extra={"data": a.data, "frames": int(len(frames)), "held_out_frames": int(test.sum()),
                  "note": "a 2-layer MLP from the trace's world points (relative to the gripper) to the next "
                          f"{H} actions, scored on held-out episodes; chunk_end_cm: distance between where "
                          "the predicted and the demonstrated chunk take the hand"}, out=a.out)


if __name__ == "__main__":
    main()
