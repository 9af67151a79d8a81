"""The environment protocol every simulator adapter implements.

An adapter is deliberately small: ``reset(seed) -> obs`` and ``step(action) -> (obs, success, done)``.
Everything a policy may use lives in the observation dict; privileged simulator state that only
teachers and tests may read lives under ``obs["privileged"]``.
"""

from __future__ import annotations

from typing import Any, Protocol, TypedDict, runtime_checkable

import numpy as np

# The state opens with proprioception: end-effector xyz and gripper opening. What follows (a goal, object
# poses) says where the task is; a steered policy takes that from the given trace instead.
PROPRIO_DIMS = 4
# Held-out (evaluation) layouts are drawn from this seed upwards; training data uses seeds below it.
EVAL_SEED_BASE = 1_000_000


def start_offset(seed: int, jitter: float) -> np.ndarray:
    """Where a collected episode starts the hand, relative to the task's start: up to ``jitter`` metres in x and y
    and half of it in z, drawn from the layout's seed (so that a demonstration's hand position alone does not say
    where the task's object is)."""
    return np.random.default_rng([int(seed), 1]).uniform(-1, 1, 3) * jitter * np.array([1.0, 1.0, 0.5])


class Observation(TypedDict, total=False):
    rgb: np.ndarray  # (H, W, 3) uint8, upright
    depth: np.ndarray  # (H, W) float32, metres along the optical axis
    state: np.ndarray  # (S,) float32 proprioception (+ goal when the goal is not visible)
    ee_pos: np.ndarray  # (3,) float32 world position of the end effector (between the fingertips)
    camera_intrinsics: np.ndarray  # (3, 3) float32, pixels; OpenCV convention
    camera_extrinsics: np.ndarray  # (4, 4) float32, world -> camera; x right, y down, z forward
    images: dict[str, np.ndarray]  # every view's (H, W, 3) uint8 image by name, the first (``rgb``) first
    cameras: dict[str, tuple[np.ndarray, np.ndarray]]  # every view's (intrinsics, extrinsics)
    instruction: str
    privileged: dict[str, Any]  # simulator-only facts (object and goal positions, ...); never a model input


@runtime_checkable
class Env(Protocol):
    task: str
    instruction: str
    action_dim: int
    state_dim: int
    max_steps: int
    resolution: int

    def reset(self, seed: int) -> Observation: ...

    def step(self, action: np.ndarray) -> tuple[Observation, bool, bool]:
        """Apply one action; return (observation, success, done)."""
        ...

    def close(self) -> None: ...


def parse_views(camera: str, cameras: tuple[str, ...], wrist: tuple[str, ...], *, label: str, hint: str,
                third_person: str) -> list[str]:
    """``"a,b"`` -> the views in order, each one of ``cameras``, none twice, the first not a ``wrist`` camera (it holds
    the trace). ``label`` names the simulator in errors, ``hint`` explains the names, ``third_person`` is suggested."""
    views = [v.strip() for v in str(camera).split(",")]
    unknown = [v for v in views if v not in cameras]
    if unknown or not views:
        raise ValueError(f"unknown {label}camera {', '.join(unknown) or repr(camera)}; cameras: {', '.join(cameras)} "
                         f"({hint})")
    if len(set(views)) != len(views):
        raise ValueError(f"camera {camera!r} names a view twice")
    if views[0] in wrist:
        raise ValueError(f"the first view holds the trace and must be a fixed third-person camera, not {views[0]!r} "
                         f"(try {third_person},{views[0]})")
    return views


def check_render_args(resolution: int, state_mode: str, state_modes: dict, label: str) -> None:
    if not isinstance(resolution, int) or not 16 <= resolution <= 1024:
        raise ValueError(f"resolution must be an integer from 16 to 1024 pixels, got {resolution!r}")
    if state_mode not in state_modes:
        raise ValueError(f"unknown {label}state mode {state_mode!r}; choose from {', '.join(state_modes)}")
