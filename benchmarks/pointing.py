"""Does a policy find the task's object in layouts it has not seen? Its pointing (the points block it
writes, or the auxiliary pointing head) against the simulator's projected object and goal, at the first
frame of held-out layouts and of training layouts (the seeds recorded in the run). With --rollout-steps, also
while the policy acts on the held-out layouts: the object error over its later chunks, and how far (xy, cm)
the hand is from the object when the policy first closes the gripper. With --given-points (a model that
writes a points block), also the success on the held-out layouts when the simulator's true object and goal
points are written in place of the model's own at every chunk: what perfect pointing would be worth.

    python benchmarks/pointing.py --checkpoint runs/zwp-act --tasks push-v3,pick-place-v3,peg-insert-side-v3
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402


def pointed(policy, obs: dict, pred=None) -> np.ndarray:
    """(K, 2) pixels of the first view: the written points block, else the pointing head's answer."""
    if "points" in policy.info.blocks:
        return (pred or policy.predict(obs)).points
    from reasonact.model.layout import prefix_span

    m, x = policy.model, policy.inputs([obs])
    with torch.inference_mode():
        px, valid = m.prefix(x.images, x.instr, x.state)
        h = m.run(px, prefix_span(px.shape[1], px.device), valid)
        share = m.point(h[:, -1])[0].numpy()  # the state token is the prefix's last
    return share * np.array(obs["rgb"].shape[1::-1], np.float64)


def rollout(policy, env, obs: dict, steps: int) -> tuple[float, float]:
    """(mean object error in px over the chunks after the first, hand-object xy cm at the first close)."""
    from reasonact.envs.camera import project

    errs, close_cm, t = [], float("nan"), 0
    while t < steps:
        pred = policy.predict(obs)
        if t > 0:
            true = project(obs["privileged"]["points"], obs["camera_intrinsics"], obs["camera_extrinsics"])
            errs.append(float(np.linalg.norm(pointed(policy, obs, pred)[0] - true[0])))
        for a in pred.actions:
            pv = obs["privileged"]
            if np.isnan(close_cm) and a[-1] > 0.3:  # the experts grab with 0.6 or more
                close_cm = float(np.linalg.norm(pv["hand_pos"][:2] - pv["obj_pos"][:2]) * 100)
            obs, success, done = env.step(a)
            t += 1
            if success or done:
                return float(np.mean(errs)) if errs else float("nan"), close_cm
    return float(np.mean(errs)) if errs else float("nan"), close_cm


def succeeds_with_true_points(policy, env, obs: dict) -> bool:
    """One episode in which every chunk is decoded after the simulator's projected points, given as the points
    block (the way a steering trace is given)."""
    from reasonact.decoding import generate
    from reasonact.envs.camera import project

    tok, seq, off = policy.tok, policy.config.sequence, policy.tok.vocab.offset("coord")
    while True:
        true = project(obs["privileged"]["points"], obs["camera_intrinsics"], obs["camera_extrinsics"])
        x = policy.inputs([obs])
        given = {"points": torch.from_numpy(tok.trace.encode_points(true[None]) + off)}
        with torch.inference_mode():
            res = generate(policy.model, x.images, x.instr, x.state, diffusion_steps=policy.info.default_diffusion_steps,
                           given=given, generator=torch.Generator().manual_seed(0))
        ids = (res.tokens["act"].numpy() - tok.vocab.offset("action")).reshape(seq.horizon, seq.action_dim)
        for a in tok.action.decode(ids):
            obs, success, done = env.step(a)
            if success or done:
                return success


def run_task(policy, task: str, seeds: dict[str, list[int]], rollout_steps: int = 0, given_points: int = 0) -> list[dict]:
    from reasonact.envs import make_env
    from reasonact.envs.camera import project

    info = policy.info
    env = make_env(task, resolution=info.resolution, camera=info.camera, state_mode=info.state_mode)
    rows = []
    try:
        for which, group in seeds.items():
            err, later = [], []
            for seed in group:
                obs = env.reset(seed)
                true = project(obs["privileged"]["points"], obs["camera_intrinsics"], obs["camera_extrinsics"])
                err.append(np.linalg.norm(pointed(policy, obs) - true, axis=1))
                if rollout_steps and which == "held-out":
                    later.append(rollout(policy, env, obs, rollout_steps))
            e = np.array(err)
            row = {"task": task, "layouts": which, "n": len(group), "object_px": float(e[:, 0].mean()),
                   "goal_px": float(e[:, 1].mean()), "object_px_max": float(e[:, 0].max())}
            if later:
                row["object_px_acting"] = float(np.nanmean([x[0] for x in later]))
                row["close_xy_cm"] = float(np.nanmean([x[1] for x in later]))
            if given_points and which == "held-out":
                row["success_true_points"] = float(np.mean([succeeds_with_true_points(policy, env, env.reset(s))
                                                            for s in group[:given_points]]))
            rows.append(row)
    finally:
        env.close()
    return rows


def main() -> None:
    from reasonact import load_policy
    from reasonact.evaluation.rollout import held_out_seeds

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--tasks", default="push-v3,pick-place-v3,peg-insert-side-v3")
    p.add_argument("--episodes", type=int, default=10, help="layouts of each kind per task")
    p.add_argument("--rollout-steps", type=int, default=0, help="also act this many steps on each held-out layout")
    p.add_argument("--given-points", type=int, default=0,
                   help="also act on this many held-out layouts with the true points given (points-block models)")
    p.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/pointing.json)")
    a = p.parse_args()
    policy = load_policy(a.checkpoint)
    if "points" not in policy.info.blocks and policy.model.points_head is None:
        sys.exit(f"error: {a.checkpoint} neither writes a points block nor has a pointing head")
    if a.given_points and "points" not in policy.info.blocks:
        sys.exit(f"error: --given-points needs a model that writes a points block; {a.checkpoint} does not")
    rows = []
    for t in a.tasks.split(","):
        train = list(policy.info.training_seeds.get(t, []))
        rows += run_task(policy, t, {"held-out": held_out_seeds(a.episodes, set(train)), "training": train[: a.episodes]},
                         a.rollout_steps, a.given_points)
    cols = ["task", "layouts", "n", "object_px", "goal_px", "object_px_max"]
    cols += (["object_px_acting", "close_xy_cm"] if a.rollout_steps else []) + (["success_true_points"] if a.given_points else [])
    report("pointing", rows, cols,
           {"checkpoint": a.checkpoint, "resolution": policy.info.resolution}, a.out)


if __name__ == "__main__":
    main()
