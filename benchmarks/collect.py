"""Collection throughput: simulator frames per second (physics + RGB + depth + PNG encoding + writing)
for 1 and N worker processes at 128x128.

    python benchmarks/collect.py [--workers 1,2] [--episodes 4] [--resolution 128]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workers", default=f"1,{os.cpu_count()}")
    ap.add_argument("--tasks", default="reach-v3,push-v3,drawer-open-v3,button-press-topdown-v3")
    ap.add_argument("--episodes", type=int, default=3, help="episodes per task")
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()

    from reasonact.data.collect import collect
    from reasonact.envs import make_env

    # Simulator alone (one process): step + RGB + depth render, no encoding.
    env = make_env("push-v3", resolution=a.resolution)
    env.reset(0)
    n, t0 = 0, time.perf_counter()
    while n < 300:
        _, _, done = env.step(env.expert_action())
        n += 1
        if done:
            env.reset(n)
    sim_fps = n / (time.perf_counter() - t0)
    env.close()

    rows = [{"setup": "simulator only, 1 process", "workers": 1, "frames": n, "seconds": n / sim_fps, "frames_per_s": sim_fps}]
    for w in [int(x) for x in a.workers.split(",")]:
        with tempfile.TemporaryDirectory() as d:
            s = collect(Path(d) / "ds", suite="mt10", tasks=a.tasks, episodes_per_task=a.episodes,
                        resolution=a.resolution, workers=w, progress=False)
            rows.append({"setup": "reasonact collect", "workers": w, "frames": s.frames, "seconds": s.seconds,
                         "frames_per_s": s.frames / s.seconds})
    report("collect", rows, ["setup", "workers", "frames", "seconds", "frames_per_s"],
           extra={"resolution": a.resolution, "tasks": a.tasks.split(","), "episodes_per_task": a.episodes}, out=a.out)


if __name__ == "__main__":
    main()
