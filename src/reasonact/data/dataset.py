"""Random-access reading of a reasonact dataset: ``load_dataset(path)[i] -> dict``.

Numeric columns are held as numpy arrays; frames stay PNG-encoded in Arrow buffers and are decoded on
access (about 0.5 ms for an RGB + depth pair at 128 px). Traces for every frame are computed once, at load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..envs.camera import project
from ..io import DEPTH_SCALE, decode_depth, decode_png
from .format import (
    DatasetError,
    read_episodes,
    read_frames,
    read_info,
    read_rationales,
    read_stats,
    read_tasks,
    view_columns,
)


def _fixed(table, column: str, shape: tuple[int, ...]) -> np.ndarray:
    col = table[column].combine_chunks()
    return np.asarray(col.flatten(), dtype=np.float32).reshape((len(col),) + shape)


def _image_bytes(column):
    """An image column's encoded frames: LeRobot's {bytes, path} structs, or (reasonact/v1) plain bytes."""
    col = column.combine_chunks()
    return col.field("bytes") if pa.types.is_struct(col.type) else col


def _depths(table):
    """(N, H, W) uint16 (a view of the table's memory), or (reasonact/v1) the column of 16-bit PNGs."""
    col = table["observation.depth"].combine_chunks()
    if pa.types.is_binary(col.type):
        return col
    values = col.flatten().flatten().to_numpy(zero_copy_only=False)
    return values.reshape(len(col), len(col[0]), -1) if len(col) else values.reshape(0, 0, 0)


def _stats(stats: dict | None, actions: np.ndarray, states: np.ndarray) -> dict:
    """Statistics under the names the code uses (``action``, ``state``), computed where the dataset lacks
    them or lacks the quantiles the action tokenizer needs."""
    from .stats import compute_stats

    stats = dict(stats or {})
    if "observation.state" in stats:
        stats["state"] = stats["observation.state"]
    if "q01" not in stats.get("action", {}):
        stats["action"] = compute_stats(actions)
    if "mean" not in stats.get("state", {}):
        stats["state"] = compute_stats(states)
    return stats


def trace_frame_indices(frame: np.ndarray, last: np.ndarray, n_points: int) -> np.ndarray:
    """(B,) current and last frame -> (B, n_points) frame indices evenly spaced from now to the end."""
    frac = np.linspace(0.0, 1.0, n_points)
    return np.round(frame[:, None] + (last - frame)[:, None] * frac[None]).astype(np.int64)


def path_ahead(path: np.ndarray, n_points: int, span: float) -> np.ndarray:
    """One episode's end-effector path (L, 3) -> (L, n_points, 3): for every frame, the next ``span`` metres
    of the path (the rest, where less is left), as points evenly spaced along it. Time spent in place
    (a grasp, a wait) takes no room: the points say where the hand goes, not when."""
    path = np.asarray(path, np.float64)
    along = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))]  # arc length at each frame
    reach = np.minimum(along + span, along[-1])
    s = along[:, None] + (reach - along)[:, None] * np.linspace(0.0, 1.0, n_points)[None]
    return np.stack([np.interp(s, along, path[:, k]) for k in range(3)], -1)


def paths_ahead(ee_pos: np.ndarray, episode_start: np.ndarray, episode_end: np.ndarray, frames: np.ndarray,
                n_points: int, span: float) -> np.ndarray:
    """:func:`path_ahead` for any frames of a dataset: (B,) frame indices, with every frame's episode start
    and end (N,) -> (B, n_points, 3). Episodes are contiguous runs of frames."""
    out = np.empty((len(frames), n_points, 3), np.float32)
    for start in np.unique(episode_start[frames]):
        mine = episode_start[frames] == start
        out[mine] = path_ahead(ee_pos[start:episode_end[start]], n_points, span)[frames[mine] - start]
    return out


class ReasonactDataset:
    """A collected dataset. ``len(ds)`` frames; ``ds[i]`` is one step as a dict of numpy arrays."""

    def __init__(self, root: str | Path, *, trace_points: int = 5, trace_span: float | None = None,
                 views: str | None = None):
        self.root = Path(root)
        self.info = read_info(self.root)
        if not self.info.get("complete", "env" not in self.info):  # a dataset LeRobot wrote has no such flag
            raise DatasetError(
                f"the dataset at {self.root} is incomplete (collection interrupted?); re-run the same "
                "`reasonact collect` command to finish it"
            )
        self.episodes: list[dict] = read_episodes(self.root, self.info)
        self.tasks: list[dict] = read_tasks(self.root, self.info)
        self.task_names = [t["task"] for t in self.tasks]
        self.trace_points = int(trace_points)
        if self.trace_points < 1:
            raise ValueError(f"trace_points must be >= 1, got {trace_points}")
        if trace_span is not None and not trace_span > 0:
            raise ValueError(f"trace_span must be a positive distance in metres, got {trace_span}")
        self.trace_span = trace_span  # metres of the path ahead a trace covers (None: the rest of the episode)

        table = read_frames(self.root, self.episodes)
        n = table.num_rows
        missing = [c for c in ("action", "observation.state", "episode_index", "frame_index", "task_index", "index")
                   if c not in table.column_names]
        if missing:
            raise DatasetError(f"{self.root} has no {', '.join(missing)} column(s); reasonact reads the action, "
                               "the observation.state and LeRobot's index columns")
        columns = view_columns(self.info)
        if not columns:
            raise DatasetError(f"{self.root} holds no camera images (no feature of dtype image)")
        if views:
            columns = _select_views(columns, views, self.root)
            self.info["camera"] = ",".join(columns)  # a policy trained on them renders only these
        self.views: list[str] = list(columns)  # the first holds the trace
        self.resolution = self._resolution(columns)
        self.info.setdefault("camera", ",".join(self.views))
        self.info.setdefault("env", "lerobot")  # written by LeRobot: no simulator reasonact knows
        self.actions = _fixed(table, "action", (-1,))
        self.states = _fixed(table, "observation.state", (-1,))
        self.info.setdefault("action_dim", self.actions.shape[1])
        self.info.setdefault("state_dim", self.states.shape[1])
        has = lambda c: c in table.column_names  # noqa: E731
        self.cameras = {v: (_fixed(table, K, (3, 3)), _fixed(table, E, (4, 4)))
                        for v, (_, K, E) in columns.items() if has(K) and has(E)}
        self.intrinsics, self.extrinsics = self.cameras.get(self.views[0], (None, None))
        self.ee_pos = _fixed(table, "observation.ee_pos", (3,)) if has("observation.ee_pos") else None
        # World positions of the task's objects (object, goal; ``observation.points``), where collected.
        self.points_world = _fixed(table, "observation.points", (-1, 3)) if has("observation.points") else None
        self.privileged = (_fixed(table, "observation.privileged", (-1,)) if n and has("observation.privileged")
                           else np.zeros((n, 0), np.float32))
        self.episode_index = table["episode_index"].to_numpy()
        self.frame_index = table["frame_index"].to_numpy()
        self.task_index = table["task_index"].to_numpy()
        self._images = {v: _image_bytes(table[image]) for v, (image, _, _) in columns.items()}
        self._depths = _depths(table) if has("observation.depth") else None
        self.stats = _stats(read_stats(self.root), self.actions, self.states)

        # Per-frame episode bounds [start, end) in global frame indices.
        row_of_episode = {e["episode_index"]: i for i, e in enumerate(self.episodes)}
        rows = np.array([row_of_episode[int(e)] for e in self.episode_index], dtype=np.int64) if n else np.zeros(0, np.int64)
        starts = np.array([e["first_index"] for e in self.episodes], dtype=np.int64)
        lengths = np.array([e["length"] for e in self.episodes], dtype=np.int64)
        self.episode_row = rows
        self.episode_start = starts[rows] if n else rows
        self.episode_end = (starts + lengths)[rows] if n else rows
        # Frames of random-path and donor-path episodes (``collect --expert path|donor``): where they go is
        # known only from the trace, so they are trained with the trace given, never asked to predict it.
        path_episode = np.array([e["expert"] != "task" for e in self.episodes], bool)
        self.path_frames = path_episode[rows] if n else np.zeros(0, bool)
        # Traces need where the hand is and the first view's camera; a dataset without them trains actions only.
        located = self.ee_pos is not None and self.intrinsics is not None
        traces = self._compute_traces() if located else None
        # (N, P, 2) pixels of the first view, and each point's depth along its optical axis (N, P) in metres
        self.traces, self.trace_depths = (None, None) if traces is None else (traces[..., :2], traces[..., 2])
        self.points = None if self.points_world is None or not located else self._project(self.points_world)
        self._rationales: list[str | None] | None = None
        try:
            self._rationales = read_rationales(self.root, n)
        except DatasetError:  # incomplete annotation: ``rationales()`` says so when they are needed
            pass

    def _resolution(self, columns: dict) -> int:
        if "resolution" in self.info:
            return int(self.info["resolution"])
        shape = self.info["features"][columns[self.views[0]][0]]["shape"]  # (height, width, channels)
        if shape[0] != shape[1]:
            raise DatasetError(f"{self.root}'s images are {shape[1]}x{shape[0]}; reasonact trains on square images "
                               "(crop or pad them to a square)")
        return int(shape[0])

    # -- access ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.actions)

    def __getitem__(self, i: int) -> dict[str, Any]:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"frame {i} out of range for a dataset of {n} frames")
        i = int(i) % n
        task = self.tasks[int(self.task_index[i])]
        images = {v: self.image(i, v) for v in self.views}
        located = {"ee_pos": self.ee_pos, "camera_intrinsics": self.intrinsics, "camera_extrinsics": self.extrinsics,
                   "trace": self.traces, "trace_depth": self.trace_depths, "points": self.points}
        return {
            "rgb": images[self.views[0]],
            "images": images,
            "cameras": {v: (K[i], E[i]) for v, (K, E) in self.cameras.items()},
            **({"depth": self.depth(i)} if self._depths is not None else {}),
            "state": self.states[i],
            "action": self.actions[i],
            **{k: v[i] for k, v in located.items() if v is not None},
            "instruction": task["instruction"],
            "task": task["task"],
            "task_index": int(self.task_index[i]),
            "episode_index": int(self.episode_index[i]),
            "frame_index": int(self.frame_index[i]),
            "index": i,
            **({"rationale": self._rationales[i]} if self._rationales is not None else {}),
        }

    def image(self, i: int, view: str | None = None) -> np.ndarray:
        """Frame ``i`` of a view (the first by default), (H, W, 3) uint8."""
        if view is not None and view not in self._images:
            raise KeyError(f"the dataset has no view {view!r}; its views: {', '.join(self.views)}")
        return decode_png(self._images[view or self.views[0]][i].as_py())

    def depth(self, i: int) -> np.ndarray:
        """Frame ``i``'s depth of the first view, (H, W) float32 metres."""
        if self._depths is None:
            raise DatasetError(f"{self.root} records no depth (observation.depth)")
        if isinstance(self._depths, np.ndarray):
            return self._depths[i].astype(np.float32) * np.float32(DEPTH_SCALE)
        return decode_depth(self._depths[i].as_py())  # reasonact/v1: 16-bit PNG

    def episode_frames(self, episode: int) -> range:
        """Global frame indices of an episode (by its position in ``self.episodes``)."""
        if not 0 <= episode < len(self.episodes):
            raise ValueError(f"episode {episode} is out of range: the dataset has {len(self.episodes)} episodes, "
                             f"numbered 0 to {len(self.episodes) - 1}")
        e = self.episodes[episode]
        return range(e["first_index"], e["first_index"] + e["length"])

    def action_chunks(self, indices: np.ndarray, horizon: int) -> np.ndarray:
        """(B,) frames -> (B, horizon, A) actions from each frame on; the episode's last action repeats."""
        idx = np.asarray(indices)[:, None] + np.arange(horizon)[None]
        idx = np.minimum(idx, self.episode_end[np.asarray(indices)][:, None] - 1)
        return self.actions[idx]

    def rationales(self) -> list[str] | None:
        """One rationale per frame (``reasonact annotate``), or None when the dataset has none; raises when
        the annotation is incomplete."""
        return read_rationales(self.root, len(self))

    def seeds(self) -> dict[str, list[int]]:
        """Every seed the collection used or tried, per task: evaluation must avoid them all."""
        used = {t: set(v) for t, v in self.info.get("seeds", {}).items()}
        for t, v in self.info.get("failed_seeds", {}).items():
            used.setdefault(t, set()).update(v)
        return {t: sorted(v) for t, v in used.items()}

    # -- traces ----------------------------------------------------------------------------------
    def _compute_traces(self) -> np.ndarray:
        n = len(self)
        if n == 0:
            return np.zeros((0, self.trace_points, 3), np.float32)
        return self._project(self._trace_points_world(np.arange(n)), depth=True)

    def _trace_points_world(self, frames: np.ndarray) -> np.ndarray:
        """(B,) frames -> (B, P, 3) the end effector's future positions their traces are drawn through."""
        if self.trace_span is None:
            return self.ee_pos[trace_frame_indices(frames, self.episode_end[frames] - 1, self.trace_points)]
        return paths_ahead(self.ee_pos, self.episode_start, self.episode_end, frames, self.trace_points, self.trace_span)

    def _project(self, pts: np.ndarray, depth: bool = False) -> np.ndarray:
        """(N, P, 3) world points, one set per frame -> (N, P, 2) pixels of each frame's first view (``depth``:
        (N, P, 3), each point's depth along the optical axis in metres appended)."""
        homo = np.concatenate([pts, np.ones(pts.shape[:-1] + (1,), np.float32)], -1)
        cam = np.einsum("nij,npj->npi", self.extrinsics, homo)[..., :3]
        uvw = np.einsum("nij,npj->npi", self.intrinsics, cam)
        px = uvw[..., :2] / np.maximum(uvw[..., 2:3], 1e-6)
        return np.concatenate([px, uvw[..., 2:3]], -1).astype(np.float32) if depth else px.astype(np.float32)

    def trace_depth_range(self, margin: float = 0.05) -> tuple[float, float]:
        """Metres: the depths of every trace point, widened by ``margin`` each way and rounded out to the centimetre."""
        if self.trace_depths is None or not len(self):
            raise DatasetError(f"{self.root} records no end-effector position and camera matrices, which a trace's "
                               "depth is measured from")
        lo, hi = float(self.trace_depths.min()) - margin, float(self.trace_depths.max()) + margin
        return float(np.floor(lo * 100) / 100), float(np.ceil(hi * 100) / 100)

    def trace(self, i: int) -> np.ndarray:
        """Recompute one frame's trace with :func:`reasonact.envs.project` (for checking)."""
        future = self._trace_points_world(np.array([i]))[0]
        return project(future, self.intrinsics[i], self.extrinsics[i]).astype(np.float32)

    def __repr__(self) -> str:
        return (f"ReasonactDataset({str(self.root)!r}, episodes={len(self.episodes)}, frames={len(self)}, "
                f"tasks={self.task_names}, resolution={self.resolution}, views={self.views})")


def load_dataset(path: str | Path, *, trace_points: int = 5, trace_span: float | None = None,
                 views: str | None = None) -> ReasonactDataset:
    """Open a dataset written by ``reasonact collect`` (``views="zoom"``: only those of its cameras, in that order)."""
    return ReasonactDataset(path, trace_points=trace_points, trace_span=trace_span, views=views)


def _select_views(columns: dict, views: str, root: Path) -> dict:
    """The named views' columns in the order named, or a clear error (an unknown view, one named twice)."""
    names = [v.strip() for v in views.split(",")]
    unknown = [v for v in names if v not in columns]
    if unknown or len(set(names)) != len(names) or not all(names):
        raise DatasetError(f"--views {views!r}: {root} holds the views {', '.join(columns)}; name one or more of "
                           "them, comma-separated, each once (the first holds the trace)")
    return {v: columns[v] for v in names}
