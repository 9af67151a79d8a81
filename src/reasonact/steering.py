"""Steering with a drawn trace: which part of a path is still ahead, and how closely a gripper followed it.

A person draws a path in the image (any number of points). At every prediction the policy is given the
part of that path still ahead of the gripper -- from the point on the path nearest to where the gripper
is now to the path's end -- resampled to the policy's N trace points. Over an episode a
:class:`PathTracker` keeps that point moving forward only: in the image, a path that goes out to a handle
and pulls it back, or goes down onto a button, passes close to itself, and the nearest point overall can lie
on a later leg, which would skip the legs between.
"""

from __future__ import annotations

import numpy as np

from .envs.camera import to_camera


def _project_to_segments(path: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distance from p to every segment of the polyline, the segment parameter t, and the closest points."""
    a, b = path[:-1], path[1:]
    ab = b - a
    t = np.clip(((p - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0, 1)
    closest = a + t[:, None] * ab
    return np.linalg.norm(closest - p, axis=-1), t, closest


def remaining_path(path: np.ndarray, here: np.ndarray) -> np.ndarray:
    """The part of a polyline (M, D) ahead of the point nearest to ``here`` (D,), starting there (pixels in
    the image, D = 2, or world coordinates, D = 3). For one look at a path; along an episode use
    :class:`PathTracker`."""
    here = np.asarray(here, np.float64).reshape(-1)
    return PathTracker(np.asarray(path, np.float64).reshape(-1, len(here)), tolerance=0.0).ahead(here)


class PathTracker:
    """The part of a path still ahead of a gripper that moves along it, call after call.

    Each call finds where the gripper is along the path, never behind where the last call found it, and
    returns the path from there to its end. Walking the path ahead, the distance to the gripper dips
    wherever the path passes it; the first such dip that comes within ``tolerance`` (path units: pixels, or
    metres for a world path) of the nearest point is where the gripper is, so that a later leg passing close
    by does not capture it."""

    def __init__(self, path: np.ndarray, tolerance: float = 1.0):
        path = np.asarray(path, np.float64)
        path = path.reshape(len(path), -1)
        moved = np.r_[True, np.any(np.diff(path, axis=0) != 0, axis=1)]
        self.path = path[moved]  # a point repeated (the gripper waited) would make a false dip
        self.tolerance = float(tolerance)
        self.restart()

    @classmethod
    def in_image(cls, path: np.ndarray, resolution: int) -> PathTracker:
        """A tracker along a path drawn in a ``resolution``-pixel image (tolerance: 2 pixels at 64)."""
        return cls(path, tolerance=resolution / 32)

    def restart(self) -> None:
        """Back to the start of the path (a new episode)."""
        self._segment, self._t = 0, 0.0  # progress: a point on segment ``_segment`` at parameter ``_t``

    def ahead(self, here: np.ndarray) -> np.ndarray:
        here = np.asarray(here, np.float64).reshape(-1)
        if len(self.path) < 2:
            return self.path.astype(np.float32)
        a, b = self.path[self._segment], self.path[self._segment + 1]
        start = a + self._t * (b - a)
        rest = np.concatenate([start[None], self.path[self._segment + 1:]])  # the path from the progress point
        d, t, closest = _project_to_segments(rest, here)
        # the distance along the path falls into a valley wherever the path passes the gripper: take the
        # first valley that is about as deep as the deepest
        valley = (d <= np.r_[np.inf, d[:-1]]) & (d <= np.r_[d[1:], np.inf])
        k = int(np.nonzero(valley & (d <= d.min() + self.tolerance))[0][0])
        # back to the full path's segments: rest's segment 0 is the tail of segment ``_segment``
        if k == 0:
            self._t = self._t + t[0] * (1.0 - self._t)
        else:
            self._segment, self._t = self._segment + k, float(t[k])
        return np.concatenate([closest[k: k + 1], rest[k + 1:]]).astype(np.float32)


class Correction:
    """Integral correction of a path given to a policy: the path ahead is shifted by the sum of the gripper's
    past residuals from it, so that an offset the policy leaves open, call after call (it rests short of a
    path's end), is drawn away by the path itself, as an integral term closes a proportional controller's
    steady error.

    Each call adds ``gain`` times the residual -- from the gripper to the first point of the path ahead, the
    point of the path it has reached -- to the shift, while that residual is within ``radius`` (farther, the
    gripper is still on its way to the path and the sum would wind up); the shift is kept within ``limit``.
    Units are the path's (metres for a world path). ``gain=0`` gives the path unchanged."""

    def __init__(self, gain: float, radius: float = 0.03, limit: float = 0.03):
        if gain < 0 or radius <= 0 or limit < 0:
            raise ValueError(f"a correction needs gain >= 0, radius > 0 and limit >= 0; got {gain}, {radius}, {limit}")
        self.gain, self.radius, self.limit = float(gain), float(radius), float(limit)
        self.shift: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the summed residual (a new path, a new episode)."""
        self.shift = None

    def __call__(self, ahead: np.ndarray, here: np.ndarray) -> np.ndarray:
        ahead = np.asarray(ahead, np.float64)
        residual = ahead[0] - np.asarray(here, np.float64).reshape(-1)
        if self.shift is None:
            self.shift = np.zeros_like(residual)
        if np.linalg.norm(residual) <= self.radius:
            self.shift = self.shift + self.gain * residual
            size = np.linalg.norm(self.shift)
            if size > self.limit:
                self.shift *= self.limit / size
        return (ahead + self.shift).astype(np.float32)


def cut_to_span(trace: np.ndarray, span: float, points: int, intrinsics: np.ndarray,
                depth: float | None = None) -> np.ndarray:
    """A given trace, (M, 2) pixels or (M, 3) pixels and depth in metres -> its first ``span`` metres as
    ``points`` points evenly spaced in metres along it, in the same form: what a policy trained on traces
    of that span reads (:func:`reasonact.data.dataset.path_ahead` draws its training traces). Measured in the
    camera's frame, from ``intrinsics`` and each point's depth; a trace of pixels alone is taken to lie at
    ``depth`` (the gripper's), as a path drawn near the hand does."""
    from .tokenizers.trace import resample_trace

    tr = np.asarray(trace, np.float64)
    if tr.shape[1] > 2:
        d = tr[:, 2]
    elif depth is not None:
        d = np.full(len(tr), float(depth))
    else:
        raise ValueError("a trace of pixels alone needs a depth to be measured in metres")
    K = np.asarray(intrinsics, np.float64)
    cam = to_camera(tr[:, :2], d, K)  # (M, 3) metres, camera frame
    cam = resample_trace(truncate(cam, span), points).astype(np.float64)
    uvw = cam @ K.T
    out = np.concatenate([uvw[:, :2] / uvw[:, 2:3], cam[:, 2:3]], 1)
    return out[:, : tr.shape[1]].astype(np.float32)


def at_height(pixels: np.ndarray, intrinsics: np.ndarray, extrinsics: np.ndarray, height: float,
              fallback: float) -> np.ndarray:
    """A path drawn in the image (M, 2) pixels -> (M, 3) pixels and depth in metres, each point lifted onto the
    horizontal plane ``height`` metres up in the world (where its camera ray meets the plane): a drawing read as
    a path at the hand's height. A ray that meets the plane behind the camera or not at all gets the depth
    ``fallback``."""
    px = np.asarray(pixels, np.float64).reshape(-1, 2)
    E = np.asarray(extrinsics, np.float64)
    R, t = E[:3, :3], E[:3, 3]
    rays = to_camera(px, np.ones(len(px)), intrinsics).T  # camera frame, z = 1
    up = R.T @ rays  # the same rays in the world; a point s along one is s metres deep
    centre = -R.T @ t
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = (height - centre[2]) / up[2]
    depth = np.where(np.isfinite(depth) & (depth > 0), depth, fallback)
    return np.c_[px, depth].astype(np.float32)


def truncate(path: np.ndarray, length: float) -> np.ndarray:
    """The first ``length`` of a polyline (M, D), its end interpolated on the last segment kept."""
    path = np.asarray(path, np.float64)
    legs = np.linalg.norm(np.diff(path, axis=0), axis=1)
    along = np.r_[0.0, np.cumsum(legs)]
    if along[-1] <= length:
        return path
    k = int(np.searchsorted(along, length))  # along[k - 1] < length <= along[k]
    f = (length - along[k - 1]) / max(legs[k - 1], 1e-12)
    return np.vstack([path[:k], path[k - 1] + f * (path[k] - path[k - 1])])


def point_along(path: np.ndarray, distance: float) -> np.ndarray:
    """The point ``distance`` along a polyline (M, D) from its start, or its end if it is shorter."""
    path = np.asarray(path, np.float64)
    legs = np.linalg.norm(np.diff(path, axis=0), axis=-1)
    for a, b, n in zip(path[:-1], path[1:], legs):
        if distance <= n:
            return a + (b - a) * (distance / max(n, 1e-12))
        distance -= n
    return path[-1]


def distance_to_path(points: np.ndarray, path: np.ndarray) -> np.ndarray:
    """Distance from each point (K, D) to the polyline (M, D): pixels in the image (D = 2) or metres in the
    world (D = 3)."""
    near = closest_on_path(points, path)
    return np.linalg.norm(np.asarray(points, np.float64).reshape(near.shape) - near, axis=-1)


def closest_on_path(points: np.ndarray, path: np.ndarray) -> np.ndarray:
    """The point of the polyline (M, D) nearest to each point (K, D), (K, D)."""
    path = np.asarray(path, np.float64)
    path = path.reshape(len(path), -1) if path.ndim > 1 else path.reshape(1, -1)
    pts = np.asarray(points, np.float64).reshape(-1, path.shape[1])
    if len(path) == 1:
        return np.repeat(path, len(pts), 0)
    out = []
    for p in pts:
        d, _, closest = _project_to_segments(path, p)
        out.append(closest[np.argmin(d)])
    return np.array(out).reshape(-1, path.shape[1])
