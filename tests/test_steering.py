import numpy as np
import pytest

import reasonact
from reasonact.data import load_dataset
from reasonact.evaluation.videos import EXECUTED_PATH_COLOR
from reasonact.steering import (
    Correction,
    PathTracker,
    at_height,
    closest_on_path,
    cut_to_span,
    distance_to_path,
    point_along,
    remaining_path,
)
from reasonact.viz.draw import GIVEN_TRACE_COLOR


def test_remaining_path_starts_at_the_nearest_point_ahead():
    path = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0]])
    r = remaining_path(path, np.array([4.0, 2.0]))
    np.testing.assert_allclose(r, [[4, 0], [10, 0], [10, 10]])
    r = remaining_path(path, np.array([12.0, 6.0]))
    np.testing.assert_allclose(r, [[10, 6], [10, 10]])
    world = np.array([[0.0, 0.5, 0.2], [0.0, 0.7, 0.2], [0.0, 0.7, 0.0]])  # a path in metres, down at the end
    np.testing.assert_allclose(remaining_path(world, np.array([0.01, 0.6, 0.21])), [[0, 0.6, 0.2], *world[1:]],
                               atol=1e-6)


def test_tracker_follows_a_path_that_comes_back_past_itself():
    # out to a handle and back: in the image the return leg passes 1 pixel from the way out
    path = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 1.0], [0.0, 1.0]])
    near_start = np.array([1.0, 0.6])  # a little nearer the return leg than the way out
    np.testing.assert_allclose(remaining_path(path, near_start), [[1, 1], [0, 1]])  # one look: skips ahead
    tracker = PathTracker(path, tolerance=0.5)
    np.testing.assert_allclose(tracker.ahead(near_start), [[1, 0], *path[1:]])
    np.testing.assert_allclose(tracker.ahead([6.0, 0.2]), [[6, 0], *path[1:]])
    np.testing.assert_allclose(tracker.ahead([10.2, 0.7]), [[10, 0.7], *path[2:]])
    # on the way back the way out is nearer, but it is behind
    np.testing.assert_allclose(tracker.ahead([5.0, 0.4]), [[5, 1], [0, 1]])
    np.testing.assert_allclose(tracker.ahead([7.0, 0.4]), [[5, 1], [0, 1]])  # never backwards
    tracker.restart()
    np.testing.assert_allclose(tracker.ahead(near_start), [[1, 0], *path[1:]])


def _rest_short(correct: Correction, steps: int = 40) -> np.ndarray:
    """A follower that closes 60% of its gap to the given path's end each step but rests 2 cm below it, as a
    policy that leaves a path's last height open: where it ends, given the path through ``correct``."""
    path = np.array([[0.0, 0.0, 0.2], [0.1, 0.0, 0.2]])  # its last leg level: resting below is off the path
    hand = np.array([0.0, 0.05, 0.2])  # 5 cm from the path: outside the correction's radius at first
    for _ in range(steps):
        given = correct(remaining_path(path, hand), hand)
        hand = hand + 0.6 * (given[-1] - np.array([0, 0, 0.02]) - hand)
    return hand - path[-1]


def test_a_correction_closes_the_offset_a_follower_leaves_at_a_paths_end():
    left = _rest_short(Correction(0.0))
    assert np.allclose(left, [0, 0, -0.02], atol=1e-3)  # as drawn: the follower stays 2 cm short
    assert np.linalg.norm(_rest_short(Correction(0.3))) < 1e-3  # the shift draws it onto the end
    capped = Correction(0.3, limit=0.01)
    assert abs(_rest_short(capped)[2] + 0.01) < 1e-3 and np.linalg.norm(capped.shift) <= 0.01 + 1e-9
    far = Correction(0.3, radius=0.01)  # a residual beyond the radius never adds to the shift
    far(np.array([[0.0, 0.0, 0.0]]), np.array([0.0, 0.05, 0.0]))
    assert np.all(far.shift == 0)
    with pytest.raises(ValueError, match="gain >= 0"):
        Correction(-0.1)


def test_point_along_walks_the_legs():
    path = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0]])
    np.testing.assert_allclose(point_along(path, 4.0), [4, 0])
    np.testing.assert_allclose(point_along(path, 13.0), [10, 3])
    np.testing.assert_allclose(point_along(path, 50.0), [10, 10])
    np.testing.assert_allclose(point_along(path[:1], 5.0), [0, 0])


def test_distance_to_path_is_point_to_segment():
    path = np.array([[0.0, 0.0], [10.0, 0.0]])
    np.testing.assert_allclose(distance_to_path(np.array([[5.0, 3.0], [13.0, 4.0], [-3.0, 0.0]]), path), [3, 5, 3])
    np.testing.assert_allclose(closest_on_path(np.array([[5.0, 3.0], [13.0, 4.0], [-3.0, 0.0]]), path),
                               [[5, 0], [10, 0], [0, 0]])
    np.testing.assert_allclose(closest_on_path(np.array([[1.0, 1.0]]), path[:1]), [[0, 0]])  # a one-point path
    np.testing.assert_allclose(distance_to_path(np.array([5.0, 3.0]), path), [3])  # one point, unbatched
    # in the world, metres: a path down and along, and points beside it
    world = np.array([[0.0, 0.6, 0.2], [0.0, 0.6, 0.05], [0.1, 0.6, 0.05]])
    np.testing.assert_allclose(distance_to_path(np.array([[0.02, 0.6, 0.1], [0.05, 0.63, 0.09]]), world),
                               [0.02, 0.05], atol=1e-12)


def test_a_trace_is_cut_to_its_span_in_metres_and_resampled_evenly_in_metres():
    K = np.array([[100.0, 0, 32], [0, 100.0, 32], [0, 0, 1]])

    def seen(cam):  # camera-frame points (metres) -> pixels and depth
        uvw = cam @ K.T
        return np.concatenate([uvw[:, :2] / uvw[:, 2:], cam[:, 2:]], 1)

    def metres(trace):
        return np.linalg.solve(K, np.stack([trace[:, 0] * trace[:, 2], trace[:, 1] * trace[:, 2], trace[:, 2]])).T

    # 30 cm across, then 30 cm away from the camera (where a pixel spans more and more)
    path = np.array([[0.0, 0.0, 0.8], [0.3, 0.0, 0.8], [0.3, 0.0, 1.1]])
    cut = cut_to_span(seen(path), 0.4, 5, K)
    np.testing.assert_allclose(metres(cut), [[0, 0, 0.8], [0.1, 0, 0.8], [0.2, 0, 0.8], [0.3, 0, 0.8], [0.3, 0, 0.9]],
                               atol=1e-6)
    short = cut_to_span(seen(path), 2.0, 3, K)  # shorter than the span: all of it
    np.testing.assert_allclose(metres(short), [[0, 0, 0.8], [0.3, 0, 0.8], [0.3, 0, 1.1]], atol=1e-6)
    # pixels alone are measured at the depth given (the gripper's): on the first leg they are exact
    flat = cut_to_span(seen(path)[:, :2], 0.2, 5, K, depth=0.8)
    assert flat.shape == (5, 2)
    np.testing.assert_allclose(flat, cut_to_span(seen(path), 0.2, 5, K)[:, :2], atol=1e-4)
    with pytest.raises(ValueError, match="needs a depth"):
        cut_to_span(seen(path)[:, :2], 0.2, 5, K)


def test_a_drawing_is_lifted_onto_the_plane_at_the_hands_height():
    from reasonact.envs import depth_of, project

    K = np.array([[80.0, 0, 32], [0, 80.0, 32], [0, 0, 1]])
    # a camera 1 m up and 1 m back, looking 45 degrees down at the table (world z up; OpenCV axes: y down)
    c, s = np.cos(np.pi / 4), np.sin(np.pi / 4)
    R = np.array([[1.0, 0, 0], [0, -s, -c], [0, c, -s]])  # rows: the camera's x, y, z axes in the world
    E = np.eye(4)
    E[:3, :3], E[:3, 3] = R, -R @ np.array([0.0, -1.0, 1.0])
    path = np.array([[0.0, 0.0, 0.3], [0.1, 0.05, 0.3], [-0.05, 0.2, 0.3]])  # at the hand's height, 30 cm
    lifted = at_height(project(path, K, E), K, E, 0.3, fallback=1.0)
    np.testing.assert_allclose(lifted[:, :2], project(path, K, E), atol=1e-4)  # the drawing's pixels, unchanged
    np.testing.assert_allclose(lifted[:, 2], depth_of(path, E), atol=1e-5)  # each point's depth on that plane
    above = at_height(np.array([[32.0, -200.0]]), K, E, 0.3, fallback=1.0)  # a ray that never comes down to it
    assert above[0, 2] == 1.0


def test_a_trace_span_run_trains_on_the_next_metres_and_cuts_a_given_path_to_them(fake_data, tmp_path):
    from reasonact.envs import depth_of, project
    from reasonact.training.config import train_config

    span = 0.05
    ds = load_dataset(fake_data, trace_span=span)
    rows = range(0, len(ds), 3)
    for i in rows:
        future = ds.ee_pos[i:ds.episode_end[i]]
        world = ds._trace_points_world(np.array([i]))[0]
        legs = np.linalg.norm(np.diff(world, axis=0), axis=1)
        left = np.linalg.norm(np.diff(future, axis=0), axis=1).sum()
        np.testing.assert_allclose(legs, min(span, left) / 4, atol=1e-4)  # evenly along at most the span
        np.testing.assert_allclose(world[0], future[0], atol=1e-6)
        if left <= span:
            np.testing.assert_allclose(world[-1], future[-1], atol=1e-6)
        np.testing.assert_allclose(ds.traces[i], project(world, ds.intrinsics[i], ds.extrinsics[i]), atol=1e-3)
    with pytest.raises(ValueError, match="--trace-span"):
        train_config(reasoning="trace", trace_span=0)
    run = reasonact.train(fake_data, tmp_path / "span", config="debug", steps=2, reasoning="trace", trace_depth=True,
                          trace_relative=True, trace_span=span, steer_prob=0.5, progress=False)
    policy = reasonact.load_policy(run)
    assert policy.tok.trace.span == span
    # a path given in full (the rest of the episode) is read as the training trace of that frame
    i = max(rows, key=lambda j: np.linalg.norm(np.diff(ds.ee_pos[j:ds.episode_end[j]], axis=0), axis=1).sum())
    obs, future = ds[i], ds.ee_pos[i:ds.episode_end[i]]
    given = np.concatenate([project(future, obs["camera_intrinsics"], obs["camera_extrinsics"]),
                            depth_of(future, obs["camera_extrinsics"])[:, None]], 1)
    want = policy.tok.trace.encode(np.concatenate([ds.traces[i], ds.trace_depths[i][:, None]], 1))
    assert np.abs(policy.transform.trace_tokens(given, obs) - want).max() <= 1
    assert policy.predict(obs, trace=given).trace_given
    assert policy.info.trace_span == span
    # without the camera (a served request) the trace is taken as already cut: resampled along it as given
    blind = {k: v for k, v in obs.items() if k != "camera_intrinsics"}
    np.testing.assert_array_equal(policy.transform.trace_tokens(given, blind),
                                  policy.tok.trace.encode(policy.tok.trace.resample(given)))
    assert policy.predict(blind, trace=given).trace_given


def test_steered_prediction_returns_the_given_trace_and_a_chunk(fake_data, tmp_path):
    run = reasonact.train(fake_data, tmp_path / "run", config="debug", steps=3, batch_size=4, reasoning="trace",
                          steer_prob=0.5, progress=False)
    policy = reasonact.load_policy(run)
    obs = load_dataset(fake_data)[3]
    drawn = np.array([[6.0, 20.0], [9.0, 17.0], [13.0, 15.0], [17.0, 13.0], [20.0, 12.0], [23.0, 10.0], [25.0, 8.0]])
    p = policy.predict(obs, trace=drawn)
    assert p.trace_given and p.actions.shape == (8, 4)
    from reasonact.tokenizers import resample_trace

    expected = resample_trace(drawn, 5)
    assert np.abs(p.trace - expected).max() <= 32 / 256  # within one coordinate bin
    np.testing.assert_allclose(p.trace[0], drawn[0], atol=32 / 256)
    np.testing.assert_allclose(p.trace[-1], drawn[-1], atol=32 / 256)
    own = policy.predict(obs)
    assert not own.trace_given
    # Steered, where to go comes from the trace alone: the task part of the state (the goal) is not read.
    moved = dict(obs, state=obs["state"] + np.array([0, 0, 0, 0, 0.3, -0.2, 0.1], np.float32))
    np.testing.assert_array_equal(policy.predict(moved, trace=drawn).actions, p.actions)


def test_steered_samples_keep_only_proprioception():
    import torch

    from reasonact.transforms import hide_task_state

    state = torch.arange(14, dtype=torch.float32).reshape(2, 7) + 1
    out = hide_task_state(state, torch.tensor([True, False]))
    assert out[0, :4].tolist() == [1, 2, 3, 4] and out[0, 4:].abs().sum() == 0
    assert torch.equal(out[1], state[1])
    assert hide_task_state(state)[:, 4:].abs().sum() == 0


def test_path_expert_visits_its_waypoints_in_order():
    from reasonact.envs.paths import WORKSPACE, PathExpert, height_range

    start = np.array([0.0, 0.6, 0.2])
    expert = PathExpert.random(7, start)
    w = expert.waypoints
    assert 2 <= len(w) <= 4 and (w >= WORKSPACE[0]).all() and (w <= WORKSPACE[1]).all()
    legs = np.linalg.norm(np.diff(np.vstack([start, w]), axis=0), axis=1)
    assert (legs >= 0.1).all()
    assert (w[:, 2] == start[2]).all()  # planar: a 2D trace and the height fix every waypoint
    assert np.ptp(PathExpert.random(7, start, planar=False).waypoints[:, 2]) > 0
    # "full" heights reach down to the table and up past the default range, as the tasks' demonstrations do.
    z = np.concatenate([PathExpert.random(s, start, **height_range("full")).waypoints[:, 2] for s in range(50)])
    assert z.min() < WORKSPACE[0][2] and z.max() > WORKSPACE[1][2] and (z >= 0.02).all() and (z <= 0.35).all()
    assert PathExpert.random(7, start, **height_range("hand")).waypoints.tolist() == w.tolist()
    with pytest.raises(ValueError, match="hand, random or full"):
        height_range("up")
    np.testing.assert_array_equal(PathExpert.random(7, start).waypoints, w)  # reproducible from the seed
    assert not np.allclose(PathExpert.for_episode("reach-v3", 7, start).waypoints[0],
                           PathExpert.for_episode("push-v3", 7, start).waypoints[0])
    # Meta-World moves the end effector 1 cm per unit of action; follow the expert with that model.
    ee, visited = start.copy(), []
    for _ in range(500):
        a = expert.action(ee)
        assert a.shape == (4,) and np.abs(a).max() <= 1
        ee = ee + 0.01 * a[:3]
        visited.append(ee)
        if expert.update(ee):
            break
    assert expert.done
    visited = np.array(visited)
    hits = [int(np.argmin(np.linalg.norm(visited - p, axis=1))) for p in w]
    assert hits == sorted(hits) and all(np.linalg.norm(visited[h] - p) < expert.tolerance for h, p in zip(hits, w))
    np.testing.assert_array_equal(expert.action(ee)[:3], 0)  # done: it stays
    assert not expert.stuck
    # With ``hold``, a path is finished only after that many more steps at its end.
    held = PathExpert(w, hold=3)
    held.next = len(w)  # the last waypoint reached
    assert [held.update(w[-1]) for _ in range(4)] == [False, False, True, True]
    assert held.step_budget(start) == expert.step_budget(start) + 3
    with pytest.raises(ValueError, match="non-negative"):
        PathExpert(w, hold=-1)
    # With ``settle``, the held steps keep closing on the last waypoint (reached means within 2 cm) instead.
    for settle, moves in ((False, False), (True, True)):
        held = PathExpert(w, hold=20, settle=settle)
        ee = w[-1] + np.array([0.015, 0.0, -0.01])  # within 2 cm: where the path counts as done
        held.next = len(w)  # the last waypoint reached
        for _ in range(20):
            a = held.action(ee)
            assert np.any(a[:3] != 0) == moves or np.linalg.norm(ee - w[-1]) < 1e-3
            ee = ee + 0.01 * a[:3]
            held.update(ee)
        assert held.finished and (np.linalg.norm(ee - w[-1]) < 0.003) == settle  # from 1.8 cm
    # An arm that cannot move (blocked by the scene) is reported stuck after `patience` steps.
    blocked = PathExpert.random(7, start)
    for k in range(blocked.patience + 1):
        blocked.action(start)
        blocked.update(start)
        assert blocked.stuck == (k == blocked.patience)


def test_a_short_path_takes_legs_of_a_few_centimetres_and_closes_each_to_millimetres():
    from reasonact.envs.paths import SHORT_PATHS, WORKSPACE, PathExpert, height_range

    for start in (np.array([0.0, 0.6, 0.2]), WORKSPACE[1] - 0.005):  # the second a corner: legs turned back inside
        for seed in range(20):
            expert = PathExpert.for_episode("reach-v3", seed, start, **height_range("random"), **SHORT_PATHS)
            w = expert.waypoints
            legs = np.linalg.norm(np.diff(np.vstack([start, w]), axis=0), axis=1)
            assert 1 <= len(w) <= 2 and (legs > 0.005).all() and (legs <= 0.04 + 1e-9).all()
            assert (w >= WORKSPACE[0]).all() and (w <= WORKSPACE[1]).all()
    start = np.array([0.0, 0.6, 0.2])
    level = PathExpert.random(3, start, **height_range("hand"), **SHORT_PATHS).waypoints
    assert (level[:, 2] == start[2]).all() and np.linalg.norm(level[0] - start) >= 0.01
    # Followed with Meta-World's 1 cm per unit of action, the hand ends within 3 mm of the last waypoint,
    # where a long path's expert (the default tolerance) stops 2 cm short.
    for tolerance in (SHORT_PATHS["tolerance"], PathExpert(level).tolerance):
        expert, ee = PathExpert(level[-1:], tolerance=tolerance), level[-1] + np.array([0.03, 0.0, -0.01])
        for _ in range(200):
            ee = ee + 0.01 * expert.action(ee)[:3]
            if expert.update(ee):
                break
        assert expert.done and tolerance - 0.002 < np.linalg.norm(ee - level[-1]) < tolerance


def test_a_recorded_path_is_followed_through_waypoints_with_its_gripper_commands():
    from reasonact.envs.paths import DONOR_SPACING, PathExpert
    from reasonact.steering import distance_to_path

    # a demonstration: 20 cm across at 5 mm a step, 10 cm down (closing the gripper there), 10 cm up
    across = np.c_[np.linspace(-0.1, 0.1, 41), np.full(41, 0.6), np.full(41, 0.2)]
    down = np.c_[np.full(20, 0.1), np.full(20, 0.6), np.linspace(0.195, 0.1, 20)]
    up = np.c_[np.full(20, 0.1), np.full(20, 0.6), np.linspace(0.105, 0.2, 20)]
    path = np.vstack([across, down, up])
    grippers = np.r_[np.full(61, -1.0), np.full(20, 1.0)]
    expert = PathExpert.along(path, grippers)
    w = expert.waypoints
    gaps = np.linalg.norm(np.diff(w, axis=0), axis=1)
    assert gaps.max() <= DONOR_SPACING + 0.005 + 1e-9  # a recorded point at or after every 2.5 cm (5 mm apart here)
    assert np.allclose(w[-1], path[-1]) and len(w) == 16  # 40 cm of path
    assert distance_to_path(w, path).max() < 1e-9  # every waypoint lies on the path
    np.testing.assert_array_equal(expert.grippers, [-1.0] * 12 + [1.0] * 4)  # closed from the bottom on
    ee, visited, commands = path[0].copy(), [], []
    for _ in range(300):
        a = expert.action(ee)
        commands.append(a[3])
        ee = ee + 0.01 * a[:3]
        visited.append(ee)
        if expert.update(ee):
            break
    # corners cut by at most about half the 2 cm within which a waypoint counts as reached
    assert expert.finished and distance_to_path(np.array(visited), path).max() < 0.015
    bottom = int(np.argmin(np.array(visited)[:, 2]))
    assert commands[0] == -1 and commands[-1] == 1 and commands[bottom - 5] == -1  # closed near the bottom
    with pytest.raises(ValueError, match="one gripper command per point"):
        PathExpert.along(path, grippers[:-1])
    with pytest.raises(ValueError, match="one value or one per waypoint"):
        PathExpert(w, gripper=[1.0, -1.0])


def test_random_path_frames_are_always_trained_steered(fake_data):
    from reasonact.checkpoint import StateNorm, Tokenizers
    from reasonact.data.pipeline import BatchSource
    from reasonact.tokenizers import ActionTokenizer, TextTokenizer, TraceTokenizer, Vocab

    ds = load_dataset(fake_data)
    ds.path_frames = ds.episode_row == 0  # as if the first episode followed a random path
    text = TextTokenizer.train([t["instruction"] for t in ds.tasks], 300)
    tok = Tokenizers(ActionTokenizer.from_stats(ds.stats), TraceTokenizer(32, 32), text, Vocab(text=text.vocab_size))
    kw = dict(image_size=32, horizon=8, blocks=("trace", "act"), instruction_tokens=16,
              state_norm=StateNorm(np.zeros(7, np.float32), np.ones(7, np.float32)), augment=False, progress=False)
    src = BatchSource(ds, np.arange(len(ds)), tok, steer_prob=1e-6, **kw)
    import torch

    rows = torch.arange(len(ds))
    b = src.batch(rows, torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(b["steered"].numpy(), ds.path_frames)
    assert b["state"][b["steered"], 4:].abs().sum() == 0  # the goal is hidden where the trace is given
    with pytest.raises(ValueError, match="steer_prob"):
        BatchSource(ds, np.arange(len(ds)), tok, steer_prob=0.0, **kw)
    BatchSource(ds, np.nonzero(~ds.path_frames)[0], tok, steer_prob=0.0, **kw)  # left out, they are fine


def test_steered_video_frames_draw_the_given_path_and_the_path_executed_so_far():
    from reasonact.evaluation.rollout import Episode
    from reasonact.evaluation.videos import steered_frames

    K = np.array([[10.0, 0, 32], [0, 10.0, 32], [0, 0, 1]])  # a camera at the origin looking down +z
    xs = np.linspace(-1.0, 1.0, 5)  # the gripper moves right along row 32: pixels x = 22 .. 42
    ep = Episode("reach-v3", 7, record=True, frames=[np.zeros((64, 64, 3), np.uint8)] * 5,
                 ee_path=[np.array([x, 0.0, 1.0]) for x in xs], camera=(K, np.eye(4)))
    given = np.array([[32.0, 16.0], [32.0, 56.0]])  # a vertical path through the middle
    frames = steered_frames(ep, given, resolution=64)
    assert len(frames) == 5 and frames[0].shape == (256, 256, 3)  # upscaled 4x
    yellow, red = np.array(GIVEN_TRACE_COLOR), np.array(EXECUTED_PATH_COLOR)
    at = lambda f, x, y: f[int(y * 4), int(x * 4)]  # noqa: E731  (pixel coordinates of the 64 px frame)
    for f in frames:
        np.testing.assert_array_equal(at(f, 32, 40), yellow)
    np.testing.assert_array_equal(at(frames[4], 27, 32), red)  # between where it started and where it is
    np.testing.assert_array_equal(at(frames[4], 42, 32), red)  # where it is at the end
    assert not (at(frames[0], 27, 32) == red).all() and not (at(frames[0], 42, 32) == red).all()  # not yet there
    with pytest.raises(ValueError, match="not recorded"):
        steered_frames(Episode("reach-v3", 7), given, resolution=64)
