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
