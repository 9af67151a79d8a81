"""Simulator adapters. ``make_env("reach-v3")`` or ``make_env(<a LIBERO task>)`` returns an :class:`Env`.

Two simulators plug in behind one protocol: Meta-World (:mod:`.metaworld`; suites ``mt10``, ``mt50``) and LIBERO
(:mod:`.libero`; suites ``libero_spatial``, ``libero_object``, ``libero_goal``, ``libero_10``). :func:`simulator`
picks the module for a suite, task or a policy's ``env``; every module offers ``resolve_tasks``,
``validate_render_args``, ``parse_cameras``, ``check_policy`` and its defaults (``DEFAULT_CAMERA``,
``DEFAULT_STATE_MODE``, ``ACTION_SPACE``, ``ROBOT``).
"""

from __future__ import annotations

from types import ModuleType

from .base import EVAL_SEED_BASE, Env, Observation
from .camera import depth_of, intrinsics_from_fovy, project, unproject
from .instructions import METAWORLD_TEXT, TaskText

SIMULATORS = ("metaworld", "libero")


def simulator(name: str | None = None) -> ModuleType:
    """The adapter module for a suite or task name, or a simulator name (``metaworld``, ``libero``); Meta-World
    when ``name`` is empty."""
    from . import libero, metaworld

    if not name or name == "metaworld" or name in METAWORLD_TEXT or name in metaworld.SUITES:
        return metaworld
    return libero if name == "libero" or libero.is_libero(name) else metaworld


def simulator_name(name: str | None) -> str:
    return "libero" if simulator(name).__name__.endswith(".libero") else "metaworld"


def make_env(task: str, **kwargs) -> "Env":
    """Create the environment for a task name (Meta-World v3 tasks, e.g. ``reach-v3``, or a LIBERO task)."""
    sim = simulator(task)
    if sim.__name__.endswith(".libero"):
        return sim.LiberoEnv(task, **kwargs)
    return sim.MetaWorldEnv(task, **kwargs)


def resolve_tasks(suite: str, tasks=None) -> list[str]:
    return simulator(suite).resolve_tasks(suite, tasks)


def task_text(task: str) -> TaskText:
    if task in METAWORLD_TEXT:
        return METAWORLD_TEXT[task]
    from . import libero

    if libero.is_libero(task):  # LIBERO's one instruction per task; no paraphrases of our own
        return TaskText(libero.instruction_of(task), (), ())
    raise ValueError(f"no instructions for task {task!r}; known tasks: {', '.join(METAWORLD_TEXT)} and LIBERO's")


__all__ = [
    "EVAL_SEED_BASE", "Env", "Observation", "make_env", "resolve_tasks", "task_text", "project", "depth_of", "unproject",
    "simulator", "simulator_name", "intrinsics_from_fovy", "METAWORLD_TEXT", "TaskText", "SIMULATORS",
]
