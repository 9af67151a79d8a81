"""Meta-World (v3 tasks, MuJoCo) behind the :class:`reasonact.envs.base.Env` protocol.

Rendering is offscreen (``MUJOCO_GL=egl`` unless set) through :class:`reasonact.envs.render.ViewRenderer`:
Meta-World's ``corner*`` cameras, which render upside down, come out upright, and the intrinsics/extrinsics
returned describe the image as returned.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

from .base import Observation, check_render_args, parse_views, start_offset  # noqa: E402
from .instructions import METAWORLD_TEXT  # noqa: E402
from .perturb import ScenePerturber, parse_perturb  # noqa: E402
from .render import ViewRenderer  # noqa: E402

MT10 = (
    "reach-v3", "push-v3", "pick-place-v3", "door-open-v3", "drawer-open-v3",
    "drawer-close-v3", "button-press-topdown-v3", "peg-insert-side-v3", "window-open-v3",
    "window-close-v3",
)
MT50 = tuple(METAWORLD_TEXT)
SUITES = {"mt10": MT10, "mt50": MT50}
# Views we set ourselves: (the Meta-World camera whose orientation and field of view they keep, its new
# position). "zoom" is corner2 moved closer, to where 3D Diffusion Policy puts it: at 64 px the push puck is
# ~7.5 px instead of ~2 and the peg ~33 px, with the drawer, door, button box and window still in frame.
CAMERA_POSES = {"zoom": ("corner2", (0.6, 0.295, 0.8))}
CAMERAS = ("corner", "corner2", "corner3", "corner4", "topview", "behindGripper", "gripperPOV", *CAMERA_POSES)
WRIST_CAMERAS = ("behindGripper", "gripperPOV")  # they move with the hand
STATE_MODES = {
    # end-effector xyz, gripper opening, goal xyz: the goal is 1-2 px in the image, so it is given.
    "goal": 7,
    # Meta-World's own 39-d observation (hand, gripper, objects, previous frame, goal): privileged.
    "full": 39,
}
MAX_STEPS = 500
DEFAULT_CAMERA = "corner2"
DEFAULT_STATE_MODE = "goal"
ACTION_SPACE = "metaworld-xyz-delta+gripper"
ROBOT = "sawyer"
FPS = 80  # actions per second: 5 physics steps of 2.5 ms each


def resolve_tasks(suite: str, tasks: str | list[str] | None = None) -> list[str]:
    """The task list for a suite name (``mt10``, ``mt50``) or a single task, optionally narrowed."""
    if suite in SUITES:
        available = list(SUITES[suite])
    elif suite in METAWORLD_TEXT:
        available = [suite]
    else:
        raise ValueError(
            f"unknown suite or task {suite!r}; use one of {sorted(SUITES)} or a task name such as "
            f"'reach-v3' (all tasks: {', '.join(MT50)})"
        )
    if tasks is None or tasks == "" or tasks == []:
        return available
    wanted = [t.strip() for t in tasks.split(",")] if isinstance(tasks, str) else list(tasks)
    unknown = [t for t in wanted if t not in METAWORLD_TEXT]
    if unknown:
        raise ValueError(f"unknown task(s) {', '.join(unknown)}; valid tasks: {', '.join(MT50)}")
    outside = [t for t in wanted if t not in available]
    if outside:
        raise ValueError(f"task(s) {', '.join(outside)} are not in suite {suite!r}: {', '.join(available)}")
    return list(dict.fromkeys(wanted))


def parse_cameras(camera: str | None) -> list[str]:
    """``"zoom,gripperPOV"`` -> the views in order; the first is the third-person view the trace lives in."""
    return parse_views(camera or DEFAULT_CAMERA, CAMERAS, WRIST_CAMERAS, label="", third_person="zoom",
                       hint="zoom: corner2 moved closer; several views: comma-separated, e.g. zoom,gripperPOV")


def validate_render_args(resolution: int, camera: str | None, state_mode: str | None = None) -> None:
    check_render_args(resolution, state_mode or DEFAULT_STATE_MODE, STATE_MODES, "")
    parse_cameras(camera)


def check_policy(info) -> str:
    """Refuse a policy (its :class:`reasonact.interface.PolicyInfo`) that does not fit Meta-World; return
    the state mode its observations must use."""
    if info.env != "metaworld":
        raise ValueError(f"{info.checkpoint} was trained on {info.env!r}, not Meta-World")
    if info.action_dim != MetaWorldEnv.action_dim:
        raise ValueError(f"{info.checkpoint} was trained for a {info.action_dim}-d action space; "
                         f"Meta-World takes {MetaWorldEnv.action_dim}-d actions")
    if info.state_dim != STATE_MODES.get(info.state_mode):
        raise ValueError(f"{info.checkpoint} expects a {info.state_dim}-d state; Meta-World's "
                         f"{info.state_mode!r} state has {STATE_MODES.get(info.state_mode)}")
    return info.state_mode


class MetaWorldEnv:
    """One Meta-World task with one or more offscreen cameras (``camera="zoom,gripperPOV"``). ``obs["images"]``
    and ``obs["cameras"]`` hold every view's image and matrices; ``obs["rgb"]`` and ``camera_intrinsics`` /
    ``camera_extrinsics`` are the first view's.
    Use one instance per process at a time."""

    action_dim = 4

    def __init__(
        self,
        task: str,
        *,
        resolution: int = 128,
        camera: str | None = None,
        state_mode: str | None = None,
        render_depth: bool = True,
        max_steps: int | None = None,
        perturb: str | dict | None = None,
    ):
        resolve_tasks(task)
        camera, state_mode = camera or DEFAULT_CAMERA, state_mode or DEFAULT_STATE_MODE
        perturb = parse_perturb(perturb)
        validate_render_args(resolution, camera, state_mode)
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE

        self.task = task
        self.instruction = METAWORLD_TEXT[task].instruction
        self.resolution = resolution
        self.camera = camera
        self.state_mode = state_mode
        self.state_dim = STATE_MODES[state_mode]
        self.render_depth = render_depth
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            self._env = ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE[f"{task}-goal-observable"]()
        self.max_steps = min(max_steps or self._env.max_path_length, self._env.max_path_length)
        model = self._env.model
        self.views = parse_cameras(camera)
        self._cam_ids = {}
        for view in self.views:
            base, position = CAMERA_POSES.get(view, (view, None))
            self._cam_ids[view] = model.camera(base).id
            if position is not None:  # this environment's own model: other processes keep the original camera
                model.cam_pos[self._cam_ids[view]] = position
        self._render = ViewRenderer(model, self._cam_ids, resolution)
        self.perturb = perturb
        self._perturber = ScenePerturber(model, perturb)
        self._expert = None
        self._home: np.ndarray | None = None  # the task's own hand start, before any start_jitter
        self._raw: np.ndarray | None = None
        self._t = 0

    # -- protocol ---------------------------------------------------------------------------------
    def reset(self, seed: int, *, start_jitter: float = 0.0) -> Observation:
        """A fresh layout from ``seed``; ``start_jitter`` > 0 starts the hand at a random offset (up to that many
        metres in x and y, half of it in z, drawn from the seed) from the task's home position. The environment's
        ``perturb`` (lighting, colours, cameras) is drawn from the seed too."""
        env = self._env
        self._perturber.apply(seed)
        env._freeze_rand_vec = False  # a fresh layout from the seed (reset(seed=...) is ignored)
        env.seeded_rand_vec = True
        env.seed(int(seed))
        if self._home is None:
            self._home = np.array(env.hand_init_pos, dtype=np.float64)
        offset = np.zeros(3)
        if start_jitter > 0:
            offset = start_offset(seed, start_jitter)
        env.hand_init_pos = self._home + offset
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw, _ = env.reset()
        self._raw = raw
        self._t = 0
        return self._observe()

    def step(self, action: np.ndarray) -> tuple[Observation, bool, bool]:
        if self._raw is None:
            raise RuntimeError("call reset(seed) before step()")
        success, done = self._advance(action)
        return self._observe(), success, done

    def _advance(self, action: np.ndarray) -> tuple[bool, bool]:
        """One simulator step, nothing rendered: (success, done)."""
        action = np.clip(np.asarray(action, dtype=np.float64).reshape(-1), -1.0, 1.0)
        if action.shape != (self.action_dim,):
            raise ValueError(f"expected an action of shape ({self.action_dim},), got {action.shape}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw, _, _, truncated, info = self._env.step(action)
        self._raw = raw
        self._t += 1
        success = bool(info["success"])
        return success, success or truncated or self._t >= self.max_steps

    def close(self) -> None:
        self._render.close()
        self._env.close()

    # -- extras -----------------------------------------------------------------------------------
    def expert_action(self) -> np.ndarray:
        """The scripted expert's action for the current state, clipped to the action space."""
        if self._expert is None:
            from metaworld.policies import ENV_POLICY_MAP

            self._expert = ENV_POLICY_MAP[self.task]()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.clip(self._expert.get_action(self._raw), -1.0, 1.0).astype(np.float32)

    def expert_path(self, seed: int, *, start_jitter: float = 0.0) -> tuple[np.ndarray, np.ndarray, bool]:
        """The scripted expert's end-effector path on layout ``seed``, run without rendering: positions (T, 3)
        in world metres, the gripper command at each (T,), and whether it succeeded. Leaves the environment
        on that layout: reset it before the next episode."""
        self.reset(seed, start_jitter=start_jitter)
        ee, grip, success, done = [], [], False, False
        while not done:
            action = self.expert_action()
            ee.append(np.array(self._env.tcp_center, np.float64))
            grip.append(float(action[-1]))
            success, done = self._advance(action)
        ee.append(np.array(self._env.tcp_center, np.float64))
        grip.append(grip[-1])
        return np.array(ee), np.array(grip), success

    @property
    def elapsed_steps(self) -> int:
        return self._t

    def render_segmentation(self, view: str | None = None) -> np.ndarray:
        """(H, W) int32 geom ids (-1 for background) of a view (the first by default), oriented like its image."""
        return self._render.segmentation(self._env.data, view or self.views[0])

    def geom_ids(self, body_names: list[str]) -> list[int]:
        m = self._env.model
        bodies = {m.body(n).id for n in body_names}
        return [g for g in range(m.ngeom) if int(m.geom_bodyid[g]) in bodies]

    # -- internals --------------------------------------------------------------------------------
    def camera_matrices(self, view: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(intrinsics (3, 3), extrinsics (4, 4) world -> camera) of a view (the first by default), now."""
        return self._render.matrices(self._env.data, view or self.views[0])

    def _observe(self) -> Observation:
        raw = self._raw
        obs: Observation = self._render.observe(self._env.data, self.views[0] if self.render_depth else None)
        obs["rgb"] = obs["images"][self.views[0]]
        cameras = obs["cameras"]
        if self.state_mode == "goal":
            state = np.concatenate([raw[0:4], raw[36:39]])
        else:
            state = raw
        K, E = cameras[self.views[0]]
        obs.update(
            state=state.astype(np.float32),
            ee_pos=np.asarray(self._env.tcp_center, dtype=np.float32),
            camera_intrinsics=K,
            camera_extrinsics=E,
            instruction=self.instruction,
            privileged={
                "task": self.task,
                "step": self._t,
                "hand_pos": raw[0:3].astype(np.float32),
                "gripper_open": float(raw[3]),
                "obj_pos": raw[4:7].astype(np.float32),
                "obj_quat": raw[7:11].astype(np.float32),
                "obj2_pos": raw[11:14].astype(np.float32),
                "goal_pos": raw[36:39].astype(np.float32),
                # What the task acts on and where it must go (puck/handle/peg/button; goal/hole), world metres.
                "points": np.stack([raw[4:7], raw[36:39]]).astype(np.float32),
                "full_state": raw.astype(np.float32),
            },
        )
        return obs
