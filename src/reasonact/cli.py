"""The ``reasonact`` command line: a thin layer over the Python functions of the same names."""

from __future__ import annotations

import argparse
import sys


def _add_collect(sub) -> None:
    p = sub.add_parser("collect", help="collect scripted-expert demonstrations from Meta-World into a dataset")
    p.add_argument("--suite", default="mt10", help="mt10, mt50, or a single task such as reach-v3 (default: mt10)")
    p.add_argument("--tasks", default=None, help="comma-separated subset of the suite's tasks")
    p.add_argument("--episodes-per-task", type=int, default=50)
    p.add_argument("--out", required=True, help="dataset directory (re-run to resume or extend)")
    p.add_argument("--resolution", type=int, default=128, help="square image size in pixels (default: 128)")
    p.add_argument("--camera", default="corner2")
    p.add_argument("--state", dest="state_mode", default="goal", choices=["goal", "full"],
                   help="goal: end effector, gripper and goal position (default); full: Meta-World's 39-d state")
    p.add_argument("--workers", type=int, default=None, help="parallel simulator processes (default: CPU count)")
    p.add_argument("--seed", type=int, default=0, help="first layout seed; each task tries seeds upwards from it")

    def run(a):
        from .data.collect import collect

        print(collect(a.out, suite=a.suite, tasks=a.tasks, episodes_per_task=a.episodes_per_task,
                      resolution=a.resolution, camera=a.camera, state_mode=a.state_mode,
                      workers=a.workers, seed=a.seed))

    p.set_defaults(func=run)


def _add_show(sub) -> None:
    p = sub.add_parser("show", help="write a video (.mp4/.gif) or contact sheet (.png) of an episode with its trace")
    p.add_argument("--data", required=True)
    p.add_argument("--episode", type=int, default=0)
    p.add_argument("--out", required=True, help="output file: .png, .mp4 or .gif")
    p.add_argument("--scale", type=int, default=0, help="upscaling factor (default: to about 256 px)")

    def run(a):
        from .data.show import show

        print(show(a.data, a.episode, a.out, scale=a.scale))

    p.set_defaults(func=run)


def _add_quickstart(sub) -> None:
    p = sub.add_parser("quickstart", help="the main job on a small default (what `make demo` runs)")
    p.add_argument("--out", default="demo")
    p.add_argument("--workers", type=int, default=None)

    def run(a):
        from .quickstart import quickstart

        quickstart(a.out, workers=a.workers)

    p.set_defaults(func=run)


COMMANDS = [_add_collect, _add_show, _add_quickstart]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="reasonact", description="Action Reasoning Models: collect, train, evaluate, serve.")
    parser.add_argument("--version", action="version", version=f"reasonact {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .data.format import DatasetError

    try:
        args.func(args)
    except (ValueError, FileNotFoundError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished work is saved (re-run the same command to resume)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
