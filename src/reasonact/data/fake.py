"""``fake_dataset(dir)``: a small dataset in the real on-disk format, made without a simulator.

Each episode moves a gripper (a blue disc, seen from a camera straight above the table) towards a goal
(a red disc) at a random place; the actions are the scripted moves, the state is proprioception plus the
goal as in Meta-World's ``goal`` state, and the camera matrices project the gripper onto its disc, so
traces are exact. Train, load, predict and serve run on it in seconds, with no MuJoCo.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..envs.camera import intrinsics_from_fovy, project
from ..io import encode_png, quantize_depth, write_json_atomic
from .format import CODEBASE_VERSION, camera_columns, finalize, write_episode

CAMERA_HEIGHT = 1.0  # metres above the table, looking straight down at (0, 0.6, 0)
WORKSPACE = np.array([[-0.2, 0.45, 0.05], [0.2, 0.75, 0.3]])  # (lo, hi) of gripper and goal positions
SPEED = 0.01  # metres per unit of action per step
VIEW = "top-down"


def fake_camera(resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """(intrinsics (3, 3), extrinsics (4, 4) world -> camera) of the top-down camera."""
    K = intrinsics_from_fovy(45.0, resolution, resolution)
    R = np.diag([1.0, -1.0, -1.0])  # x right, image down = world -y, looking down = world -z
    centre = np.array([0.0, 0.6, CAMERA_HEIGHT])
    E = np.eye(4)
    E[:3, :3], E[:3, 3] = R, -R @ centre
    return K.astype(np.float32), E.astype(np.float32)


def _disc(img: np.ndarray, centre: np.ndarray, radius: float, color: tuple[int, int, int]) -> None:
    ys, xs = np.mgrid[: img.shape[0], : img.shape[1]]
    inside = (xs + 0.5 - centre[0]) ** 2 + (ys + 0.5 - centre[1]) ** 2 <= radius**2
    img[inside] = color


def fake_episode(seed: int, task: str, resolution: int, length: int) -> dict:
    """One episode as the collector's workers return it (columns of encoded frames and numbers)."""
    rng = np.random.default_rng(seed)
    K, E = fake_camera(resolution)
    ee = rng.uniform(*WORKSPACE)
    goal = rng.uniform(*WORKSPACE)
    radius = max(1.5, resolution / 20)
    image, intrinsics, extrinsics = camera_columns(VIEW)
    cols: dict[str, list] = {k: [] for k in (image, "observation.depth", "observation.state", "observation.ee_pos",
                                             intrinsics, extrinsics, "observation.privileged", "observation.points", "action",
                                             "next.success")}
    for t in range(length):
        img = np.full((resolution, resolution, 3), 90, np.uint8)
        _disc(img, project(goal, K, E), radius, (220, 40, 40))
        _disc(img, project(ee, K, E), radius, (40, 90, 230))
        grip = 1.0 if t > length // 2 else -1.0
        action = np.concatenate([np.clip((goal - ee) / (SPEED * 4), -1, 1), [grip]]).astype(np.float32)
        depth = np.full((resolution, resolution), CAMERA_HEIGHT, np.float32)
        cols[image].append(encode_png(img))
        cols["observation.depth"].append(quantize_depth(depth))
        cols["observation.state"].append(np.concatenate([ee, [grip], goal]))
        cols["observation.ee_pos"].append(ee)
        cols[intrinsics].append(K.reshape(-1))
        cols[extrinsics].append(E.reshape(-1))
        cols["observation.privileged"].append(np.concatenate([ee, goal]))
        cols["observation.points"].append(goal)
        cols["action"].append(action)
        ee = ee + action[:3] * SPEED
        cols["next.success"].append(t == length - 1)
    numeric = {k: np.stack(v).astype(np.float32) for k, v in cols.items()
               if k not in (image, "observation.depth", "next.success")}
    return {"task": task, "seed": seed, "expert": "task", "success": True, "length": length,
            "columns": {**cols, **numeric}, "views": [VIEW], "dims": (7, 4, 6, 3)}


def fake_dataset(out: str | Path, *, tasks: tuple[str, ...] = ("reach-v3", "push-v3"), episodes_per_task: int = 3,
                 length: int = 30, resolution: int = 32, seed: int = 0) -> Path:
    """Write a complete dataset of ``len(tasks) * episodes_per_task`` synthetic episodes to ``out``."""
    root = Path(out)
    if (root / "meta" / "info.json").exists():
        raise FileExistsError(f"{root} already holds a dataset")
    (root / "meta").mkdir(parents=True, exist_ok=True)
    write_json_atomic(root / "meta" / "info.json", {
        "codebase_version": CODEBASE_VERSION, "env": "fake", "suite": "fake", "resolution": resolution,
        "camera": VIEW, "cameras": [VIEW], "state_mode": "goal", "seed": seed, "complete": False, "tasks": list(tasks)})
    episode, frame = 0, 0
    for k in range(episodes_per_task):
        for t, task in enumerate(tasks):
            result = fake_episode(seed + episode, task, resolution, length)  # a layout of its own
            write_episode(root, result, episode, frame, t)
            episode, frame = episode + 1, frame + length
    finalize(root)
    return root
