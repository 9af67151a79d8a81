"""Does a policy succeed where it was taught? Closed-loop rollouts on the layouts its training data was
collected on (the seeds recorded in the run), with the policy's first action beside the expert's.

    python benchmarks/training_layouts.py --checkpoint checkpoints/mt10-zoom-wrist --tasks push-v3,pick-place-v3 --episodes 10
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402


def run_task(policy, task: str, seeds: list[int]) -> dict:
    from reasonact.envs import make_env

    info = policy.info
    env = make_env(task, resolution=info.resolution, camera=info.camera, state_mode=info.state_mode)
    wins, first_agree = 0, 0
    try:
        for seed in seeds:
            obs = env.reset(seed)
            expert = env.expert_action()
            pred = policy.predict(obs)
            first_agree += float(np.dot(pred.actions[0, :3], expert[:3])) > 0  # the same way in xyz
            success = done = False
            while not (success or done):
                for a in pred.actions:
                    obs, success, done = env.step(a)
                    if success or done:
                        break
                if not (success or done):
                    pred = policy.predict(obs)
            wins += success
    finally:
        env.close()
    return {"task": task, "episodes": len(seeds), "successes": wins, "success_rate": wins / len(seeds),
            "first_action_towards_expert": first_agree / len(seeds)}


def main() -> None:
    from reasonact import load_policy

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--tasks", default="push-v3,pick-place-v3")
    p.add_argument("--episodes", type=int, default=10, help="training layouts per task (the first recorded)")
    p.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/training_layouts.json)")
    a = p.parse_args()
    policy = load_policy(a.checkpoint)
    rows = [run_task(policy, t, policy.info.training_seeds[t][: a.episodes]) for t in a.tasks.split(",")]
    report("training_layouts", rows, ["task", "episodes", "successes", "success_rate", "first_action_towards_expert"],
           {"checkpoint": a.checkpoint}, a.out)


if __name__ == "__main__":
    main()
