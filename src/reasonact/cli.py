"""The ``reasonact`` command line: a thin layer over the Python functions of the same names.

The options of ``train``, ``eval`` and ``quickstart`` are generated from their config dataclasses
(``TrainConfig``, ``EvalConfig``, ``QuickstartConfig``): every field is an option, with its help and default.
"""

from __future__ import annotations

import argparse
import json
import sys
import typing
from dataclasses import MISSING, fields

WORKERS_HELP = "parallel simulator processes (default: the CPU count)"


class _Help(argparse.HelpFormatter):
    """Shows ``(default: X)`` for every option that has a default and does not say it already."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" not in text and action.default not in (None, False, argparse.SUPPRESS) and action.option_strings:
            text += " (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    """A usage error is one line: what was wrong, and where the options are listed."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (`{self.prog} --help` lists the options)\n")


def _parser(sub, name: str, help: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=help, formatter_class=_Help)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: pass a number from 1 to 65535 (0: any free port)")
    return port


def _option_type(hint):
    """argparse type for a field's annotation (``X | None`` -> X; dicts as JSON)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    base = args[0]
    if base is dict:
        return json.loads
    return base


def add_config_options(p: argparse.ArgumentParser, cls, *, defaults=None, skip=(), presets: dict | None = None) -> None:
    """One option per field of the dataclass ``cls``, grouped as its fields say. Every option defaults to
    None on the command line, so only what is given overrides the config (or preset) it lands on."""
    hints = typing.get_type_hints(cls)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in fields(cls):
        if f.name in skip or "help" not in f.metadata:
            continue
        meta = f.metadata
        group = groups.setdefault(meta["group"], p.add_argument_group(f"{meta['group']} options"))
        default = getattr(defaults, f.name) if defaults is not None else (
            f.default if f.default is not MISSING else f.default_factory())
        shown = "" if "default" in meta["help"] or default is None else f"default: {default}"
        if presets:
            other = {k: getattr(v, f.name) for k, v in presets.items() if getattr(v, f.name) != default}
            if other and f.name != "config":
                shown += "; " * bool(shown) + ", ".join(f"{k} preset: {v}" for k, v in other.items())
        text = meta["help"] + (f" ({shown})" if shown else "")
        flag = "--" + f.name.replace("_", "-")
        kind = _option_type(hints[f.name])
        if kind is bool:
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                               help=text)
        else:
            group.add_argument(flag, dest=f.name, type=kind, default=None, choices=meta.get("choices"),
                               help=text)


def _given(a, cls, skip=()) -> dict:
    return {f.name: getattr(a, f.name) for f in fields(cls) if f.name not in skip and getattr(a, f.name, None) is not None}


SUITE_HELP = ("Meta-World: mt10, mt50 or a single task such as reach-v3; LIBERO (after `make setup-libero`): "
              "libero_spatial, libero_object, libero_goal or libero_10")


def _add_collect(sub) -> None:
    from .envs.paths import EXPERTS, PATH_HEIGHTS

    p = _parser(sub, "collect", "collect scripted-expert demonstrations from Meta-World or LIBERO into a dataset")
    p.add_argument("--out", required=True, help="dataset directory (re-run the same command to resume or extend it)")
    p.add_argument("--suite", default="mt10", help=SUITE_HELP)
    p.add_argument("--tasks", default=None, help="comma-separated subset of the suite's tasks (default: all of them; "
                                                 "LIBERO tasks also by index, e.g. 0,3)")
    p.add_argument("--episodes-per-task", type=int, default=50, help="successful episodes per task")
    p.add_argument("--task-episodes", type=json.loads, default=None,
                   help='JSON map giving named tasks their own count instead, e.g. \'{"push-v3": 200}\'')
    p.add_argument("--resolution", type=int, default=128, help="square image size in pixels")
    p.add_argument("--cameras", "--camera", dest="camera", default=None,
                   help="camera view(s), comma-separated, the trace's third-person view first. Meta-World (default "
                        "corner2): e.g. zoom (corner2 moved closer) or zoom,gripperPOV (with the wrist camera); one of "
                        "corner, corner2, corner3, corner4, topview, zoom, then any of those or behindGripper, "
                        "gripperPOV. LIBERO (default agentview,robot0_eye_in_hand): agentview, frontview, birdview, "
                        "sideview, then robot0_eye_in_hand")
    p.add_argument("--state", dest="state_mode", default=None, choices=["goal", "full", "proprio"],
                   help="Meta-World: goal (default: end effector, gripper and goal position) or full (Meta-World's "
                        "39-d state); LIBERO: proprio (end effector position and rotation, gripper)")
    p.add_argument("--workers", type=int, default=None, help=WORKERS_HELP)
    p.add_argument("--seed", type=int, default=0, help="first layout seed; each task tries seeds upwards from it")
    p.add_argument("--expert", choices=EXPERTS, default="task",
                   help="task: the task's scripted expert; path: random paths through the task's scene; short: random "
                        "paths of a few centimetres, each waypoint closed to 3 mm (the last centimetres of a path); donor: the "
                        "expert's path on another layout, followed in this one. Path and donor episodes are trained "
                        "only with the trace given (--steer-prob) to teach steering")
    p.add_argument("--start-jitter", type=float, default=0.0,
                   help="start each episode's hand up to this many metres (per axis) from the task's home position, "
                        "so that the hand's position does not give away where the object is (e.g. 0.1)")
    p.add_argument("--path-hold", type=int, default=0,
                   help="with --expert path, short or donor: steps the hand stays at the path's end before the episode "
                        "ends, so that training sees what a finished path means (e.g. 20)")
    p.add_argument("--path-settle", action="store_true",
                   help="with --path-hold: keep steering the hand onto the path's end while it is held there (the "
                        "last 2 cm, within which a waypoint counts as reached, closed), instead of zero-motion actions")
    p.add_argument("--path-heights", choices=PATH_HEIGHTS, default="hand",
                   help="with --expert path or short: waypoints at the hand's starting height (a 2D trace then says where "
                        "to go), or at random heights, moves down and up (for policies trained with --trace-depth): 8-30 cm "
                        "(random) or 2-35 cm, the heights the tasks' demonstrations span (full)")
    p.add_argument("--fast-render", action="store_true",
                   help="LIBERO: render without multisampling and, for the fixed cameras, from meshes simplified to "
                        "5 mm (the wrist camera keeps the full meshes); frames twice as fast on a CPU. Recorded in the "
                        "dataset: its policies are evaluated with the same rendering")

    def run(a):
        from .data.collect import collect

        print(collect(a.out, suite=a.suite, tasks=a.tasks, episodes_per_task=a.episodes_per_task,
                      resolution=a.resolution, camera=a.camera, state_mode=a.state_mode,
                      workers=a.workers, seed=a.seed, expert=a.expert, start_jitter=a.start_jitter,
                      path_hold=a.path_hold, path_heights=a.path_heights, path_settle=a.path_settle,
                      task_episodes=a.task_episodes, fast_render=a.fast_render))

    p.set_defaults(func=run)


def _add_show(sub) -> None:
    p = _parser(sub, "show", "write a video (.mp4/.gif) or contact sheet (.png) of an episode with its trace")
    p.add_argument("--data", required=True, help="dataset directory")
    p.add_argument("--episode", type=int, default=0, help="episode number (its position in the dataset)")
    p.add_argument("--out", required=True, help="output file: .png, .mp4 or .gif")
    p.add_argument("--scale", type=int, default=0, help="upscaling factor (0: to about 256 px)")

    def run(a):
        from .data.show import show

        print(show(a.data, a.episode, a.out, scale=a.scale))

    p.set_defaults(func=run)


def _add_quickstart(sub) -> None:
    from .quickstart import QuickstartConfig
    from .training.config import TrainConfig

    d = QuickstartConfig()
    p = _parser(sub, "quickstart", "the main job end to end on a small default (what `make demo` runs)")
    p.add_argument("--out", default="demo", help="directory for the dataset, the run and the report")
    p.add_argument("--workers", type=int, default=None, help=WORKERS_HELP)
    add_config_options(p, QuickstartConfig, defaults=d)
    add_config_options(p, TrainConfig, defaults=d.train)

    def run(a):
        from .quickstart import quickstart

        quickstart(a.out, workers=a.workers, **_given(a, QuickstartConfig, skip=("train",)), **_given(a, TrainConfig))

    p.set_defaults(func=run)


def _add_train(sub) -> None:
    from .training.config import TRAIN_PRESETS, TrainConfig

    p = _parser(sub, "train", "train an Action Reasoning Model on a dataset")
    p.add_argument("--data", default=None, help="dataset directory (with --resume: the run's own dataset if left out)")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    add_config_options(p, TrainConfig, defaults=TRAIN_PRESETS["tiny"], presets=TRAIN_PRESETS)

    def run(a):
        from .training.loop import train

        out = train(a.data, a.out, resume=a.resume, device=a.device, **_given(a, TrainConfig))
        print(f"run directory: {out}")

    p.set_defaults(func=run)


def _add_train_depth_vae(sub) -> None:
    p = _parser(sub, "train-depth-vae", "train the depth tokenizer (a VQ-VAE) on a dataset's depth maps")
    p.add_argument("--data", required=True, help="dataset directory")
    p.add_argument("--out", required=True, help="output directory (use it with `train --depth-vae`)")
    p.add_argument("--steps", type=int, default=1500, help="optimiser steps")
    p.add_argument("--codebook", type=int, default=128, help="number of depth codes")
    p.add_argument("--grid", type=int, default=4, help="latent grid: grid x grid tokens per image")
    p.add_argument("--device", default=None, help="cpu, cuda ... (default: cuda when available)")

    def run(a):
        from .tokenizers.depth_vae import train_depth_vae

        m = train_depth_vae(a.data, a.out, steps=a.steps, codebook=a.codebook, grid=a.grid, device=a.device)
        print(f"depth tokenizer at {a.out}: mean error {m['mae_m'] * 100:.2f} cm on held-out episodes, "
              f"{m['codes_used']}/{m['codebook']} codes used")

    p.set_defaults(func=run)


def _add_eval(sub) -> None:
    from .evaluation.evaluate import EvalConfig

    p = _parser(sub, "eval", "closed-loop success rates on held-out layouts")
    p.add_argument("--checkpoint", required=True, help="run directory written by `reasonact train`")
    p.add_argument("--out", required=True, help="report directory")
    p.add_argument("--device", default=None, help="cpu, cuda ... (default: cuda when available)")
    add_config_options(p, EvalConfig)

    def run(a):
        from .evaluation import evaluate
        from .machine import describe

        r = evaluate(a.checkpoint, a.out, device=a.device, **_given(a, EvalConfig))
        for t, v in r["tasks"].items():
            print(f"{t:28s} {v['success_rate']:6.1%}  [{v['ci95'][0]:.0%}, {v['ci95'][1]:.0%}]  n={v['episodes']}")
        cost = (f"latency {r['latency_ms_per_chunk']:.1f} ms/chunk, {r['nfe_per_chunk']:.0f} passes/chunk"
                if r["latency_ms_per_chunk"] is not None else "no prediction made")
        print(f"{'mean':28s} {r['success_rate']:6.1%}   {cost}, on {describe(r['machine'])}")
        print(f"report: {a.out}/report.md")

    p.set_defaults(func=run)


def _add_serve(sub) -> None:
    p = _parser(sub, "serve", "serve a policy over a websocket (msgpack + numpy; see docs/serving.md)")
    p.add_argument("--checkpoint", required=True, help="run directory written by `reasonact train`")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=_port, default=8765, help="port to listen on")
    p.add_argument("--device", default=None, help="cpu, cuda ... (default: cuda when available)")
    p.add_argument("--request-timeout", type=float, default=30.0,
                   help="seconds a prediction may take before its client gets an error and /healthz says stuck")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="also accept websockets from web pages at ORIGIN, e.g. http://lab-pc:3000 (repeatable; "
                   "'*' for any); pages from this machine are always accepted, programs send no origin")

    def run(a):
        from .serve.server import serve

        serve(a.checkpoint, host=a.host, port=a.port, device=a.device, request_timeout=a.request_timeout,
              allow_origins=tuple(a.allow_origin))

    p.set_defaults(func=run)


def _add_console(sub) -> None:
    p = _parser(sub, "console", "a browser console to watch and steer a policy in a live episode")
    p.add_argument("--checkpoint", required=True, help="run directory written by `reasonact train`")
    p.add_argument("--task", required=True, help="a Meta-World task (reach-v3) or a LIBERO task by its name")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=_port, default=8000, help="port to listen on")
    p.add_argument("--seed", type=int, default=None, help="first layout (default: a held-out one)")
    p.add_argument("--execute", type=int, default=None, help="actions run per Step (default: the policy's, "
                   "saved by train --execute; else the whole chunk)")
    p.add_argument("--diffusion-steps", type=int, default=None, metavar="T",
                   help="refinement rounds per chunk (default: the policy's); steered paths are followed closest at 1")
    p.add_argument("--action-values", default="mode", choices=("mode", "mean"),
                   help="each action token read as its most likely bin (mode) or the mean of its bins (mean: a drawn "
                        "path is followed closer)")
    p.add_argument("--correct", type=float, default=0.0, metavar="GAIN",
                   help="shift the drawn path by GAIN times the sum of the hand's past residuals from it, so that the "
                        "hand does not rest short of it (a policy trained with --trace-depth; 0.2 in RESULTS.md; "
                        "default 0: the drawing as it is)")
    p.add_argument("--device", default=None, help="cpu, cuda ... (default: cuda when available)")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="also accept the console's websocket from pages at ORIGIN (repeatable)")

    def run(a):
        from .serve.console import console

        if a.diffusion_steps is not None and a.diffusion_steps < 1:
            p.error(f"--diffusion-steps must be 1 or more, got {a.diffusion_steps}")
        if a.correct < 0:
            p.error(f"--correct must be 0 or more, got {a.correct}")
        console(a.checkpoint, a.task, host=a.host, port=a.port, device=a.device, seed=a.seed, execute=a.execute,
                diffusion_steps=a.diffusion_steps, action_values=a.action_values, correct=a.correct,
                allow_origins=tuple(a.allow_origin))

    p.set_defaults(func=run)


def _add_annotate(sub) -> None:
    p = _parser(sub, "annotate", "add teacher-written reasoning rationales to a dataset")
    p.add_argument("--data", required=True, help="dataset directory")
    p.add_argument("--teacher", choices=["privileged", "openai"], default="privileged",
                   help="privileged: written from the simulator's state; openai: an OpenAI-compatible endpoint")
    p.add_argument("--every", type=int, default=1, help="annotate every K-th step; the others inherit the nearest")
    p.add_argument("--endpoint", default=None, help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--model", default=None, help="model name at the endpoint")
    p.add_argument("--prompt", default=None, help="system prompt file (default: the package's teacher.md)")
    p.add_argument("--concurrency", type=int, default=4, help="requests in flight (openai teacher)")

    def run(a):
        from .reasoning.annotate import annotate

        s = annotate(a.data, teacher=a.teacher, every=a.every, endpoint=a.endpoint, model=a.model, prompt=a.prompt,
                     concurrency=a.concurrency)
        print(s)
        if s.failures:
            raise SystemExit(1)

    p.set_defaults(func=run)


def _add_attention(sub) -> None:
    p = _parser(sub, "attention", "PNG maps of where the action tokens attend in the image")
    p.add_argument("--checkpoint", required=True, help="run directory written by `reasonact train`")
    p.add_argument("--data", required=True, help="dataset directory (at the policy's resolution)")
    p.add_argument("--episode", type=int, default=0, help="episode number (its position in the dataset)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--frames", type=int, default=6, help="frames of the episode to explain")
    p.add_argument("--device", default=None, help="cpu, cuda ... (default: cuda when available)")

    def run(a):
        from .policy import load_policy
        from .viz.attention import attention_report

        print(attention_report(load_policy(a.checkpoint, a.device), a.data, a.episode, a.out, frames=a.frames))

    p.set_defaults(func=run)


COMMANDS = [_add_collect, _add_show, _add_annotate, _add_train, _add_train_depth_vae, _add_eval, _add_attention,
            _add_serve, _add_console, _add_quickstart]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="reasonact", description="Action Reasoning Models: collect, train, evaluate, serve.")
    parser.add_argument("--version", action="version", version=f"reasonact {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .data.format import DatasetError
    from .envs.libero import LiberoNotInstalled

    try:
        args.func(args)
    except KeyboardInterrupt:
        print("interrupted; finished work is saved (re-run the same command to resume)", file=sys.stderr)
        return 130
    except Exception as e:
        if args.debug:
            raise
        # the input's fault, said by our own checks; anything else is named by its type
        ours = isinstance(e, (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, DatasetError,
                              LiberoNotInstalled))
        text = " ".join(str(e).split()) if ours else f"{type(e).__name__}: {' '.join(str(e).split())}"
        print(f"error: {text}" + ("" if ours else " (reasonact --debug ... shows the traceback)"), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
