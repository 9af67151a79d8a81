"""Collection throughput: simulator frames per second (physics + RGB + depth + PNG encoding + writing)
for 1 and N worker processes at 128x128, on Meta-World or a LIBERO suite.

    python benchmarks/collect.py [--workers 1,2] [--episodes 4] [--resolution 128]
    python benchmarks/collect.py --suite libero_spatial --tasks 0,1 --episodes 2   # writes collect_libero_spatial.json

LIBERO is measured with its standard rendering and with ``--fast-render`` (no multisampling, simplified meshes for
the fixed cameras), and without rendering.
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
    ap.add_argument("--suite", default="mt10", help="mt10, or a LIBERO suite such as libero_spatial")
    ap.add_argument("--tasks", default=None,
                    help="default: reach, push, drawer-open, button-press-topdown (Meta-World); 0,1 (LIBERO)")
    ap.add_argument("--episodes", type=int, default=3, help="episodes per task")
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()

    from reasonact.data.collect import collect
    from reasonact.envs import make_env, resolve_tasks, simulator_name

    libero = simulator_name(a.suite) == "libero"
    a.tasks = a.tasks or ("0,1" if libero else "reach-v3,push-v3,drawer-open-v3,button-press-topdown-v3")
    tasks = resolve_tasks(a.suite, a.tasks)
    rows = []
    # Simulator alone (one process): step + RGB + depth render of the default views, no encoding; for LIBERO also
    # with --fast-render, and physics and the expert without any rendering.
    modes = {"": {}, ", fast render": {"fast_render": True}, ", no rendering": {"render": False}}
    for mode, kwargs in modes.items() if libero else [("", {})]:
        env = make_env("push-v3" if not libero else tasks[0], resolution=a.resolution, **kwargs)
        env.reset(0)
        n, t0 = 0, time.perf_counter()
        while n < 300:
            _, _, done = env.step(env.expert_action())
            n += 1
            if done:
                env.reset(n)
        sim_fps = n / (time.perf_counter() - t0)
        env.close()
        rows.append({"setup": "simulator only, 1 process" + mode, "workers": 1, "frames": n, "seconds": n / sim_fps,
                     "frames_per_s": sim_fps})
    for fast in (False, True) if libero else (False,):
        for w in [int(x) for x in a.workers.split(",")]:
            with tempfile.TemporaryDirectory() as d:
                s = collect(Path(d) / "ds", suite=a.suite, tasks=tasks, episodes_per_task=a.episodes,
                            resolution=a.resolution, workers=w, progress=False, fast_render=fast)
                rows.append({"setup": "reasonact collect" + (" --fast-render" if fast else ""), "workers": w,
                             "frames": s.frames, "seconds": s.seconds, "frames_per_s": s.frames / s.seconds})
    report("collect" if not libero else f"collect_{a.suite}", rows, ["setup", "workers", "frames", "seconds", "frames_per_s"],
           extra={"resolution": a.resolution, "suite": a.suite, "tasks": tasks, "episodes_per_task": a.episodes}, out=a.out)


if __name__ == "__main__":
    main()
