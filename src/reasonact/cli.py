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
    p.add_argument("--expert", choices=["task", "path"], default="task",
                   help="task: the task's scripted expert (default); path: random paths through the task's "
                        "scene, trained only with the trace given (--steer-prob) to teach steering")

    def run(a):
        from .data.collect import collect

        print(collect(a.out, suite=a.suite, tasks=a.tasks, episodes_per_task=a.episodes_per_task,
                      resolution=a.resolution, camera=a.camera, state_mode=a.state_mode,
                      workers=a.workers, seed=a.seed, expert=a.expert))

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
    from .quickstart import QuickstartConfig

    d = QuickstartConfig()
    p = sub.add_parser("quickstart", help="the main job end to end on a small default (what `make demo` runs)")
    p.add_argument("--out", default="demo")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--tasks", default=None, help=f"default: {d.tasks}")
    p.add_argument("--episodes-per-task", type=int, default=None, help=f"default: {d.episodes_per_task}")
    p.add_argument("--steps", type=int, default=None, help=f"training steps (default: {d.steps})")
    p.add_argument("--eval-episodes", type=int, default=None, help=f"default: {d.eval_episodes}")
    p.add_argument("--decoder", choices=["ar", "diffusion"], default=None, help=f"default: {d.decoder}")
    p.add_argument("--reasoning", default=None, help=f"default: {d.reasoning}")

    def run(a):
        from .quickstart import quickstart

        opts = {k: getattr(a, k) for k in ("tasks", "episodes_per_task", "steps", "eval_episodes", "decoder", "reasoning")}
        quickstart(a.out, workers=a.workers, **{k: v for k, v in opts.items() if v is not None})

    p.set_defaults(func=run)


def _add_train(sub) -> None:
    from .training import TrainConfig

    d = TrainConfig()
    p = sub.add_parser("train", help="train an Action Reasoning Model on a dataset")
    p.add_argument("--data", default=None, help="dataset directory (with --resume: defaults to the run's dataset)")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--config", default=None, help=f"model preset: debug, tiny, small, base (default: {d.config})")
    p.add_argument("--decoder", choices=["ar", "diffusion"], default=None, help=f"default: {d.decoder}")
    p.add_argument("--reasoning", default=None,
                   help=f"act, trace, depth+trace, full (rationale+depth+trace) (default: {d.reasoning})")
    p.add_argument("--steps", type=int, default=None, help=f"optimiser steps (default: {d.steps})")
    p.add_argument("--batch-size", type=int, default=None, help=f"global batch size (default: {d.batch_size})")
    p.add_argument("--lr", type=float, default=None, help=f"peak learning rate (default: {d.lr})")
    p.add_argument("--horizon", type=int, default=None, help=f"action chunk length (default: {d.horizon})")
    p.add_argument("--steer-prob", type=float, default=None,
                   help="share of samples trained with the trace given (steering) (default: 0)")
    p.add_argument("--lambda-reason", type=float, default=None, help=f"reasoning loss weight (default: {d.lambda_reason})")
    p.add_argument("--freeze-layers", type=int, default=None, help="freeze the vision encoder and the lowest K layers")
    p.add_argument("--init", default=None, help="start from another run's weights, tokenizers and state normalisation")
    p.add_argument("--depth-vae", default=None, help="a trained depth tokenizer directory (else one is trained)")
    p.add_argument("--val-fraction", type=float, default=None, help="share of episodes held out for validation loss")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default=None)
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the model (CUDA)")
    p.add_argument("--no-augment", dest="augment", action="store_false", default=None)
    p.add_argument("--save-every", type=int, default=None)
    p.add_argument("--log-every", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")

    def run(a):
        from .training import train

        opts = {k: getattr(a, k) for k in ("config", "decoder", "reasoning", "steps", "batch_size", "lr", "horizon",
                                          "steer_prob", "lambda_reason", "freeze_layers", "init", "depth_vae",
                                          "val_fraction", "precision", "compile", "augment", "save_every",
                                          "log_every", "seed")}
        if a.data is None and not a.resume:
            raise ValueError("--data is required (except with --resume)")
        out = train(a.data, a.out, resume=a.resume, device=a.device, **opts)
        print(f"run directory: {out}")

    p.set_defaults(func=run)


def _add_train_depth_vae(sub) -> None:
    p = sub.add_parser("train-depth-vae", help="train the depth tokenizer (a VQ-VAE) on a dataset's depth maps")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--codebook", type=int, default=128)
    p.add_argument("--grid", type=int, default=4, help="latent grid: grid x grid tokens per image")
    p.add_argument("--device", default=None)

    def run(a):
        from .tokenizers.depth_vae import train_depth_vae

        m = train_depth_vae(a.data, a.out, steps=a.steps, codebook=a.codebook, grid=a.grid, device=a.device)
        print(f"depth tokenizer at {a.out}: mean error {m['mae_m'] * 100:.2f} cm on held-out episodes, "
              f"{m['codes_used']}/{m['codebook']} codes used")

    p.set_defaults(func=run)


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="closed-loop success rates on held-out layouts")
    p.add_argument("--checkpoint", required=True, help="run directory written by `reasonact train`")
    p.add_argument("--suite", default="mt10")
    p.add_argument("--tasks", default=None, help="comma-separated subset of the suite's tasks")
    p.add_argument("--episodes-per-task", type=int, default=20)
    p.add_argument("--out", required=True, help="report directory")
    p.add_argument("--decoder", choices=["ar", "diffusion"], default=None, help="must match the trained decoder")
    p.add_argument("--steps", type=int, default=None, help="diffusion refinement rounds T (default: 12)")
    p.add_argument("--execute", type=int, default=None, help="actions run per chunk (default: the whole chunk)")
    p.add_argument("--workers", type=int, default=None, help="simulator processes (default: CPU count)")
    p.add_argument("--video", action="store_true", help="write rollout videos with the predicted trace")
    p.add_argument("--max-steps", type=int, default=None, help="episode step limit (default: the task's, 500)")
    p.add_argument("--instructions", choices=["canonical", "paraphrase", "unseen"], default="canonical",
                   help="phrasing of the instruction: the task's own, a seen paraphrase, or one never used in training")
    p.add_argument("--device", default=None)

    def run(a):
        from .evaluation import evaluate
        from .machine import describe

        r = evaluate(a.checkpoint, a.out, suite=a.suite, tasks=a.tasks, episodes_per_task=a.episodes_per_task,
                     decoder=a.decoder, steps=a.steps, execute=a.execute, workers=a.workers, video=a.video,
                     max_steps=a.max_steps, device=a.device, instructions=a.instructions)
        for t, v in r["tasks"].items():
            print(f"{t:28s} {v['success_rate']:6.1%}  [{v['ci95'][0]:.0%}, {v['ci95'][1]:.0%}]  n={v['episodes']}")
        print(f"{'mean':28s} {r['success_rate']:6.1%}   latency {r['latency_ms_per_chunk']:.1f} ms/chunk, "
              f"{r['nfe_per_chunk']:.0f} passes/chunk, on {describe(r['machine'])}")
        print(f"report: {a.out}/report.md")

    p.set_defaults(func=run)


def _add_serve(sub) -> None:
    p = sub.add_parser("serve", help="serve a policy over a websocket (msgpack + numpy; see docs/serving.md)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--device", default=None)

    def run(a):
        from .serve.server import serve

        serve(a.checkpoint, host=a.host, port=a.port, device=a.device)

    p.set_defaults(func=run)


def _add_console(sub) -> None:
    p = sub.add_parser("console", help="a browser console to watch and steer a policy in a live episode")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--task", required=True, help="a Meta-World task, e.g. reach-v3")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--seed", type=int, default=None, help="first layout (default: a held-out one)")
    p.add_argument("--execute", type=int, default=None, help="actions run per Step (default: the whole chunk)")
    p.add_argument("--device", default=None)

    def run(a):
        from .serve.console import console

        console(a.checkpoint, a.task, host=a.host, port=a.port, device=a.device, seed=a.seed, execute=a.execute)

    p.set_defaults(func=run)


def _add_annotate(sub) -> None:
    p = sub.add_parser("annotate", help="add teacher-written reasoning rationales to a dataset")
    p.add_argument("--data", required=True)
    p.add_argument("--teacher", choices=["privileged", "openai"], default="privileged")
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
    p = sub.add_parser("attention", help="PNG maps of where the action tokens attend in the image")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--episode", type=int, default=0)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--frames", type=int, default=6)
    p.add_argument("--device", default=None)

    def run(a):
        from .viz.attention import attention_report

        print(attention_report(a.checkpoint, a.data, a.episode, a.out, frames=a.frames, device=a.device))

    p.set_defaults(func=run)


COMMANDS = [_add_collect, _add_show, _add_annotate, _add_train, _add_train_depth_vae, _add_eval, _add_attention,
            _add_serve, _add_console, _add_quickstart]


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
    except (ValueError, FileNotFoundError, FileExistsError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished work is saved (re-run the same command to resume)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
