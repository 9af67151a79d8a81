"""Random-path and donor-path demonstrations: the end effector visits random waypoints, or follows another
layout's demonstration, whatever the task's scene shows.

In a task's own demonstrations the trace (where the gripper will go) can be read from the scene, so a
model trained on them has no reason to look at a trace it is given: steered, it ignores the trace and does
the task. In a random-path episode nothing in the image or the state says where the gripper goes next;
only the trace does. Trained with the trace given (``reasonact collect --expert path``, then
``reasonact train --steer-prob P``), these episodes teach a policy to follow a drawn path.

A short-path episode (``collect --expert short``) moves the hand a few centimetres and closes the gap to
each waypoint to a few millimetres: a policy that never saw a gap that small closed leaves the hand where a
given path ends, a centimetre or two short of it.

Random waypoints never go where the tasks' own motions go: down to the table, into a handle, back from
where an object was. A donor-path episode (``collect --expert donor``) follows, in this layout, the scripted
expert's path on another layout (:func:`donor_seed`) with the gripper opening and closing as the expert's
did: the paths a person copies from a demonstration, which the scene of this layout does not explain either.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

# Meta-World's reachable space over the table (world metres), a little inside the mocap limits.
WORKSPACE = (np.array([-0.3, 0.4, 0.08]), np.array([0.3, 0.9, 0.3]))
# The same, from just above the table to over the windows: the heights the tasks' own demonstrations span
# (a puck pushed a centimetre over the table, a button pressed from 35 cm), where a path drawn after a demonstration goes.
FULL_HEIGHTS = (np.array([-0.3, 0.4, 0.02]), np.array([0.3, 0.9, 0.35]))
# whose episodes a dataset holds: the task's scripted expert; random paths, short random paths, or another
# layout's demonstration followed through the task's scene (steering)
EXPERTS = ("task", "path", "short", "donor")
PATH_HEIGHTS = ("hand", "random", "full")  # what `collect --path-heights` takes: see height_range
DONOR_SPACING = 0.025  # metres between the waypoints taken from a donor path (its curves kept to a few mm)
DONOR_GAIN = 25.0  # the controller's gain along a donor path: waypoints that close need a faster approach
# a short random path (`collect --expert short`): one or two legs of 1-4 cm, each waypoint closed to 3 mm
# (at the default gain: at the donor paths' the hand overshoots by up to a centimetre). Longer paths pass a
# waypoint, and stop at their end, 2 cm before it; these show the last centimetres closed.
SHORT_PATHS = {"n": (1, 2), "min_leg": 0.01, "max_leg": 0.04, "tolerance": 0.003}


def donor_seed(seed: int) -> int:
    """The layout whose scripted demonstration a donor-path episode on layout ``seed`` follows: the next one.
    (Any other training layout would do; the steering benchmark's donors come from held-out layouts.)"""
    return int(seed) + 1


def height_range(kind: str) -> dict:
    """:meth:`PathExpert.random`'s keywords for waypoints at the hand's starting height (``"hand"``), at
    random heights inside :data:`WORKSPACE` (``"random"``), or at random heights over the range of the
    tasks' demonstrations, table to windows (``"full"``)."""
    if kind not in PATH_HEIGHTS:
        raise ValueError(f"path heights must be {', '.join(PATH_HEIGHTS[:-1])} or {PATH_HEIGHTS[-1]}, got {kind!r}")
    low, high = FULL_HEIGHTS if kind == "full" else WORKSPACE
    return {"planar": kind == "hand", "low": low, "high": high}


class PathExpert:
    """Moves the end effector through ``waypoints`` with a proportional controller (xyz-delta actions).

    Per step: ``action(ee)``, step the simulator, ``update(ee)``; ``done`` once the last waypoint is
    reached, ``finished`` after ``hold`` more steps there (the hand stays put, so that the data shows what a
    finished path means), ``stuck`` when the arm has not come closer to the next one for ``patience`` steps
    (it ran into the scene: a door, a window frame)."""

    def __init__(self, waypoints: np.ndarray, *, gain: float = 10.0, tolerance: float = 0.02,
                 gripper: float | np.ndarray = -1.0, patience: int = 15, hold: int = 0, settle: bool = False):
        self.waypoints = np.asarray(waypoints, np.float64).reshape(-1, 3)
        if len(self.waypoints) == 0:
            raise ValueError("a path needs at least one waypoint")
        g = np.asarray(gripper, np.float64).reshape(-1)  # one command for the path, or one per waypoint
        if len(g) not in (1, len(self.waypoints)):
            raise ValueError(f"gripper must be one value or one per waypoint ({len(self.waypoints)}), got {len(g)}")
        self.grippers = np.broadcast_to(g, (len(self.waypoints),)).copy()  # held while approaching each waypoint
        if not isinstance(hold, int) or hold < 0:
            raise ValueError(f"hold must be a non-negative number of steps, got {hold!r}")
        self.gain, self.tolerance, self.patience, self.hold, self.settle = gain, tolerance, patience, hold, settle
        self._held = 0  # steps spent at the last waypoint
        self.next = 0  # index of the waypoint being approached
        self._best, self._idle = np.inf, 0  # closest approach to it so far; steps without coming closer

    @classmethod
    def random(cls, seed: int | Sequence[int], start: np.ndarray, *, n: tuple[int, int] = (2, 4),
               min_leg: float = 0.1, max_leg: float | None = None, planar: bool = True,
               low: np.ndarray = WORKSPACE[0], high: np.ndarray = WORKSPACE[1], **kw) -> PathExpert:
        """``n[0]..n[1]`` waypoints drawn uniformly in the workspace, each at least ``min_leg`` metres
        from the one before (the first from ``start``), reproducibly from ``seed`` (an int or ints); with
        ``max_leg``, each a random direction and ``min_leg``..``max_leg`` metres on from the one before instead
        (kept inside the workspace).

        ``planar`` keeps every waypoint at the starting height: a 2D trace then says exactly where to go
        (a point in the image and a height make a point in space), where a path through random heights
        leaves the motion along the camera's rays to chance."""
        rng = np.random.default_rng([*np.atleast_1d(seed).tolist(), 0x9A7])
        points, here = [], np.asarray(start, np.float64)
        low, high = np.array(low, np.float64), np.array(high, np.float64)
        if planar:
            low[2] = high[2] = np.clip(here[2], low[2], high[2])
        for _ in range(int(rng.integers(n[0], n[1] + 1))):
            p = rng.uniform(low, high)
            while max_leg is None and np.linalg.norm(p - here) < min_leg:
                p = rng.uniform(low, high)
            if max_leg is not None:  # a leg of random direction and length, moved back inside if it left
                step = p - here  # (level when planar: the box is)
                p = here + step / np.linalg.norm(step) * rng.uniform(min_leg, max_leg)
                p = np.clip(p, low, high) - (p - np.clip(p, low, high))
            points.append(p)
            here = p
        return cls(np.array(points), **kw)

    @classmethod
    def for_episode(cls, task: str, seed: int, start: np.ndarray, **kw) -> PathExpert:
        """The random path of layout ``seed`` of ``task`` (what ``collect --expert path`` follows)."""
        return cls.random([int(seed), zlib.crc32(task.encode())], start, **kw)

    @classmethod
    def along(cls, path: np.ndarray, grippers: np.ndarray, *, spacing: float = DONOR_SPACING,
              gain: float = DONOR_GAIN, **kw) -> PathExpert:
        """Follow a recorded end-effector path (T, 3) with its gripper commands (T,): waypoints every
        ``spacing`` metres along it (and its end), each with the command given where the path reached it."""
        path = np.asarray(path, np.float64).reshape(-1, 3)
        grippers = np.asarray(grippers, np.float64).reshape(-1)
        if len(path) == 0 or len(grippers) != len(path):
            raise ValueError(f"a recorded path needs one gripper command per point, got {len(path)} points "
                             f"and {len(grippers)} commands")
        along = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))]
        keep = np.unique(np.r_[np.searchsorted(along, np.arange(spacing, along[-1], spacing)), len(path) - 1])
        return cls(path[keep], gripper=grippers[keep], gain=gain, **kw)

    def step_budget(self, start: np.ndarray) -> int:
        """Steps after which an unfinished path counts as failed (the arm is stuck on something): twice
        what the legs take at full speed (1 cm per step) plus the slow approach to each waypoint."""
        legs = np.linalg.norm(np.diff(np.vstack([start, self.waypoints]), axis=0), axis=1)
        return int(2 * (legs.sum() / 0.01 + 20 * len(self.waypoints))) + self.hold

    @property
    def done(self) -> bool:
        return self.next >= len(self.waypoints)

    @property
    def finished(self) -> bool:
        return self.done and self._held >= self.hold

    @property
    def stuck(self) -> bool:
        return self._idle >= self.patience

    def update(self, ee_pos: np.ndarray) -> bool:
        """After a step: pass every waypoint now within reach; True once the last one has been reached and
        held for ``hold`` steps."""
        if self.done:
            self._held += 1
            return self.finished
        while not self.done and np.linalg.norm(self.waypoints[self.next] - ee_pos) < self.tolerance:
            self.next += 1
            self._best, self._idle = np.inf, 0
        if not self.done:
            d = float(np.linalg.norm(self.waypoints[self.next] - ee_pos))
            self._best, self._idle = (d, 0) if d < self._best - 1e-3 else (self._best, self._idle + 1)
        return self.finished

    def action(self, ee_pos: np.ndarray) -> np.ndarray:
        """The action toward the next waypoint from ``ee_pos``; once the path is done, zero motion, or with
        ``settle`` the same controller onto the last waypoint (the last ``tolerance`` closed while held)."""
        target = self.waypoints[min(self.next, len(self.waypoints) - 1)]
        delta = np.zeros(3) if self.done and not self.settle else target - np.asarray(ee_pos, np.float64)
        gripper = self.grippers[min(self.next, len(self.waypoints) - 1)]
        return np.append(np.clip(self.gain * delta, -1.0, 1.0), gripper).astype(np.float32)
