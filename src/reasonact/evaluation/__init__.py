"""Closed-loop evaluation: :mod:`.rollout` (held-out seeds, simulator workers, batched predictions),
:mod:`.report` (json, markdown, plot), :mod:`.videos`, and :func:`evaluate`, which runs them."""

from .evaluate import EvalConfig, evaluate
from .report import wilson
from .rollout import EVAL_SEED_BASE, Episode, Rollouts, held_out_seeds, instruction_picker, rollout

__all__ = ["EvalConfig", "evaluate", "wilson", "EVAL_SEED_BASE", "Episode", "Rollouts", "held_out_seeds",
           "instruction_picker", "rollout"]
