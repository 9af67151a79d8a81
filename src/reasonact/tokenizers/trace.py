"""Trace tokenizer: N points (x, y) in image pixels -> 2N coordinate bins over the image.

With ``relative``, a trace's points after the first are written as offsets from the first (where the
gripper is), each offset in [-width, width] mapped onto the bins: the direction of the path's first
segment is then one pair of tokens, where absolute bins leave a model to subtract two points' coordinates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class TraceTokenizer:
    width: int  # image size in pixels the coordinates refer to
    height: int
    points: int = 5
    bins: int = 256
    relative: bool = False  # traces: later points as offsets from the first (object points stay absolute)

    @property
    def length(self) -> int:
        return 2 * self.points

    def encode(self, trace: np.ndarray) -> np.ndarray:
        """A trace (..., N, 2) pixels -> (..., 2N) int64 (x1, y1, x2, y2, ...), relative if the tokenizer is."""
        trace = _points(trace)
        return self.encode_points(to_relative(trace, self.width, self.height) if self.relative else trace)

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """(..., 2N) int -> a trace (..., N, 2) float32 pixels (bin centres)."""
        xy = self.decode_points(tokens)
        return from_relative(xy, self.width, self.height).astype(np.float32) if self.relative else xy

    def encode_points(self, trace: np.ndarray) -> np.ndarray:
        """(..., N, 2) pixels -> (..., 2N) int64, each point absolute; points off the image are clipped. Any N:
        a points block's object and goal."""
        trace = _points(trace)
        scale = np.array([self.bins / self.width, self.bins / self.height])
        tok = np.clip(np.floor(trace * scale), 0, self.bins - 1).astype(np.int64)
        return tok.reshape(trace.shape[:-2] + (2 * trace.shape[-2],))

    def decode_points(self, tokens: np.ndarray) -> np.ndarray:
        """(..., 2N) int -> (..., N, 2) float32 pixels (bin centres), each point absolute; any N."""
        tokens = np.asarray(tokens, np.float64)
        xy = tokens.reshape(tokens.shape[:-1] + (-1, 2))
        return ((xy + 0.5) * np.array([self.width / self.bins, self.height / self.bins])).astype(np.float32)

    def to_dict(self) -> dict:
        return {"type": "trace", **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "TraceTokenizer":
        return cls(d["width"], d["height"], d.get("points", 5), d.get("bins", 256), d.get("relative", False))


def _points(trace) -> np.ndarray:
    trace = np.asarray(trace, np.float64)
    if trace.ndim < 2 or trace.shape[-1] != 2:
        raise ValueError(f"expected points of shape (..., N, 2), got {trace.shape}")
    return trace


def to_relative(xy, width: float, height: float):
    """(..., N, 2) pixels (numpy or torch) -> the same shape with each point after the first replaced by its
    offset from the first, mapped from [-size, size] onto [0, size], the image's range, so that the same
    bins write it."""
    out = xy * 1.0
    out[..., 1:, 0] = (xy[..., 1:, 0] - xy[..., :1, 0] + width) / 2
    out[..., 1:, 1] = (xy[..., 1:, 1] - xy[..., :1, 1] + height) / 2
    return out


def from_relative(xy, width: float, height: float):
    """The inverse of :func:`to_relative`."""
    out = xy * 1.0
    out[..., 1:, 0] = xy[..., :1, 0] + 2 * xy[..., 1:, 0] - width
    out[..., 1:, 1] = xy[..., :1, 1] + 2 * xy[..., 1:, 1] - height
    return out


def resample_trace(points: np.ndarray, n: int) -> np.ndarray:
    """Resample a polyline (M, 2) to n points evenly spaced along its length (M may be 1)."""
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    if len(pts) == 0:
        raise ValueError("a trace needs at least one point")
    if len(pts) == 1:
        return np.repeat(pts, n, 0).astype(np.float32)
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    if s[-1] < 1e-9:
        return np.repeat(pts[:1], n, 0).astype(np.float32)
    target = np.linspace(0, s[-1], n)
    return np.stack([np.interp(target, s, pts[:, 0]), np.interp(target, s, pts[:, 1])], -1).astype(np.float32)
