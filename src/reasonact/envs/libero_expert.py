"""Scripted LIBERO experts, planned from the task's BDDL goal and driven by privileged simulator state.

A goal such as ``(On akita_black_bowl_1 plate_1)`` or ``(In white_yellow_mug_1 microwave_1_heating_region) (Close
microwave_1)`` becomes a chain of skills -- pick-and-place, open, close, turn on -- each a generator of actions
that reads the scene as it goes (where the object is now, how far the drawer has moved). A skill whose predicate
does not hold when it ends is tried again, a few times. Geometry comes from the objects' collision geoms, so a few
grasp rules serve every object: across its narrow side when that fits between the fingers (at the point and yaw that
keep the open hand clear of its neighbours), by the handle when a tall object is a little too wide (a pot), else by
its rim (on the target's side for a flat one, or wherever the open hand clears the fixtures: an open drawer over a
bowl, which is then slid out before it is lifted). A bowl that a drawer about to be opened would hang over is first
dragged out of its way by the closed fingers inside it. Objects are carried above whatever stands on their way;
several objects for one area stand side by side; a drawer is closed by the fingertips of a tilted hand. A mug goes into a
microwave, whose roof is too low for the hand, by its handle turned outward, the hand's body kept outside.

The controller is a saturated proportional one on LIBERO's delta actions (position and world-frame axis-angle),
with the gripper pointing down at the yaw a grasp asks for, or turned to face a drawer's handle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

FINGER_SPAN = 0.075  # metres: wider than this, an object is taken by its rim
TALL_SPAN = 0.09  # a tall object up to this wide (its bounding box; a handle makes it look wider) is taken by its handle
POS_GAIN = 12.0  # action per metre of error (saturates at 8 cm); twice that to open a drawer, in free space
ROT_GAIN = 3.0  # action per radian of error
RETRIES = 3
# the open hand around the point between the fingertips, in its own frame (along the fingers' closing axis, across
# it, height): the fingers low and narrow, the hand's body above them long
HAND_PARTS = ((0.07, 0.015, -0.015), (0.107, 0.037, 0.05))


@dataclass
class Shape:
    """An object's collision geometry in the world, now: centre, lowest and highest z, horizontal axes."""

    center: np.ndarray  # (3,) middle of the bounding box
    bottom: float
    top: float
    major: np.ndarray  # (2,) unit, the long horizontal axis
    length: float  # extent along ``major``
    width: float  # extent across it

    @property
    def height(self) -> float:
        return self.top - self.bottom


def _rotvec(R: np.ndarray) -> np.ndarray:
    """Axis-angle of a rotation matrix."""
    cos = np.clip((np.trace(R) - 1) / 2, -1.0, 1.0)
    angle = np.arccos(cos)
    if angle < 1e-6:
        return np.zeros(3)
    if np.pi - angle < 1e-4:  # half-turn: the axis from the symmetric part
        axis = np.sqrt(np.maximum((np.diag(R) + 1) / 2, 0))
        k = int(np.argmax(axis))
        axis[k] = axis[k] or 1.0
        for j in range(3):
            if j != k:
                axis[j] = np.copysign(axis[j], R[k, j] + R[j, k])
        return axis / np.linalg.norm(axis) * angle
    w = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    return w / (2 * np.sin(angle)) * angle


def _axis_angle_matrix(axis: np.ndarray, angle: float) -> np.ndarray:
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def _rot_z(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


class LiberoExpert:
    """Acts in a :class:`reasonact.envs.libero.LiberoEnv` towards its BDDL goal; ``act()`` once per step."""

    def __init__(self, env):
        self.env = env
        self.scene = env.scene
        self.model = env.sim.model._model
        self.data = env.sim.data._data
        self.home_rot = env.eef_rot()
        self.home_pos = env.eef_pos()
        self.grip = -1.0
        self.gain = POS_GAIN
        self.tries: dict[str, int] = {}
        self.relation: dict[tuple[str, str], str] = {}  # (object, target) -> "on" or "in", from the goal
        self.plan = plan(env.goal, self)
        first = self.plan[0]
        self._focus = (first[1], first[2]) if first[0] in ("pick_place", "insert") else (first[1], first[1])
        self._actions = self._run()

    # -- the plan -------------------------------------------------------------------------------
    def act(self) -> np.ndarray:
        return next(self._actions).astype(np.float32)

    def focus(self) -> tuple[str, str]:
        return self._focus

    def _run(self) -> Iterator[np.ndarray]:
        for kind, a, b, predicate in self.plan:
            self._focus = (a, b) if kind in ("pick_place", "insert") else (a, a)
            for _ in range(1 + RETRIES):
                if predicate is not None and self.env.holds(predicate):
                    break
                yield from SKILLS[kind](self, a, b)
        while True:
            yield self._hold()

    # -- geometry -------------------------------------------------------------------------------
    def _bodies(self, root: int) -> list[int]:
        parent = self.model.body_parentid
        out = []
        for b in range(self.model.nbody):
            x = b
            while x not in (0, root):
                x = parent[x]
            if x == root:
                out.append(b)
        return out

    def geoms(self, body: int, colliding: bool = True) -> list[int]:
        """The group-0 geoms of a body and its children; with ``colliding``, only those that take part in contacts."""
        m = self.model
        bodies = set(self._bodies(body))
        return [g for g in range(m.ngeom) if int(m.geom_bodyid[g]) in bodies and m.geom_group[g] == 0
                and (not colliding or m.geom_contype[g] or m.geom_conaffinity[g])]

    def boxes(self, body: int) -> list[np.ndarray]:
        """(8, 3) world corners of the bounding box of each of a body's (and its children's) collision geoms, now."""
        m, d = self.model, self.data
        signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)
        return [(m.geom_aabb[g, :3] + signs * m.geom_aabb[g, 3:]) @ d.geom_xmat[g].reshape(3, 3).T + d.geom_xpos[g]
                for g in self.geoms(body)]

    def points(self, body: int) -> np.ndarray:
        """(N, 3) world corners of the bounding boxes of a body's (and its children's) collision geoms, now."""
        out = self.boxes(body)
        return np.concatenate(out) if out else np.array(self.data.xpos[body])[None]

    def core(self, name: str) -> np.ndarray:
        """World centre of an object's largest collision geom (a pot's body, not its handle)."""
        m, d = self.model, self.data
        geoms = self.geoms(self.scene.obj_body_id[name], colliding=False)
        return np.array(d.geom_xpos[max(geoms, key=lambda g: float(np.prod(m.geom_aabb[g, 3:])))])

    def handle(self, name: str, axis: np.ndarray) -> np.ndarray:
        """World centre of the collision geom of an object furthest from its largest one along ``axis`` (a handle)."""
        d = self.data
        geoms = self.geoms(self.scene.obj_body_id[name], colliding=False)
        core = self.core(name)
        far = max(geoms, key=lambda g: abs(float((d.geom_xpos[g] - core)[:2] @ axis)))
        return np.array(d.geom_xpos[far])

    def shape(self, name: str | int) -> Shape:
        """Bounding geometry of an object or fixture (by name) or of a body and its children (by id)."""
        pts = self.points(self.scene.obj_body_id[name] if isinstance(name, str) else int(name))
        lo, hi = pts.min(0), pts.max(0)
        xy = pts[:, :2] - pts[:, :2].mean(0)
        _, vecs = np.linalg.eigh(xy.T @ xy)
        major = vecs[:, 1]
        along, across = xy @ major, xy @ vecs[:, 0]
        center = np.array([*(pts[:, :2].mean(0) + major * (along.max() + along.min()) / 2
                             + vecs[:, 0] * (across.max() + across.min()) / 2), (lo[2] + hi[2]) / 2])
        return Shape(center, float(lo[2]), float(hi[2]), major, float(np.ptp(along)), float(np.ptp(across)))

    def finger_axis(self) -> np.ndarray:
        """Unit horizontal direction along which the fingers close, now."""
        m, d = self.model, self.data
        v = d.xpos[m.body("gripper0_leftfinger").id] - d.xpos[m.body("gripper0_rightfinger").id]
        v = v[:2]
        return v / (np.linalg.norm(v) + 1e-9)

    def yaw_for(self, direction: np.ndarray) -> float:
        """The yaw (about world z, from the home pose) that makes the fingers close along ``direction``; of the two
        that do, the one nearer home."""
        home_axis = self._home_finger_axis
        base = np.arctan2(direction[1], direction[0]) - np.arctan2(home_axis[1], home_axis[0])
        base = (base + np.pi / 2) % np.pi - np.pi / 2
        return float(base)

    @property
    def _home_finger_axis(self) -> np.ndarray:
        if not hasattr(self, "_hfa"):
            R_now = self.env.eef_rot()
            yaw_now = _rotvec(R_now @ self.home_rot.T)[2]
            a = self.finger_axis()
            c, s = np.cos(-yaw_now), np.sin(-yaw_now)
            self._hfa = np.array([c * a[0] - s * a[1], s * a[0] + c * a[1]])
        return self._hfa

    # -- motion ---------------------------------------------------------------------------------
    def _action(self, pos: np.ndarray, yaw: float, grip: float, R: np.ndarray | None = None) -> np.ndarray:
        """Towards ``pos`` with the hand at orientation ``R`` (default: pointing down, turned by ``yaw``)."""
        a = np.zeros(7)
        a[:3] = np.clip((pos - self.env.eef_pos()) * self.gain, -1, 1)
        a[3:6] = np.clip(self._rot_error(yaw, R) * ROT_GAIN, -1, 1)
        a[6] = grip
        return a

    def _rot_error(self, yaw: float, R: np.ndarray | None = None) -> np.ndarray:
        R_des = _rot_z(yaw) @ self.home_rot if R is None else R
        return _rotvec(R_des @ self.env.eef_rot().T)

    def facing(self, direction: np.ndarray, across: bool = False, tilt: float = np.pi / 2) -> np.ndarray:
        """The hand turned from pointing down by ``tilt`` (a quarter turn: horizontal) towards ``direction``, its
        fingers closing in the plane of the turn (to pinch a horizontal bar) or, ``across``, across it (the hand's
        long side then stays level: to push with the fingertips)."""
        direction = np.array([direction[0], direction[1], 0.0]) / (np.linalg.norm(direction[:2]) + 1e-9)
        down = np.array([0.0, 0.0, -1.0])
        h = np.cross(down, direction)
        h /= np.linalg.norm(h)
        base = _rot_z(self.yaw_for((h if across else direction)[:2])) @ self.home_rot
        for angle in (tilt, -tilt):
            R = _axis_angle_matrix(h, angle)
            if R @ down @ direction > 0.9 * np.sin(tilt):
                return R @ base
        raise AssertionError("no tilt points the hand along the direction")  # pragma: no cover

    def _hold(self) -> np.ndarray:
        a = np.zeros(7)
        a[6] = self.grip
        return a

    def move(self, pos, yaw: float, tol: float = 0.01, max_steps: int = 120, track=None,
             R: np.ndarray | None = None) -> Iterator[np.ndarray]:
        """Go to ``pos`` (or, each step, to ``track()``) with the hand at ``yaw`` (or orientation ``R``); ends within
        ``tol`` metres and 0.15 rad."""
        pos = np.asarray(pos, dtype=np.float64)
        trail = []
        for _ in range(max_steps):
            goal = track() if track is not None else pos
            here = self.env.eef_pos()
            if np.linalg.norm(goal - here) < tol and np.linalg.norm(self._rot_error(yaw, R)) < 0.15:
                return
            trail.append(here)
            if len(trail) > 15 and np.linalg.norm(trail[-1] - trail[-11]) < 0.002 \
                    and np.linalg.norm(self._rot_error(yaw, R)) < 0.15:
                return  # blocked: the caller sees where it stopped
            yield self._action(goal, yaw, self.grip, R)

    def gripper(self, value: float, steps: int, yaw: float, pos=None) -> Iterator[np.ndarray]:
        self.grip = value
        pos = self.env.eef_pos() if pos is None else np.asarray(pos)
        for _ in range(steps):
            yield self._action(pos, yaw, value)

    def yaw_now(self) -> float:
        return float(_rotvec(self.env.eef_rot() @ self.home_rot.T)[2])


# ---------------------------------------------------------------------------------------------
# skills


def _grasp(ex: LiberoExpert, obj: str, toward: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Where the end effector closes on ``obj`` and at what yaw. A wide object is taken by its rim on the side
    facing the robot (or facing ``toward``, for flat ones: the hand then never reaches across them)."""
    s = ex.shape(obj)
    minor = np.array([-s.major[1], s.major[0]])
    tall = FINGER_SPAN < s.width <= TALL_SPAN and s.height > 0.08  # a pot with a handle: by the handle
    if s.width <= FINGER_SPAN or tall:  # across the narrow side, from above, its upper half
        if tall:  # by the handle: the part furthest from the body along the long axis, fingers across it
            handle = ex.handle(obj, s.major)
            return handle, ex.yaw_for(minor)
        depth = float(np.clip(s.height * 0.5, 0.01, 0.045))
        return _clear_grasp(ex, obj, s, s.top - depth)
    toward = (ex.home_pos[:2] if toward is None else np.asarray(toward)) - s.center[:2]
    return _rim_grasp(ex, obj, s, toward)


def _rotate(v: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def _rim_grasp(ex: LiberoExpert, obj: str, s: Shape, toward: np.ndarray) -> tuple[np.ndarray, float]:
    """By the rim, fingers closing across its wall: on the side facing ``toward`` and square to the wall, unless
    the open hand would touch what is around (an open drawer above part of a bowl) and another point of the rim (up
    to a quarter turn away) or a slant of up to 34 degrees keeps it clearer."""
    toward = toward / (np.linalg.norm(toward) + 1e-9)
    inset = max(min(s.width, s.length) / 2 - 0.012, 0.0)
    z = s.top - min(0.015, s.height / 2)
    candidates = []
    for turn in np.radians(np.linspace(-90, 90, 13)):
        radial = _rotate(toward, turn)
        point = np.array([*(s.center[:2] + radial * inset), z])
        candidates += [(point, _rotate(radial, slant), abs(turn) + 0.5 * abs(slant))
                       for slant in np.radians((0, -17, 17, -34, 34))]
    return _clearest(ex, obj, candidates, enough=0.005)  # a slanted pinch holds a low, wide rim less well


def _grid(pts: np.ndarray, n: int) -> np.ndarray:
    """(n * n, 2) points evenly over the horizontal bounding box of ``pts``."""
    lo, hi = pts[:, :2].min(0), pts[:, :2].max(0)
    return np.stack(np.meshgrid(np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n)), -1).reshape(-1, 2)


def _footprints(ex: LiberoExpert, obj: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the open hand must keep clear of: every other object, and every part of a fixture (an open drawer above
    a bowl, a cabinet's wall), each as a 7 x 7 grid of points over its horizontal bounding box: ((K, 49, 2) points,
    (K,) tops, (K,) whether it is a fixture's)."""
    boxes = [ex.points(ex.scene.obj_body_id[o]) for o in ex.scene.objects_dict if o != obj]
    movable = len(boxes)
    for fixture in ex.scene.fixtures_dict:
        boxes += ex.boxes(ex.scene.obj_body_id[fixture])
    grids = np.array([_grid(pts, 7) for pts in boxes]).reshape(-1, 49, 2)
    tops = np.array([float(pts[:, 2].max()) for pts in boxes])
    return grids, tops, np.arange(len(boxes)) >= movable


def _clearance(footprints: tuple[np.ndarray, np.ndarray, np.ndarray], point: np.ndarray, axis: np.ndarray) -> float:
    """Horizontal distance from the open hand, fingertips at ``point`` closing along ``axis``, to the nearest of the
    things around (:func:`_footprints`) that reaches up to the part of the hand at that distance (capped at 5 cm);
    negative, how far the deepest of them reaches into the hand's outline. The thin fingers pass beside a fixture's
    walls (into a drawer); only its hand's body must keep clear of them."""
    grids, tops, fixture = footprints
    across = np.array([-axis[1], axis[0]])
    rel = grids - point[:2]
    u, v = np.abs(rel @ axis), np.abs(rel @ across)
    best = 0.05
    for i, (half_along, half_across, bottom) in enumerate(HAND_PARTS):
        high = (tops > point[2] + bottom) & (~fixture if i == 0 else True)
        if high.any():  # the signed distance to the part's rectangle
            du, dv = u[high] - half_along, v[high] - half_across
            gap = np.hypot(np.maximum(du, 0), np.maximum(dv, 0)) + np.minimum(np.maximum(du, dv), 0)
            best = min(best, float(gap.min()))
    return best


def _neighbours_top(ex: LiberoExpert, obj: str, xy: np.ndarray, radius: float = 0.13,
                    to: np.ndarray | None = None, fixtures: bool = False) -> float:
    """The highest top of the other objects (and, with ``fixtures``, of the fixtures' parts: an open drawer) within
    ``radius`` of ``xy`` (or of the segment from ``xy`` to ``to``), horizontally; -inf if none: the hand comes down
    onto a grasp, or carries an object, above them."""
    a = np.asarray(xy, dtype=np.float64)[:2]
    b = a if to is None else np.asarray(to, dtype=np.float64)[:2]
    boxes = [ex.points(ex.scene.obj_body_id[o]) for o in ex.scene.objects_dict if o != obj]
    if fixtures:  # a part's corners may all be far from a path that crosses it: a grid over its footprint
        for f in ex.scene.fixtures_dict:
            for box in ex.boxes(ex.scene.obj_body_id[f]):
                grid = _grid(box, 5)
                boxes.append(np.column_stack([grid, np.full(len(grid), box[:, 2].max())]))
    tops = [-np.inf]
    for pts in boxes:
        t = np.clip((pts[:, :2] - a) @ (b - a) / max(float((b - a) @ (b - a)), 1e-9), 0.0, 1.0)
        if np.linalg.norm(pts[:, :2] - (a + t[:, None] * (b - a)), axis=1).min() < radius:
            tops.append(float(pts[:, 2].max()))
    return max(tops)


def _clear_grasp(ex: LiberoExpert, obj: str, s: Shape, z: float) -> tuple[np.ndarray, float]:
    """Across the narrow side of ``obj`` at height ``z``: of the points along its long axis and the yaws at which it
    still fits between the fingers, the one that keeps the open hand furthest from its neighbours (the centre,
    square across, unless something is within 2 cm)."""
    minor = np.array([-s.major[1], s.major[0]])
    reach = max(s.length / 2 - 0.02, 0.0)
    fits = [d for d in np.radians(np.linspace(-24, 24, 7))
            if s.width * np.cos(d) + s.length * abs(np.sin(d)) <= FINGER_SPAN - 0.005] or [0.0]
    return _clearest(ex, obj, [(np.array([*(s.center[:2] + s.major * offset), z]), _rotate(minor, d),
                                abs(offset) + 0.05 * abs(d)) for offset in np.linspace(-reach, reach, 5) for d in fits])


def _clearest(ex: LiberoExpert, obj: str, candidates: list, enough: float = 0.02) -> tuple[np.ndarray, float]:
    """Of candidate grasps (the fingertips' point, the axis they close along, a cost), the cheapest that keeps the
    open hand ``enough`` from what is around, or the clearest if none does; as (point, yaw)."""
    footprints = _footprints(ex, obj)
    point, axis, _ = max(candidates, key=lambda c: (min(_clearance(footprints, c[0], c[1]), enough), -c[2]))
    return point, ex.yaw_for(axis)


def _target(ex: LiberoExpert, target: str, relation: str, obj: str = "") -> tuple[np.ndarray, float, float]:
    """(xy of where the object's centre must go, the z its bottom is released at, the z its bottom must clear on the
    way there)."""
    scene = ex.scene
    if target in scene.obj_body_id:  # an object or fixture: on top of it
        s = ex.shape(target)
        return s.center[:2], s.top + 0.01, s.top + 0.01
    site = np.array(ex.data.site_xpos[ex.model.site(target).id])
    region = scene.object_sites_dict.get(target)
    parent = region.parent_name if region is not None else None
    if region is not None and getattr(region, "joints", None):  # inside a drawer: the middle of its open part
        jid, props = _joint(ex, target)
        along = _world_axis(ex, jid) * np.sign(_joint_target(props, "open") - _joint_target(props, "close"))
        front = _panel_front(ex, int(ex.model.jnt_bodyid[jid]), along)
        opened = abs(_qpos(ex, jid) - _joint_target(props, "close"))  # the part out of the cabinet, behind the panel
        xy = front[:2] - along[:2] * max((opened + 0.013) / 2, 0.05)
        floor = ex.shape(int(ex.model.jnt_bodyid[jid])).bottom + 0.01  # let go low: a bowl dropped tilts, and jams
        return xy, floor, ex.shape(parent).top + 0.02
    top = site[2]
    if parent in scene.obj_body_id and relation == "in":  # into a container: over its walls
        top = max(top, ex.shape(parent).top)
    xy, clear = site[:2], top + 0.01
    size = getattr(region, "size", None)
    if size is not None and relation == "on":  # on an area: where the objects already there leave room
        size = np.asarray(size, dtype=np.float64)[:2]
        R = np.array(ex.data.site_xmat[ex.model.site(target).id]).reshape(3, 3)
        mates = sum(t == target and rel == "on" for (_, t), rel in ex.relation.items())
        xy = _side_by_side(ex, obj, site, size, R, mates) if mates > 1 else _free_spot(ex, obj, site, size, R)
        clear = max(clear, _neighbours_top(ex, obj, xy, 0.12) + 0.01)  # over what already stands there
    return xy, top + 0.01, clear


def _side_by_side(ex: LiberoExpert, obj: str, center: np.ndarray, size: np.ndarray, R: np.ndarray, n: int) -> np.ndarray:
    """For ``n`` objects that must all stand on one area (two moka pots on a stove): ``n`` spots in a row across the
    objects' long axis; of them, the one furthest from the other objects (the nearest, when all are free)."""
    major = ex.shape(obj).major
    k = int(np.argmin([abs(R[:2, j] @ major) for j in range(2)]))
    spots = [center[:2] + R[:2, k] * size[k] * f for f in np.linspace(-0.65, 0.65, n)]
    others = [ex.env.position_of(o)[:2] for o in ex.scene.objects_dict if o != obj]
    here = ex.env.position_of(obj)[:2]

    def key(p):
        gap = min([np.linalg.norm(p - q) for q in others] or [1.0])
        return round(min(gap, 0.1), 3), -np.linalg.norm(p - here)
    return max(spots, key=key)


def _free_spot(ex: LiberoExpert, obj: str, center: np.ndarray, size: np.ndarray, R: np.ndarray) -> np.ndarray:
    """A point of a region (``size``: its half-extent in its own frame ``R``) as far as it can be from the other
    movable objects, the centre when nothing is near."""
    others = [ex.env.position_of(o)[:2] for o in ex.scene.objects_dict if o != obj]
    best, best_score = center[:2], -1.0
    for fx in np.linspace(-0.3, 0.3, 5):
        for fy in np.linspace(-0.3, 0.3, 5):
            p = center[:2] + (R[:2, :2] @ (np.array([fx, fy]) * size))
            gap = min([np.linalg.norm(p - q) for q in others] or [1.0])
            score = min(gap, 0.09) - 0.1 * np.linalg.norm(p - center[:2])  # room first, then near the centre
            if score > best_score:
                best, best_score = p, score
    return best


def _way_out(ex: LiberoExpert, obj: str, margin: float = 0.015, coming: list | None = None,
             gap: float | None = None) -> np.ndarray | None:
    """The shortest level shift (of eight directions) that takes ``obj`` ``margin`` from under any fixture part that
    overhangs it (an open drawer) -- or from the way of ``coming`` parts ((8, 3) corners: a drawer where it will be
    once open) -- without pushing it within ``gap`` (default: ``margin``) of anything standing beside it; None when
    nothing is in the way."""
    gap = margin if gap is None else gap
    pts = ex.points(ex.scene.obj_body_id[obj])
    lo, hi, top, bottom = pts[:, :2].min(0), pts[:, :2].max(0), pts[:, 2].max(), pts[:, 2].min()
    above, beside = [], []
    for fixture in ex.scene.fixtures_dict:
        for box in ex.boxes(ex.scene.obj_body_id[fixture]):
            (blo, bhi) = box[:, :2].min(0), box[:, :2].max(0)
            if box[:, 2].min() > top and coming is None:
                above.append((blo, bhi))
            elif box[:, 2].max() > bottom + 0.02:
                beside.append((blo, bhi))
    above += [(box[:, :2].min(0), box[:, :2].max(0)) for box in coming or [] if box[:, 2].max() > bottom + 0.005]
    beside += [(p[:, :2].min(0), p[:, :2].max(0)) for p in (ex.points(ex.scene.obj_body_id[o])
                                                           for o in ex.scene.objects_dict if o != obj)
               if p[:, 2].max() > bottom + 0.02]

    def overlaps(shift, boxes, margin=margin):
        return any(np.all(lo + shift < bhi + margin) and np.all(blo - margin < hi + shift) for blo, bhi in boxes)

    if not overlaps(np.zeros(2), above):
        return None
    best = None
    for angle in np.radians(np.arange(0, 360, 45)):
        u = np.array([np.cos(angle), np.sin(angle)])
        for dist in np.arange(0.01, 0.16, 0.01):
            if not overlaps(u * dist, above):
                if not overlaps(u * dist, beside, gap) and (best is None or dist < np.linalg.norm(best)):
                    best = u * dist
                break
    return best


def pick_place(ex: LiberoExpert, obj: str, target: str) -> Iterator[np.ndarray]:
    relation = ex.relation.get((obj, target), "on")
    s = ex.shape(obj)
    xy, release_bottom, clear = _target(ex, target, relation, obj)
    grasp, yaw = _grasp(ex, obj, toward=xy if s.height < 0.035 else None)
    tries = ex.tries[obj] = ex.tries.get(obj, -1) + 1
    if tries % 2 and s.width <= FINGER_SPAN:  # blocked last time: the other way round, if it fits
        yaw = yaw + np.pi / 2 if s.length <= FINGER_SPAN else yaw
    above = np.array([*grasp[:2], max(grasp[2] + 0.10, _neighbours_top(ex, obj, grasp[:2]) + 0.03)])
    yield from ex.gripper(-1.0, 4, ex.yaw_now())
    if np.linalg.norm(ex._rot_error(ex.yaw_now())) > 0.3:  # still turned to a drawer's handle: straightened first
        yield from ex.move(ex.env.eef_pos(), ex.yaw_now(), tol=0.02, max_steps=30)
    travel = _neighbours_top(ex, obj, ex.env.eef_pos(), 0.06, to=grasp, fixtures=True) + 0.03
    if travel > above[2]:  # an open drawer on the way: over it
        yield from ex.move([*ex.env.eef_pos()[:2], max(travel, ex.env.eef_pos()[2])], ex.yaw_now(), tol=0.02,
                           max_steps=30)
        yield from ex.move([*grasp[:2], travel], yaw, tol=0.015)
    yield from ex.move(above, yaw, tol=0.015)
    yield from ex.move(grasp, yaw, tol=0.006, max_steps=60)
    if ex.env.eef_pos()[2] > grasp[2] + 0.015:  # stopped on top of something: up, and let the plan retry
        yield from ex.move(above, yaw, tol=0.02, max_steps=30)
        return
    yield from ex.gripper(1.0, 12, yaw, pos=grasp)
    hang = grasp[2] - s.bottom  # how far the object reaches below the fingers
    reach = max(s.length, s.width) / 2 + 0.03  # the carried object's reach around the hand, and a margin
    carry = max(grasp[2] + 0.12, release_bottom + hang + 0.08, clear + hang + 0.04,
                _neighbours_top(ex, obj, grasp[:2], reach, to=xy) + hang + 0.03)  # over what stands in the way
    lifted_from = ex.env.position_of(obj)[2]
    out = _way_out(ex, obj)
    if out is not None:  # under an open drawer: slide it out first, barely lifted
        yield from ex.move(ex.env.eef_pos() + np.array([*out, 0.015]), yaw, tol=0.01, max_steps=40)
    yield from ex.move([*ex.env.eef_pos()[:2], carry], yaw, tol=0.02, max_steps=60)
    if ex.env.position_of(obj)[2] < lifted_from + 0.03:  # missed it: let go, go up, and let the plan retry
        yield from ex.gripper(-1.0, 6, yaw)
        return

    def over_target(z):  # keep the object's centre, not the hand, over the target
        def track():
            offset = ex.shape(obj).center[:2] - ex.env.eef_pos()[:2]  # the middle of its geometry: a held bowl tilts
            if np.linalg.norm(offset) > 0.15:  # dropped on the way
                return ex.env.eef_pos()
            return np.array([*(xy - offset), z])
        return track

    yield from ex.move(None, yaw, tol=0.01, max_steps=150, track=over_target(carry))
    release = release_bottom + hang + 0.01
    yield from ex.move(None, yaw, tol=0.008, max_steps=80, track=over_target(release))
    yield from ex.gripper(-1.0, 10, yaw)
    yield from ex.move(ex.env.eef_pos() + np.array([0, 0, 0.10]), yaw, tol=0.02, max_steps=40)


def _opening(ex: LiberoExpert, target: str) -> tuple[np.ndarray, float, float] | None:
    """For a region under a roof (a microwave's inside): the horizontal unit direction out of its open side, how far
    along it the roof's front edge is, and the height of its floor; None for a region open from above or a drawer."""
    m = ex.model
    region = ex.scene.object_sites_dict.get(target)
    parent = getattr(region, "parent_name", None)
    if parent not in ex.scene.obj_body_id or getattr(region, "joints", None):
        return None
    site = np.array(ex.data.site_xpos[m.site(target).id])
    moving = {b for j in ex.scene.get_object(parent).joints for b in ex._bodies(int(m.jnt_bodyid[m.joint(j).id]))}
    root = ex.scene.obj_body_id[parent]
    bodies = [int(m.geom_bodyid[g]) for g in ex.geoms(root)]  # each box's body, in the same order
    boxes = [(b.min(0), b.max(0)) for b, body in zip(ex.boxes(root), bodies) if body not in moving]  # not the door
    over = [(lo, hi) for lo, hi in boxes if np.all(lo[:2] <= site[:2]) and np.all(site[:2] <= hi[:2])]
    if not any(site[2] < lo[2] < site[2] + 0.25 for lo, _ in over):
        return None
    floor = max([hi[2] for _, hi in over if hi[2] <= site[2]] or [site[2]])
    for d in (np.array([1.0, 0, 0]), np.array([-1.0, 0, 0]), np.array([0, 1.0, 0]), np.array([0, -1.0, 0])):
        ray = site + np.outer(np.linspace(0, 0.4, 41), d)
        if not any(np.all((ray >= lo) & (ray <= hi), axis=1).any() for lo, hi in boxes):
            return d, max(max(float(lo @ d), float(hi @ d)) for lo, hi in over), float(floor)
    return None


def _cup_handle(ex: LiberoExpert, name: str) -> tuple[np.ndarray, np.ndarray, float]:
    """A mug's handle: the centre of its collision geom furthest from the middle of them all (a mug's wall is a ring
    of small boxes), the unit horizontal direction out to it, and how far out it is."""
    geoms = ex.geoms(ex.scene.obj_body_id[name], colliding=False)
    xy = np.array(ex.data.geom_xpos[geoms])[:, :2]
    middle = np.median(xy, 0)
    far = int(np.argmax(np.linalg.norm(xy - middle, axis=1)))
    out = xy[far] - middle
    return np.array(ex.data.geom_xpos[geoms[far]]), out / np.linalg.norm(out), float(np.linalg.norm(out))


def insert(ex: LiberoExpert, obj: str, target: str) -> Iterator[np.ndarray]:
    """Into a region under a roof too low for the hand pointing down (a mug into a microwave): taken by its handle,
    turned so that the handle points out of the opening, carried in just over the floor with the hand's body outside
    the roof's front edge, let go, and pushed the last centimetres in by the closed fingers."""
    d, face, floor = _opening(ex, target)
    s = ex.shape(obj)
    handle, out, reach = _cup_handle(ex, obj)
    turn = float(np.arctan2(out[0] * d[1] - out[1] * d[0], out @ d[:2]))  # the handle's direction -> the opening's
    base = ex.yaw_for(np.array([-out[1], out[0]]))  # fingers across the handle; of the two ways, the one whose turn
    yaw = min((base + k * np.pi for k in (-1, 0, 1)), key=lambda y: max(abs(y), abs(y + turn)))  # ends nearer home
    grasp = np.array([handle[0], handle[1], s.bottom + 0.55 * s.height])
    hang = grasp[2] - s.bottom
    above = max(grasp[2] + 0.10, _neighbours_top(ex, obj, grasp[:2]) + 0.03)
    yield from ex.gripper(-1.0, 4, ex.yaw_now())
    yield from ex.move([*grasp[:2], max(above, ex.env.eef_pos()[2])], yaw, tol=0.015)  # turned a quarter, high up
    yield from ex.move(grasp, yaw, tol=0.006, max_steps=60)
    yield from ex.gripper(1.0, 12, yaw, pos=grasp)
    lifted_from = ex.env.position_of(obj)[2]
    site = np.array(ex.data.site_xpos[ex.model.site(target).id])
    across = site[:2] - d[:2] * (site[:2] @ d[:2])  # the region's middle across the opening
    door = across + d[:2] * (face + HAND_PARTS[1][1] + 0.008)  # the hand's body just outside the roof's edge
    porch = door + d[:2] * 0.12
    carry = max(floor + hang + 0.03, grasp[2] + 0.06,
                _neighbours_top(ex, obj, grasp[:2], reach + 0.05, to=porch) + hang + 0.03)
    yield from ex.move([*ex.env.eef_pos()[:2], carry], yaw, tol=0.02, max_steps=40)
    if ex.env.position_of(obj)[2] < lifted_from + 0.02:  # missed it: let go, go up, and let the plan retry
        yield from ex.gripper(-1.0, 6, yaw)
        yield from ex.move(ex.env.eef_pos() + np.array([0, 0, 0.08]), yaw, tol=0.02, max_steps=30)
        return
    low = floor + hang + 0.012  # a mug held by its handle tilts: in as low as it goes, under the roof's edge
    yield from ex.move([*porch, carry], yaw + turn, tol=0.02, max_steps=100)
    yield from ex.move([*porch, low], yaw + turn, tol=0.01, max_steps=40)
    yield from ex.move([*door, low], yaw + turn, tol=0.008, max_steps=60)
    yield from ex.gripper(-1.0, 8, yaw + turn)
    # the handle still sticks out: pushed a little further in by the closed fingers, the hand's body still outside
    yield from ex.move([*(door + d[:2] * 0.03), low], yaw + turn, tol=0.008, max_steps=20)
    yield from ex.gripper(1.0, 8, yaw + turn)
    yield from ex.move([*(door - d[:2] * 0.004), low], yaw + turn, tol=0.006, max_steps=30)
    yield from ex.move([*porch, floor + hang + 0.05], yaw + turn, tol=0.02, max_steps=40)


def _joint(ex: LiberoExpert, name: str) -> tuple[int, dict]:
    """The joint that a region (a drawer's inside) or an articulated object moves on, and its open/close/turn-on
    ranges."""
    scene = ex.scene
    site = scene.object_sites_dict.get(name)
    if site is not None and getattr(site, "joints", None):
        joint, owner = site.joints[0], site.parent_name
    else:
        joint, owner = scene.get_object(name).joints[0], name
    return ex.model.joint(joint).id, scene.get_object(owner).object_properties["articulation"]


def _joint_target(props: dict, kind: str) -> float:
    """A joint position safely inside the range that makes ``kind`` (open, close, turnon) hold."""
    lo, hi = sorted(props[{"open": "default_open_ranges", "close": "default_close_ranges",
                           "turnon": "default_turnon_ranges"}[kind]])
    if kind == "turnon":
        return lo + 0.4 * (hi - lo)
    if kind == "close":  # closed means at the very end of the travel: aim just past the range's far edge
        return hi + 0.004 if abs(hi) >= abs(lo) else lo - 0.004
    return (lo + hi) / 2


def _world_axis(ex: LiberoExpert, jid: int) -> np.ndarray:
    return ex.data.xmat[ex.model.jnt_bodyid[jid]].reshape(3, 3) @ ex.model.jnt_axis[jid]


def _qpos(ex: LiberoExpert, jid: int) -> float:
    return float(ex.data.qpos[ex.model.jnt_qposadr[jid]])


def _panel_front(ex: LiberoExpert, body: int, along: np.ndarray) -> np.ndarray:
    """The middle of a drawer's front panel, its handle left out: the face furthest along ``along`` of the geoms
    that span most of the drawer's width."""
    boxes = ex.boxes(body)
    across = np.array([-along[1], along[0], 0.0])
    spans = np.array([np.ptp(b @ across) for b in boxes])
    big = [b for b, w in zip(boxes, spans) if w >= 0.6 * spans.max()]
    reach = max(float((b @ along).max()) for b in big)
    pts = np.concatenate(big)
    centre = pts.mean(0)
    return centre + along * (reach - centre @ along)


def _leading_point(ex: LiberoExpert, body: int, direction: np.ndarray) -> np.ndarray:
    """Centre of a body's collision geometry on its face furthest along ``direction`` (a drawer's handle)."""
    pts = ex.points(body)
    proj = pts @ direction
    return pts[proj >= proj.max() - 0.012].mean(0)


def _clear_way(ex: LiberoExpert, jid: int, props: dict) -> Iterator[np.ndarray]:
    """Before a drawer is pulled open: each object with a hollow (a bowl) that the open drawer would hang over, or
    run into, is dragged out of its way by the closed fingers inside it, pushing its far wall; the hand is then
    free to take it by its rim, from above, once the drawer is open."""
    q = _qpos(ex, jid)
    far = max(props["default_open_ranges"], key=lambda x: abs(x - q))  # the most the drawer may travel
    shift = _world_axis(ex, jid) * (far - q + np.sign(far - q) * 0.01)
    coming = [box + shift for box in ex.boxes(int(ex.model.jnt_bodyid[jid]))]
    for obj in dict.fromkeys(o for o, _ in ex.relation):  # the objects the plan picks up
        s = ex.shape(obj)
        if s.width <= FINGER_SPAN or s.height > 0.08:  # no hollow for the fingers to push from inside
            continue
        out = _way_out(ex, obj, margin=0.02, coming=coming, gap=0.008)
        if out is None:
            continue
        u = out / np.linalg.norm(out)
        start = np.array([*(s.center[:2] + u * 0.01), s.bottom + 0.025])
        footprints = _footprints(ex, obj)  # the closed fingers push either way round: the hand turned clearest
        axis = max((_rotate(u, a) for a in np.radians(np.arange(0, 180, 22.5))),
                   key=lambda a: _clearance(footprints, start, a))
        yaw = ex.yaw_for(axis)
        travel = _neighbours_top(ex, obj, ex.env.eef_pos(), 0.06, to=start) + 0.03
        ex.grip = 1.0
        yield from ex.move([*start[:2], max(travel, s.top + 0.03)], yaw, tol=0.03, max_steps=40)
        yield from ex.move(start, yaw, tol=0.012, max_steps=40)
        inner = min(s.width, s.length) / 2 - 0.025  # from there to the inside of the far wall
        yield from ex.move(start + np.array([*(u * (inner + np.linalg.norm(out) + 0.01)), 0]), yaw, tol=0.02,
                           max_steps=40)
        ex.grip = -1.0  # opened on the way up, for the drawer's handle
        yield from ex.move(ex.env.eef_pos() + np.array([0, 0, s.height]), yaw, tol=0.025, max_steps=30)


def _approach(ex: LiberoExpert, pos: np.ndarray, yaw: float, clearance: float = 0.08,
              R: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """Up (to clear what is around), across, and down to ``pos``, turning the hand to ``yaw`` (or to ``R``) on the
    way across."""
    high = max(ex.env.eef_pos()[2], pos[2] + clearance)
    yield from ex.move([*ex.env.eef_pos()[:2], high], ex.yaw_now(), tol=0.02, max_steps=40)
    yield from ex.move([pos[0], pos[1], high], yaw, tol=0.015, R=R)
    yield from ex.move(pos, yaw, tol=0.008, max_steps=60, R=R)


def slide(ex: LiberoExpert, name: str, kind: str) -> Iterator[np.ndarray]:
    """Open a drawer by its handle (pinched from above, pulled) or close it (pushed at its front)."""
    if kind == "open":  # nothing held, nothing delicate on the way: briskly
        ex.gain = 2 * POS_GAIN
    try:
        yield from _slide(ex, name, kind)
    finally:
        ex.gain = POS_GAIN


def _slide(ex: LiberoExpert, name: str, kind: str) -> Iterator[np.ndarray]:
    jid, props = _joint(ex, name)
    goal = _joint_target(props, kind)
    axis = _world_axis(ex, jid)
    along = axis * np.sign(goal - _qpos(ex, jid))  # the way the drawer must move
    body = int(ex.model.jnt_bodyid[jid])
    outward = _leading_point(ex, body, along if kind == "open" else -along)
    pull = kind == "open"
    yaw = ex.yaw_for(along[:2])
    if pull:  # the hand turned to face the handle, fingers closing on the bar from above and below
        R = ex.facing(-along)
        bar = outward - along * 0.01
        front = bar + along * 0.10
        yield from ex.gripper(-1.0, 3, ex.yaw_now())
    else:  # the hand lying flat, pointing at the drawer's front: the fingertips push it flush, the hand stays out
        R = ex.facing(along, across=True, tilt=np.radians(55))
        bar = outward + along * 0.005 - np.array([0, 0, 0.015])
        front = bar - along * 0.08
        yield from ex.gripper(1.0, 3, ex.yaw_now())
    if pull:
        yield from _clear_way(ex, jid, props)  # first a bowl the open drawer would hang over
        # turned on the way, the hand reaches 12 cm lower: it travels that far above what stands on its way
        high = _neighbours_top(ex, "", ex.env.eef_pos(), 0.13, to=front) + 0.12
        yield from _approach(ex, front, yaw, clearance=max(0.06, high - front[2]), R=R)
    else:  # it comes from above the drawer it has just filled: turned only once in front of it
        yield from _approach(ex, front + np.array([0, 0, 0.04]), yaw)
        yield from ex.move(front, yaw, tol=0.01, max_steps=80, R=R)
    yield from ex.move(bar, yaw, tol=0.006, max_steps=40, R=R)
    if pull:
        ex.grip = 1.0
        for _ in range(12):
            yield ex._action(bar, yaw, 1.0, R)
    start = np.sign(goal - _qpos(ex, jid))
    held = 0
    for _ in range(120):
        held = held + 1 if ex.env.holds([kind, name]) else 0
        if (goal - _qpos(ex, jid)) * start <= 0 or held >= 5:  # past the goal, or in its range for a while
            break
        remaining = abs(goal - _qpos(ex, jid))
        yield ex._action(ex.env.eef_pos() + along * min(0.06, remaining + 0.02), yaw, ex.grip, R)
    if pull:
        ex.grip = -1.0
        for _ in range(6):
            yield ex._action(ex.env.eef_pos(), yaw, -1.0, R)
        yield from ex.move(ex.env.eef_pos() + along * 0.06 + np.array([0, 0, 0.08]), yaw, tol=0.02, max_steps=40, R=R)
    else:
        yield from ex.move(ex.env.eef_pos() - along * 0.08, yaw, tol=0.02, max_steps=30, R=R)
        yield from ex.move(ex.env.eef_pos() + np.array([0, 0, 0.08]), yaw, tol=0.02, max_steps=40)


def swing(ex: LiberoExpert, name: str, kind: str) -> Iterator[np.ndarray]:
    """Close a hinged door (a microwave's): push its free edge along the arc."""
    jid, props = _joint(ex, name)
    goal = _joint_target(props, kind)
    axis = _world_axis(ex, jid)
    sign = np.sign(goal - _qpos(ex, jid))
    body = int(ex.model.jnt_bodyid[jid])
    anchor = np.array(ex.data.xanchor[jid])

    def edge():  # the door's free edge (furthest from the hinge) at mid-height, and the way it must move there
        pts = ex.points(body)
        radial = (pts - anchor) - np.outer((pts - anchor) @ axis, axis)
        dist = np.linalg.norm(radial, axis=1)
        far = pts[dist >= dist.max() - 0.02].mean(0)
        r = (far - anchor) - axis * ((far - anchor) @ axis)
        tangent = np.cross(axis, r / (np.linalg.norm(r) + 1e-9)) * sign
        return far, tangent

    far, tangent = edge()
    ex.grip = 1.0
    yaw = ex.yaw_now()
    top = float(ex.points(body)[:, 2].max())  # crossing its path, the hand goes over the door: a touch opens it more
    yield from _approach(ex, far - tangent * 0.06, yaw, clearance=max(0.08, top + 0.04 - far[2]))
    for _ in range(150):
        if ex.env.holds([kind, name]):
            break
        far, tangent = edge()
        yield ex._action(far + tangent * 0.10, yaw, ex.grip)
    yield from ex.move(ex.env.eef_pos() - tangent * 0.06, yaw, tol=0.02, max_steps=30)
    yield from ex.move(ex.env.eef_pos() + np.array([0, 0, 0.08]), yaw, tol=0.02, max_steps=30)


def twist(ex: LiberoExpert, name: str, kind: str) -> Iterator[np.ndarray]:
    """Turn a knob (a stove's, on a vertical axis): grasp it from above and turn the hand."""
    jid, props = _joint(ex, name)
    goal = _joint_target(props, kind)
    body = int(ex.model.jnt_bodyid[jid])
    s = ex.shape(body)
    minor = np.array([-s.major[1], s.major[0]])
    yaw = ex.yaw_for(minor)
    top = np.array([s.center[0], s.center[1], s.top - min(0.015, s.height / 2)])
    yield from ex.gripper(-1.0, 3, ex.yaw_now())
    yield from _approach(ex, top, yaw)
    yield from ex.gripper(1.0, 10, yaw, pos=top)
    axis_z = np.sign(_world_axis(ex, jid)[2]) or 1.0
    for _ in range(80):
        if ex.env.holds([kind, name]):
            break
        turn = np.clip((goal - _qpos(ex, jid)) * axis_z, -0.6, 0.6)
        yaw = ex.yaw_now() + turn
        yield ex._action(top, yaw, ex.grip)
    yield from ex.gripper(-1.0, 8, ex.yaw_now())
    yield from ex.move(ex.env.eef_pos() + np.array([0, 0, 0.08]), ex.yaw_now(), tol=0.02, max_steps=30)


def articulate(ex: LiberoExpert, name: str, kind: str) -> Iterator[np.ndarray]:
    jid, _ = _joint(ex, name)
    jtype = int(ex.model.jnt_type[jid])
    if jtype == 2:  # slide
        yield from slide(ex, name, kind)
    elif kind == "turnon":
        yield from twist(ex, name, kind)
    else:
        yield from swing(ex, name, kind)


SKILLS = {"pick_place": pick_place, "insert": insert, "articulate": articulate}
ORDER = {"open": 0, "turnon": 1, "pick_place": 2, "insert": 2, "close": 3}


def plan(goal: list[list[str]], ex: LiberoExpert) -> list[tuple[str, str, str, list[str] | None]]:
    """The skills that reach a BDDL goal, in an order that works: opening first, placing next, closing and
    switching on last. Each entry: (skill, first argument, second argument, the predicate it must make hold)."""
    steps = []
    for g in goal:
        kind = g[0].lower()
        if kind in ("on", "in"):
            ex.relation[(g[1], g[2])] = kind
            site = ex.scene.object_sites_dict.get(g[2])
            if kind == "in" and site is not None and getattr(site, "joints", None) and not ex.env.holds(["open", g[2]]):
                steps.append((ORDER["open"], ("articulate", g[2], "open", ["open", g[2]])))
            skill = "insert" if kind == "in" and _opening(ex, g[2]) is not None else "pick_place"
            steps.append((ORDER[skill], (skill, g[1], g[2], g)))
        elif kind in ("open", "close", "turnon"):
            steps.append((ORDER[kind], ("articulate", g[1], kind, g)))
        else:
            raise ValueError(f"the LIBERO experts have skills for on, in, open, close and turnon; this goal asks for "
                             f"{g[0]!r}")
    return [s for _, s in sorted(steps, key=lambda x: x[0])]
