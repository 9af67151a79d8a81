"""Trace tokenizer: N points (x, y) in image pixels -> 2N coordinate bins over the image.

With ``relative``, a trace's points after the first are written as offsets from the first (where the
gripper is), each offset in [-width, width] mapped onto the bins: the direction of the path's first
segment is then one pair of tokens, where absolute bins leave a model to subtract two points' coordinates.
``offset_range`` narrows that range to a fraction of each axis (offsets beyond it are clipped): a trace
through the next 20 cm moves at most ~16 pixels from the gripper at 64 px, so 0.25 writes its offsets in
bins four times finer, where a centimetre is a few bins instead of one.

With ``depth`` (a range in metres), each trace point carries a third coordinate, its depth along the
camera's optical axis, on the same bins over that range: (x, y, d) per point, 3N tokens. The image leaves
open how far along the camera's rays a path goes; the depth says it. A trace given without the depth
(pixels only) leaves those tokens for the policy to write.

With ``span`` (metres), a trace covers only the next ``span`` metres of the path, its points evenly spaced
along that stretch, instead of the rest of the episode evenly in time: the first segments then show the
next few centimetres of the path. A policy cuts a longer given path to its span itself
(:func:`reasonact.steering.cut_to_span`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

UNKNOWN = -1  # a coordinate token not given (the policy writes it)


@dataclass
class TraceTokenizer:
    width: int  # image size in pixels the coordinates refer to
    height: int
    points: int = 5
    bins: int = 256
    relative: bool = False  # traces: later points as offsets from the first (object points stay absolute)
    depth: tuple[float, float] | None = None  # traces: each point's depth in metres, over this range
    span: float | None = None  # metres of the path ahead a trace covers (None: to the episode's end)
    offset_range: float = 1.0  # relative traces: offsets over +- this fraction of each axis's extent

    def __post_init__(self):
        if self.depth is not None:
            self.depth = (float(self.depth[0]), float(self.depth[1]))
            if not self.depth[1] > self.depth[0]:
                raise ValueError(f"the trace's depth range must run from near to far, got {self.depth}")
        if self.span is not None and not self.span > 0:
            raise ValueError(f"the trace's span must be a positive distance in metres, got {self.span}")
        if not 0 < self.offset_range <= 1:
            raise ValueError(f"the trace's offset range is a fraction of the image in (0, 1], got {self.offset_range}")

    @property
    def dims(self) -> int:
        """Coordinates per trace point: 2 (x, y), or 3 with depth."""
        return 2 if self.depth is None else 3

    @property
    def length(self) -> int:
        return self.dims * self.points

    @property
    def sizes(self) -> tuple[float, ...]:
        """Each trace coordinate's extent: the image's width and height (pixels), then the depth range (metres)."""
        return (self.width, self.height) + (() if self.depth is None else (self.depth[1] - self.depth[0],))

    @property
    def origin(self) -> tuple[float, ...]:
        return (0.0, 0.0) + (() if self.depth is None else (self.depth[0],))

    def encode(self, trace: np.ndarray) -> np.ndarray:
        """A trace (..., N, dims) -> (..., dims * N) int64 (x1, y1[, d1], x2, ...), relative if the tokenizer is.
        A depth tokenizer also takes (..., N, 2): the depth tokens are then :data:`UNKNOWN`."""
        trace = _points(trace, self.dims)
        given = ~np.isnan(trace)
        tok = coordinate_bins(np.nan_to_num(trace, nan=self.origin[-1]), self.sizes, self.bins, self.origin,
                              self.relative, self.offset_range)
        known = given if not self.relative else given & given[..., :1, :]  # offsets need the first point's value
        return np.where(known.reshape(tok.shape), tok, UNKNOWN).astype(np.int64)

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """(..., dims * N) int -> a trace (..., N, dims) float32: pixels (bin centres), then depth in metres."""
        return bin_centres(tokens, self.sizes, self.bins, self.origin, self.relative, self.offset_range).astype(np.float32)

    def encode_points(self, trace: np.ndarray) -> np.ndarray:
        """(..., N, 2) pixels -> (..., 2N) int64, each point absolute; points off the image are clipped. Any N:
        a points block's object and goal."""
        return coordinate_bins(_points(trace, 2), (self.width, self.height), self.bins).astype(np.int64)

    def decode_points(self, tokens: np.ndarray) -> np.ndarray:
        """(..., 2N) int -> (..., N, 2) float32 pixels (bin centres), each point absolute; any N."""
        return bin_centres(tokens, (self.width, self.height), self.bins).astype(np.float32)

    def resample(self, trace: np.ndarray) -> np.ndarray:
        """A drawn trace (M, 2 or dims) -> the tokenizer's N points, evenly spaced along it (depth counted in
        its bins' units, as far as the pixels that share its bin count)."""
        trace = np.asarray(trace, np.float64)
        if trace.ndim != 2 or trace.shape[1] not in (2, self.dims):
            raise ValueError(f"a trace must be (M, 2) pixels{'' if self.dims == 2 else ' or (M, 3) pixels and depth'}, "
                             f"got shape {trace.shape}")
        unit = np.array([1.0, 1.0, self.sizes[-1] / self.width])[: trace.shape[1]]
        return (resample_trace(trace / unit, self.points) * unit).astype(np.float32)

    def to_dict(self) -> dict:
        return {"type": "trace", **asdict(self), "depth": None if self.depth is None else list(self.depth)}

    @classmethod
    def from_dict(cls, d: dict) -> "TraceTokenizer":
        return cls(d["width"], d["height"], d.get("points", 5), d.get("bins", 256), d.get("relative", False),
                   None if d.get("depth") is None else tuple(d["depth"]), d.get("span"), d.get("offset_range", 1.0))


def _points(trace, dims: int) -> np.ndarray:
    trace = np.asarray(trace, np.float64)
    if trace.ndim < 2 or trace.shape[-1] not in (2, dims):
        raise ValueError(f"expected points of shape (..., N, {dims}), got {trace.shape}")
    if trace.shape[-1] < dims:
        trace = np.concatenate([trace, np.full(trace.shape[:-1] + (dims - 2,), np.nan)], -1)
    return trace


def coordinate_bins(pts, sizes, bins: int, origin=None, relative: bool = False, offset_range: float = 1.0):
    """(..., N, D) coordinates (numpy or torch) -> (..., N * D) bin indices, floats of the same type: axis k's
    range [origin[k], origin[k] + sizes[k]) cut into ``bins``, values outside clipped; ``relative``: the
    points after the first as offsets from it (:func:`to_relative`)."""
    out = pts * 1.0
    for k, o in enumerate(origin or ()):
        out[..., k] = out[..., k] - o
    if relative:
        out = to_relative(out, sizes, offset_range)
    for k, size in enumerate(sizes):
        out[..., k] = out[..., k] * (bins / size)
    return (out // 1).clip(0, bins - 1).reshape(*out.shape[:-2], -1)


def bin_centres(tokens, sizes, bins: int, origin=None, relative: bool = False, offset_range: float = 1.0) -> np.ndarray:
    """The inverse of :func:`coordinate_bins` (numpy): (..., N * D) bins -> (..., N, D) bin centres."""
    tokens = np.asarray(tokens, np.float64)
    out = (tokens.reshape(tokens.shape[:-1] + (-1, len(sizes))) + 0.5) * (np.array(sizes, np.float64) / bins)
    if relative:
        out = from_relative(out, sizes, offset_range)
    return out + np.array(origin or (0.0,) * len(sizes))


def to_relative(pts, sizes, offset_range: float = 1.0):
    """(..., N, D) coordinates (numpy or torch), axis k over [0, sizes[k]) -> the same shape with each point
    after the first replaced by its offset from the first, mapped from [-r size, r size] (r: ``offset_range``)
    onto [0, size], the axis's range, so that the same bins write it."""
    out = pts * 1.0
    for k, size in enumerate(sizes):
        out[..., 1:, k] = (pts[..., 1:, k] - pts[..., :1, k] + offset_range * size) / (2 * offset_range)
    return out


def from_relative(pts, sizes, offset_range: float = 1.0):
    """The inverse of :func:`to_relative`."""
    out = pts * 1.0
    for k, size in enumerate(sizes):
        out[..., 1:, k] = pts[..., :1, k] + offset_range * (2 * pts[..., 1:, k] - size)
    return out


def resample_trace(points: np.ndarray, n: int) -> np.ndarray:
    """Resample a polyline (M, D) to n points evenly spaced along its length (M may be 1)."""
    points = np.asarray(points, np.float64)
    pts = points.reshape(-1, points.shape[-1] if points.ndim > 1 else 2)
    if len(pts) == 0:
        raise ValueError("a trace needs at least one point")
    if len(pts) == 1:
        return np.repeat(pts, n, 0).astype(np.float32)
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    if s[-1] < 1e-9:
        return np.repeat(pts[:1], n, 0).astype(np.float32)
    target = np.linspace(0, s[-1], n)
    return np.stack([np.interp(target, s, pts[:, k]) for k in range(pts.shape[1])], -1).astype(np.float32)
