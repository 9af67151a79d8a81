"""Pinhole camera helpers (OpenCV convention: x right, y down, z forward; pixel (0, 0) spans [0, 1)²)."""

from __future__ import annotations

import numpy as np


def intrinsics_from_fovy(fovy_deg: float, width: int, height: int) -> np.ndarray:
    """(3, 3) intrinsics for square pixels and a vertical field of view in degrees."""
    f = 0.5 * height / np.tan(np.deg2rad(fovy_deg) / 2)
    return np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dtype=np.float64)


def project(points: np.ndarray, intrinsics: np.ndarray, extrinsics: np.ndarray) -> np.ndarray:
    """Project world points (..., 3) to pixel coordinates (..., 2) as (x, y) = (column, row)."""
    points = np.asarray(points, dtype=np.float64)
    homo = np.concatenate([points, np.ones(points.shape[:-1] + (1,))], axis=-1)
    cam = homo @ np.asarray(extrinsics, dtype=np.float64).T  # (..., 4)
    uvw = cam[..., :3] @ np.asarray(intrinsics, dtype=np.float64).T
    z = np.where(np.abs(uvw[..., 2:3]) < 1e-9, 1e-9, uvw[..., 2:3])
    return uvw[..., :2] / z


def depth_of(points: np.ndarray, extrinsics: np.ndarray) -> np.ndarray:
    """Depth along the optical axis (metres) of world points (..., 3)."""
    points = np.asarray(points, dtype=np.float64)
    return points @ np.asarray(extrinsics)[2, :3] + np.asarray(extrinsics)[2, 3]


def to_camera(pixels: np.ndarray, depth: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """Pixels (..., 2) at depths (...,) along the optical axis -> points (..., 3) in the camera's frame, metres."""
    pixels, depth = np.asarray(pixels, np.float64), np.asarray(depth, np.float64)
    rays = np.concatenate([pixels, np.ones(pixels.shape[:-1] + (1,))], -1) @ np.linalg.inv(intrinsics).T  # z = 1
    return rays * depth[..., None]


def unproject(pixels: np.ndarray, depth: np.ndarray, intrinsics: np.ndarray, extrinsics: np.ndarray) -> np.ndarray:
    """The inverse of :func:`project` with :func:`depth_of`: pixels (..., 2) at depths (...,) -> world points (..., 3)."""
    E = np.asarray(extrinsics, np.float64)
    return (to_camera(pixels, depth, intrinsics) - E[:3, 3]) @ E[:3, :3]  # R^T (cam - t), row-wise
