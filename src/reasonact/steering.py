"""Steering with a drawn trace: which part of a path is still ahead, and how closely a gripper followed it.

A person draws a path in the image (any number of points). At every prediction the policy is given the
part of that path still ahead of the gripper -- from the point on the path nearest to where the gripper
is now to the path's end -- resampled to the policy's N trace points.
"""

from __future__ import annotations

import numpy as np


def _project_to_segments(path: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distance from p to every segment of the polyline, the segment parameter t, and the closest points."""
    a, b = path[:-1], path[1:]
    ab = b - a
    t = np.clip(((p - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0, 1)
    closest = a + t[:, None] * ab
    return np.linalg.norm(closest - p, axis=-1), t, closest


def remaining_path(path: np.ndarray, here: np.ndarray) -> np.ndarray:
    """The part of a polyline (M, 2) ahead of the point nearest to ``here`` (2,), starting there."""
    path = np.asarray(path, np.float64).reshape(-1, 2)
    if len(path) < 2:
        return path.astype(np.float32)
    d, _, closest = _project_to_segments(path, np.asarray(here, np.float64))
    k = int(np.argmin(d))
    return np.concatenate([closest[k: k + 1], path[k + 1:]]).astype(np.float32)


def distance_to_path(points: np.ndarray, path: np.ndarray) -> np.ndarray:
    """Distance (pixels) from each point (K, 2) to the polyline (M, 2)."""
    path = np.asarray(path, np.float64).reshape(-1, 2)
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    if len(path) == 1:
        return np.linalg.norm(pts - path[0], axis=-1)
    return np.array([_project_to_segments(path, p)[0].min() for p in pts])
