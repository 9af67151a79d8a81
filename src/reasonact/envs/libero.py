"""LIBERO (robosuite 1.4, MuJoCo) behind the :class:`reasonact.envs.base.Env` protocol.

The four suites ``libero_spatial``, ``libero_object``, ``libero_goal`` and ``libero_10`` (ten tasks each) with the
task's own language as the instruction. Layouts: seeds ``EVAL_SEED_BASE + k`` (k < 50) are the suite's 50 standard
init states, the ones every published LIBERO number is measured on (``reasonact eval``'s default seeds); any other
seed is a fresh layout drawn from the task's BDDL placement regions (as LIBERO drew its own), so training data,
collected from seeds below ``EVAL_SEED_BASE``, never holds an evaluation layout. Two faults of LIBERO's samplers are
corrected for drawn layouts: objects in a fixture's region (on the cabinet, in its drawer, on the stove) are put
where the region is, and objects are lowered onto their supports instead of dropped from up to a metre.
After every reset the scene settles for ``SETTLE_STEPS`` no-op steps, as the papers' evaluations do.

Rendering is ours (:class:`reasonact.envs.render.ViewRenderer`, shadows, reflections and collision meshes off,
only the views asked for), not robosuite's: frames come out upright with exact camera matrices. Actions are
LIBERO's 7 numbers in [-1, 1]: end-effector position and axis-angle deltas (at most 5 cm and 0.5 rad a step, in
the world frame) and the gripper (-1 open, +1 closed), at 20 Hz. Set up by ``scripts/setup-libero.sh``.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

from .base import EVAL_SEED_BASE, Observation, check_render_args, parse_views, start_offset  # noqa: E402
from .render import ViewRenderer  # noqa: E402

SUITES = ("libero_spatial", "libero_object", "libero_goal", "libero_10")
# The suites' episode limits in the papers' evaluations (openpi's LIBERO example, MolmoAct, OpenVLA-OFT).
SUITE_MAX_STEPS = {"libero_spatial": 220, "libero_object": 280, "libero_goal": 300, "libero_10": 520}
CAMERAS = ("agentview", "robot0_eye_in_hand", "frontview", "birdview", "sideview")
WRIST_CAMERAS = ("robot0_eye_in_hand",)
DEFAULT_CAMERA = "agentview,robot0_eye_in_hand"
# End-effector xyz, gripper opening, and the end effector's rotation as the first two columns of its matrix
# (continuous, unlike an axis-angle near the downward-pointing pose every task starts from).
STATE_MODES = {"proprio": 10}
DEFAULT_STATE_MODE = "proprio"
STANDARD_INIT_STATES = 50
SETTLE_STEPS = 10
# fast_render's mesh simplification for the fixed cameras (metres): LIBERO's scenes hold ~300,000 visual triangles
# (a bowl 42,522), which a CPU renderer pays for in every frame; at this cell a bowl seen from agentview at 128 px
# looks the same. The wrist camera, which comes within centimetres of the objects, keeps the full meshes.
FAST_RENDER_CELL = 0.005
START_MOVE_STEPS = 60  # at most this many steps to bring the hand to a jittered start (reset's start_jitter)
NOOP = np.array([0, 0, 0, 0, 0, 0, -1], dtype=np.float64)
MAX_STEP_M = 0.05  # the hand's position change an action of 1 asks for (robosuite's OSC_POSE output limit)
ACTION_SPACE = "libero-osc-pose-delta+gripper"
ROBOT = "panda"
FPS = 20  # actions per second (robosuite's control frequency)


# openpi's LIBERO example (examples/libero/main.py) sends robosuite's images turned 180 degrees and an 8-number
# state: the end effector's position, the hand's orientation as an axis-angle, the two finger joints.
OPENPI_STATE_DIM = 8
# The grip site's axes (our state's rotation) in the frame of the hand body (robosuite's robot0_eef_quat).
SITE_IN_HAND = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
# Views whose camera renders upside down in MuJoCo, which ours turn 180 degrees (ViewRenderer.flipped).
UPSIDE_DOWN_VIEWS = ("robot0_eye_in_hand",)


class LiberoNotInstalled(RuntimeError):
    pass


def openpi_mirror(view: str) -> str:
    """How a view's image as openpi's LIBERO example sends it differs from ours: mirrored left to right ("x") or
    top to bottom ("y"). robosuite's images are MuJoCo's with the rows in OpenGL's bottom-up order; turned 180
    degrees, that is MuJoCo's image mirrored left to right; ours is MuJoCo's image, itself turned 180 degrees for
    a camera that renders upside down (the wrist camera), which leaves a top-to-bottom mirror instead."""
    return "y" if view in UPSIDE_DOWN_VIEWS else "x"


def state_from_openpi(state: np.ndarray) -> np.ndarray:
    """openpi's LIBERO state (end-effector xyz, the hand's axis-angle, the two finger joints) -> ours
    (``proprio``: xyz, the gripper's opening, the first two columns of the grip site's rotation)."""
    state = np.asarray(state, np.float64).reshape(-1)
    if state.shape != (OPENPI_STATE_DIM,):
        raise ValueError(f"openpi's LIBERO state has {OPENPI_STATE_DIM} numbers, got {state.shape[0]}")
    from .libero_expert import _axis_angle_matrix

    angle = float(np.linalg.norm(state[3:6]))
    hand = _axis_angle_matrix(state[3:6] / angle, angle) if angle > 1e-12 else np.eye(3)
    site = hand @ SITE_IN_HAND
    return np.concatenate([state[:3], [state[6] - state[7]], site[:, 0], site[:, 1]]).astype(np.float32)


def home() -> Path:
    """Where set-up put LIBERO's assets and config (``REASONACT_LIBERO_HOME`` overrides)."""
    return Path(os.environ.get("REASONACT_LIBERO_HOME") or Path(sys.prefix) / "share" / "reasonact" / "libero")


@functools.cache
def _libero():
    """Import LIBERO quietly, with our config and verified assets; a clear error when it is not set up."""
    root = home()
    if not (root / "assets" / ".verified").exists():
        raise LiberoNotInstalled(f"LIBERO is not set up (no verified assets in {root}): run `make setup-libero` "
                                 "(scripts/setup-libero.sh), which installs it into this environment")
    if "LIBERO_CONFIG_PATH" not in os.environ:  # else LIBERO's first import asks on standard input
        if not (root / "config.yaml").exists():
            _write_config(root)
        os.environ["LIBERO_CONFIG_PATH"] = str(root)
    logging.disable(logging.WARNING)  # robosuite's import warns that it has no private macro file
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            try:
                import libero.libero as libero_root
                import robosuite
                from libero.libero import benchmark
                from libero.libero.envs import TASK_MAPPING
            except ImportError as e:
                raise LiberoNotInstalled(f"LIBERO did not import ({e}): run `make setup-libero`") from e
            libero_root._assets_path_cache = str(root / "assets")
            suites = {name: benchmark.get_benchmark(name)(0) for name in SUITES}
    finally:
        logging.disable(logging.NOTSET)
    logging.getLogger("robosuite_logs").setLevel(logging.ERROR)
    return {"robosuite": robosuite, "TASK_MAPPING": TASK_MAPPING, "suites": suites,
            "bddl_root": Path(libero_root.__file__).parent / "bddl_files"}


def _write_config(root: Path) -> None:
    """LIBERO's config.yaml: its bddl and init-state folders where pip put them, the assets where set-up did."""
    import importlib.util

    import yaml

    spec = importlib.util.find_spec("libero")
    if spec is None or not spec.origin:
        raise LiberoNotInstalled("LIBERO is not installed in this environment: run `make setup-libero`")
    pkg = Path(spec.origin).parent / "libero"
    config = {"benchmark_root": str(pkg), "bddl_files": str(pkg / "bddl_files"), "init_states": str(pkg / "init_files"),
              "datasets": str(root / "datasets"), "assets": str(root / "assets")}
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(yaml.safe_dump(config))


@functools.cache
def task_table() -> dict[str, tuple[str, int]]:
    """Every task's name -> (suite, index in the suite)."""
    table = {}
    for suite, bench in _libero()["suites"].items():
        for i in range(bench.n_tasks):
            table[bench.get_task(i).name] = (suite, i)
    return table


def suite_tasks(suite: str) -> list[str]:
    bench = _libero()["suites"][suite]
    return [bench.get_task(i).name for i in range(bench.n_tasks)]


def is_libero(name: str | None) -> bool:
    """Whether a suite or task name is LIBERO's (answered without importing LIBERO for suite names)."""
    if not name:
        return False
    if name in SUITES or name.startswith("libero"):
        return True
    try:
        return name in task_table()
    except LiberoNotInstalled:
        return False


def resolve_tasks(suite: str, tasks: str | list[str] | None = None) -> list[str]:
    """The task list of a suite, optionally narrowed by task names or indices in the suite (``"0,3"``)."""
    if suite in SUITES:
        available = suite_tasks(suite)
    elif suite in task_table():
        available = [suite]
    else:
        raise ValueError(f"unknown LIBERO suite or task {suite!r}; suites: {', '.join(SUITES)}")
    if tasks is None or tasks == "" or tasks == []:
        return available
    wanted = [t.strip() for t in tasks.split(",")] if isinstance(tasks, str) else list(tasks)
    out = []
    for t in wanted:
        if isinstance(t, int) or str(t).isdigit():
            if not 0 <= int(t) < len(available):
                raise ValueError(f"task index {t} is outside {suite!r}, which has tasks 0-{len(available) - 1}")
            out.append(available[int(t)])
        elif t in available:
            out.append(t)
        else:
            raise ValueError(f"task {t!r} is not in {suite!r}; give an index 0-{len(available) - 1} or one of: "
                             f"{', '.join(available)}")
    return list(dict.fromkeys(out))


def parse_cameras(camera: str | None) -> list[str]:
    return parse_views(camera or DEFAULT_CAMERA, CAMERAS, WRIST_CAMERAS, label="LIBERO ", third_person="agentview",
                       hint=f"several views: comma-separated, e.g. {DEFAULT_CAMERA}")


def validate_render_args(resolution: int, camera: str | None, state_mode: str | None = None) -> None:
    check_render_args(resolution, state_mode or DEFAULT_STATE_MODE, STATE_MODES, "LIBERO ")
    parse_cameras(camera)


def check_policy(info) -> str:
    """Refuse a policy (its :class:`reasonact.interface.PolicyInfo`) that does not fit LIBERO; return the state
    mode its observations must use."""
    if info.env != "libero":
        raise ValueError(f"{info.checkpoint} was trained on {info.env!r}, not LIBERO")
    if info.action_dim != LiberoEnv.action_dim:
        raise ValueError(f"{info.checkpoint} was trained for a {info.action_dim}-d action space; LIBERO takes "
                         f"{LiberoEnv.action_dim}-d actions")
    if info.state_dim != STATE_MODES.get(info.state_mode):
        raise ValueError(f"{info.checkpoint} expects a {info.state_dim}-d state; LIBERO's {info.state_mode!r} "
                         f"state has {STATE_MODES.get(info.state_mode)}")
    return info.state_mode


def instruction_of(task: str) -> str:
    suite, index = task_table()[task]
    return _libero()["suites"][suite].get_task(index).language


class LiberoEnv:
    """One LIBERO task with one or more offscreen cameras (``camera="agentview,robot0_eye_in_hand"``). The
    simulator is built once and reused across episodes (robosuite's soft reset). Use one instance per process."""

    action_dim = 7

    def __init__(self, task: str, *, resolution: int = 128, camera: str | None = None, state_mode: str | None = None,
                 render_depth: bool = True, max_steps: int | None = None, perturb=None, render: bool = True,
                 fast_render: bool = False):
        if perturb:
            raise ValueError("--perturb is implemented for Meta-World only; LIBERO's own variations are its suites")
        table = task_table()
        if task not in table:
            raise ValueError(f"unknown LIBERO task {task!r}; list them with `reasonact collect --suite libero_spatial "
                             "--help` or see reasonact.envs.libero.suite_tasks")
        validate_render_args(resolution, camera, state_mode)
        lib = _libero()
        self.suite, self.task_index = table[task]
        bench = lib["suites"][self.suite]
        self.task = task
        self.instruction = bench.get_task(self.task_index).language
        self.resolution = resolution
        self.views = parse_cameras(camera)
        self.camera = ",".join(self.views)
        self.state_mode = state_mode or DEFAULT_STATE_MODE
        self.state_dim = STATE_MODES[self.state_mode]
        self.render_depth = render_depth
        self.fast_render = bool(fast_render)
        self.max_steps = max_steps or SUITE_MAX_STEPS[self.suite]
        t = bench.get_task(self.task_index)
        bddl = str(lib["bddl_root"] / t.problem_folder / t.bddl_file)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            self._init_states = np.asarray(bench.get_task_init_states(self.task_index))
            import libero.libero.envs.bddl_utils as bddl_utils

            problem = bddl_utils.get_problem_info(bddl)["problem_name"]
            self._env = lib["TASK_MAPPING"][problem](
                bddl, robots=["Panda"], controller_configs=lib["robosuite"].load_controller_config(
                    default_controller="OSC_POSE"),
                initialization_noise=None, use_camera_obs=False, has_renderer=False, has_offscreen_renderer=False,
                hard_reset=False, control_freq=20, horizon=10**9, ignore_done=True)
        self.goal = [list(g) for g in self._env.parsed_problem["goal_state"]]
        self._robot = self._env.robots[0]
        self._fresh_grip = np.array(self._robot.gripper.current_action, dtype=np.float64)
        model = self._env.sim.model._model
        # group 0: robosuite's collision meshes. render=False: no images at all (experts' own benchmarks).
        # fast_render: no multisampling, and the fixed cameras draw meshes simplified at FAST_RENDER_CELL.
        fixed = tuple(v for v in self.views if v not in WRIST_CAMERAS) if fast_render else ()
        self._render = ViewRenderer(model, {v: model.camera(v).id for v in self.views}, resolution,
                                    hidden_groups=(0,), antialias=not fast_render, coarse_views=fixed,
                                    coarse_cell=FAST_RENDER_CELL) if render else None
        self._expert = None
        self._t = 0
        self._ready = False

    # -- protocol ---------------------------------------------------------------------------------
    def reset(self, seed: int, *, start_jitter: float = 0.0) -> Observation:
        """Seeds ``EVAL_SEED_BASE + k`` (k < 50): the k-th standard init state; any other seed: a layout drawn from
        the task's placement regions. ``start_jitter`` > 0 then moves the hand from LIBERO's start by an offset
        drawn from the seed (:func:`reasonact.envs.base.start_offset`) before the episode's first step."""
        seed = int(seed)
        k = seed - EVAL_SEED_BASE
        np.random.seed(seed % 2**32)  # robosuite's placement samplers draw from numpy's global generator
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            self._unplace_fixtures()
            self._env.reset()
            if 0 <= k < STANDARD_INIT_STATES:
                self._env.sim.set_state_from_flattened(self._init_states[k])
                self._env.sim.forward()
            else:
                self._lower_objects()
            # robosuite's soft reset keeps the gripper's smoothed command from the last episode; without this an
            # init state settles a little differently after each episode, and its outcome depends on those before
            self._robot.gripper.current_action = self._fresh_grip.copy()
            for _ in range(SETTLE_STEPS):
                self._env.step(NOOP)
            if start_jitter > 0:
                self._move_hand(self.eef_pos() + start_offset(seed, start_jitter))
        self._t = 0
        self._ready = True
        self._expert = None
        return self._observe()

    def _move_hand(self, target: np.ndarray, tolerance: float = 0.002) -> None:
        """Steps the hand to ``target`` (fingers open, orientation held) until it is there and at rest: not part
        of the episode (its steps are not counted or recorded)."""
        last = self.eef_pos()
        for _ in range(START_MOVE_STEPS):
            self._env.step(np.concatenate([np.clip((target - last) / MAX_STEP_M, -1.0, 1.0), NOOP[3:]]))
            now = self.eef_pos()
            if np.linalg.norm(target - now) < tolerance and np.linalg.norm(now - last) < tolerance / 4:
                break
            last = now

    def step(self, action: np.ndarray) -> tuple[Observation, bool, bool]:
        if not self._ready:
            raise RuntimeError("call reset(seed) before step()")
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if action.shape != (self.action_dim,):
            raise ValueError(f"expected an action of shape ({self.action_dim},), got {action.shape}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._env.step(np.clip(action, -1.0, 1.0))
        self._t += 1
        success = self.success()
        done = success or self._t >= self.max_steps
        return self._observe(), success, done

    def close(self) -> None:
        if self._render is not None:
            self._render.close()
        with contextlib.suppress(Exception):
            self._env.close()

    # -- extras -----------------------------------------------------------------------------------
    def success(self) -> bool:
        return bool(self._env._check_success())

    def holds(self, predicate: list[str]) -> bool:
        """Whether one BDDL predicate (e.g. ``["on", "akita_black_bowl_1", "plate_1"]``) holds now."""
        return bool(self._env._eval_predicate(predicate))

    def goals_met(self) -> tuple[int, int]:
        """How many of the task's goal conditions (the predicates of its BDDL goal) hold now, and how many there are:
        the partial progress of a chained task (the first object in the basket, the stove turned on)."""
        return sum(self.holds(g) for g in self.goal), len(self.goal)

    def expert_action(self) -> np.ndarray:
        """The scripted expert's action (:mod:`reasonact.envs.libero_expert`), planned from the task's BDDL goal."""
        if self._expert is None:
            from .libero_expert import LiberoExpert

            self._expert = LiberoExpert(self)
        return self._expert.act()

    def play_expert(self, seed: int) -> bool:
        """One episode of the scripted expert from ``reset(seed)``; whether it succeeded (``elapsed_steps`` says how
        long it took)."""
        self.reset(seed)
        for _ in range(self.max_steps):
            _, success, done = self.step(self.expert_action())
            if done:
                return success
        return False

    @property
    def elapsed_steps(self) -> int:
        return self._t

    @property
    def sim(self):
        """robosuite's simulator wrapper (``sim.model._model`` / ``sim.data._data`` are MuJoCo's own)."""
        return self._env.sim

    @property
    def scene(self):
        """The LIBERO problem instance (objects, fixtures, regions and their states)."""
        return self._env

    def eef_pos(self) -> np.ndarray:
        return np.array(self.sim.data.site_xpos[self._robot.eef_site_id], dtype=np.float64)

    def eef_rot(self) -> np.ndarray:
        return np.array(self.sim.data.site_xmat[self._robot.eef_site_id], dtype=np.float64).reshape(3, 3)

    def gripper_qpos(self) -> np.ndarray:
        return np.array(self.sim.data.qpos[self._robot._ref_gripper_joint_pos_indexes], dtype=np.float64)

    def position_of(self, name: str) -> np.ndarray:
        """World position of an object or fixture (its body) or a region (its site)."""
        env = self._env
        if name in env.obj_body_id:
            return np.array(self.sim.data.body_xpos[env.obj_body_id[name]], dtype=np.float64)
        return np.array(self.sim.data.get_site_xpos(name), dtype=np.float64)

    def points(self) -> np.ndarray:
        """(2, 3): what the task acts on now and where it must go (the expert's current step when it has one,
        else the goal's first predicate), world metres."""
        if self._expert is not None:
            names = self._expert.focus()
        else:
            g = self.goal[0]
            names = (g[1], g[2] if len(g) > 2 else g[1])
        return np.stack([self.position_of(n) for n in names]).astype(np.float32)

    def render_segmentation(self, view: str | None = None) -> np.ndarray:
        return self._render.segmentation(self.sim.data._data, view or self.views[0])

    def camera_matrices(self, view: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        return self._render.matrices(self.sim.data._data, view or self.views[0])

    def geom_ids(self, body_names: list[str]) -> list[int]:
        m = self.sim.model._model
        bodies = {m.body(n).id for n in body_names}
        return [g for g in range(m.ngeom) if int(m.geom_bodyid[g]) in bodies]

    # -- internals --------------------------------------------------------------------------------
    def _unplace_fixtures(self) -> None:
        """Move the fixtures (cabinet, stove, microwave) to the origin before LIBERO's samplers run. An object in a
        fixture's region (a bowl on the cabinet, in its drawer, on the stove) is placed at the fixture's new
        position plus the region's position in the world as it is when sampling starts, which counts the fixture's
        old position twice; with the fixture at the origin that term is the region's offset in the fixture, as the
        sum means. The fixtures' own placement, and so every standard init state, is unchanged."""
        m = self.sim.model._model
        ids = [m.body(f.root_body).id for f in self._env.fixtures_dict.values()]
        m.body_pos[ids] = 0.0
        m.body_quat[ids] = (1.0, 0.0, 0.0, 0.0)

    def _lower_objects(self, max_periods: int = 400) -> None:
        """Bring a drawn layout's objects down onto what they stand on, slowly. LIBERO's samplers place objects
        up to a metre above their supports; falling freely, a bowl bounces out of a drawer or off the table. Here
        everything else is held still and the objects' velocities are zeroed every control period (so they land
        at under 0.5 m/s), until none moves."""
        import mujoco

        m, d = self.sim.model._model, self.sim.data._data
        free = [j for j in range(m.njnt) if m.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE]
        obj_q = np.concatenate([np.arange(m.jnt_qposadr[j], m.jnt_qposadr[j] + 7) for j in free])
        held = np.setdiff1d(np.arange(m.nq), obj_q)
        q_held = d.qpos[held].copy()
        substeps = max(1, round(1.0 / (FPS * m.opt.timestep)))
        for period in range(max_periods):
            before = d.qpos[obj_q].copy()
            mujoco.mj_step(m, d, nstep=substeps)
            d.qpos[held] = q_held
            d.qvel[:] = 0
            if period >= 5 and np.abs(d.qpos[obj_q] - before).max() < 2e-4:
                break
        mujoco.mj_forward(m, d)

    def _observe(self) -> Observation:
        data = self.sim.data._data
        obs: Observation = {}
        if self._render is not None:
            obs.update(self._render.observe(data, self.views[0] if self.render_depth else None))
            obs["rgb"] = obs["images"][self.views[0]]
        eef, rot, fingers = self.eef_pos(), self.eef_rot(), self.gripper_qpos()
        state = np.concatenate([eef, [fingers[0] - fingers[1]], rot[:, 0], rot[:, 1]])
        points = self.points()
        joints = np.array(self.sim.data.qpos[self._robot._ref_joint_pos_indexes], dtype=np.float64)
        if "cameras" in obs:
            obs["camera_intrinsics"], obs["camera_extrinsics"] = obs["cameras"][self.views[0]]
        obs.update(
            state=state.astype(np.float32),
            ee_pos=eef.astype(np.float32),
            instruction=self.instruction,
            privileged={
                "task": self.task,
                "step": self._t,
                "hand_pos": eef.astype(np.float32),
                "gripper_open": float(fingers[0] - fingers[1]),
                "obj_pos": points[0],
                "goal_pos": points[1],
                "points": points,
                # joints (7), fingers (2), end-effector position (3) and rotation (6), the two points (6)
                "full_state": np.concatenate([joints, fingers, state[[0, 1, 2, 4, 5, 6, 7, 8, 9]],
                                              points.reshape(-1)]).astype(np.float32),
            },
        )
        return obs
