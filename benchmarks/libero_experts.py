"""Success of reasonact's scripted LIBERO experts on the suites' standard init states (no rendering).

    python benchmarks/libero_experts.py                          # all four suites, 50 init states per task
    python benchmarks/libero_experts.py --suites libero_spatial --inits 10 --workers 2

Writes benchmarks/results/libero_experts.json: per task the successes, the mean episode length of the successes,
and the init states that failed.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing as mp
import time

from common import report

from reasonact.envs.base import EVAL_SEED_BASE


def run_task(suite: str, index: int, inits: list[int]) -> dict:
    from reasonact.envs.libero import LiberoEnv, suite_tasks

    task = suite_tasks(suite)[index]
    env = LiberoEnv(task, render=False)
    ok, lengths, failed, t0 = 0, [], [], time.time()
    for k in inits:
        success = env.play_expert(EVAL_SEED_BASE + k)
        ok += success
        (lengths.append(env.elapsed_steps) if success else failed.append(k))
    env.close()
    return {"suite": suite, "index": index, "task": task, "success": ok, "episodes": len(inits),
            "rate": ok / len(inits), "mean_steps": round(sum(lengths) / max(len(lengths), 1), 1),
            "max_steps": env.max_steps, "failed_inits": failed, "seconds": round(time.time() - t0, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suites", default="libero_spatial,libero_object,libero_goal,libero_10")
    p.add_argument("--tasks", default="", help="task indices, e.g. 0,3 (default: all ten)")
    p.add_argument("--inits", type=int, default=50, help="standard init states per task (the first N)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    suites = [s.strip() for s in args.suites.split(",") if s.strip()]
    indices = [int(i) for i in args.tasks.split(",")] if args.tasks else list(range(10))
    jobs = [(s, i, list(range(args.inits))) for s in suites for i in indices]
    rows = []
    with cf.ProcessPoolExecutor(args.workers, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(run_task, *j) for j in jobs]
        for f in cf.as_completed(futures):
            r = f.result()
            print(f"{r['suite']} {r['index']}: {r['success']}/{r['episodes']}  ({r['task']})", flush=True)
            rows.append(r)
    rows.sort(key=lambda r: (suites.index(r["suite"]), r["index"]))
    summary = {s: round(sum(r["rate"] for r in rows if r["suite"] == s) / max(1, sum(r["suite"] == s for r in rows)), 3)
               for s in suites}
    report("libero_experts", [{k: r[k] for k in ("suite", "index", "success", "episodes", "mean_steps", "max_steps",
                                                 "failed_inits", "task")} | {"failed_inits": str(r["failed_inits"])}
                              for r in rows],
           ["suite", "index", "success", "episodes", "mean_steps", "max_steps", "failed_inits", "task"],
           extra={"suites": summary, "inits_per_task": args.inits, "detail": rows}, out=args.out)


if __name__ == "__main__":
    main()
