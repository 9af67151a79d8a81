"""Simulator adapters. ``make_env("reach-v3")`` returns an :class:`Env`."""

from __future__ import annotations

from .base import Env, Observation
from .camera import depth_of, intrinsics_from_fovy, project
from .instructions import METAWORLD_TEXT, TaskText


def make_env(task: str, **kwargs) -> "Env":
    """Create the environment for a task name (Meta-World v3 tasks, e.g. ``reach-v3``)."""
    from .metaworld import MetaWorldEnv

    return MetaWorldEnv(task, **kwargs)


def resolve_tasks(suite: str, tasks=None) -> list[str]:
    from .metaworld import resolve_tasks as _resolve

    return _resolve(suite, tasks)


def task_text(task: str) -> TaskText:
    try:
        return METAWORLD_TEXT[task]
    except KeyError:
        raise ValueError(f"no instructions for task {task!r}; known tasks: {', '.join(METAWORLD_TEXT)}") from None


__all__ = [
    "Env", "Observation", "make_env", "resolve_tasks", "task_text", "project", "depth_of",
    "intrinsics_from_fovy", "METAWORLD_TEXT", "TaskText",
]
