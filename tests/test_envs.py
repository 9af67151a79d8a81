import numpy as np
import pytest

from reasonact.envs import depth_of, make_env, project, resolve_tasks, unproject

pytestmark = pytest.mark.sim


@pytest.fixture(scope="module", params=["corner2", "zoom"])
def env(request):
    e = make_env("push-v3", resolution=96, camera=request.param)
    yield e
    e.close()


def test_observation_has_every_field_with_the_right_shape(env):
    obs = env.reset(0)
    assert obs["rgb"].shape == (96, 96, 3) and obs["rgb"].dtype == np.uint8
    assert obs["depth"].shape == (96, 96) and obs["depth"].dtype == np.float32
    assert obs["state"].shape == (7,) and obs["ee_pos"].shape == (3,)
    assert obs["camera_intrinsics"].shape == (3, 3) and obs["camera_extrinsics"].shape == (4, 4)
    assert obs["instruction"] == "push the puck to the goal"
    # The state carries the goal (the goal marker is a pixel or two in the image).
    np.testing.assert_allclose(obs["state"][4:7], obs["privileged"]["goal_pos"])
    # Depth is in metres: the table under the puck is a metre or two from the corner camera.
    u, v = project(obs["privileged"]["obj_pos"], obs["camera_intrinsics"], obs["camera_extrinsics"]).astype(int)
    assert 0.5 < obs["depth"][v, u] < 3.0


def test_seeds_give_reproducible_and_distinct_layouts(env):
    a = env.reset(11)["privileged"]["obj_pos"].copy()
    b = env.reset(12)["privileged"]["obj_pos"].copy()
    c = env.reset(11)["privileged"]["obj_pos"].copy()
    np.testing.assert_array_equal(a, c)
    assert np.abs(a - b).max() > 1e-3


def test_start_jitter_moves_the_hand_and_nothing_else(env):
    home = env.reset(11)
    jittered = env.reset(11, start_jitter=0.1)
    again = env.reset(11, start_jitter=0.1)
    other = env.reset(12, start_jitter=0.1)
    np.testing.assert_allclose(jittered["privileged"]["obj_pos"], home["privileged"]["obj_pos"], atol=1e-5)
    np.testing.assert_allclose(jittered["state"][4:], home["state"][4:], atol=1e-5)  # the goal too
    np.testing.assert_array_equal(jittered["ee_pos"], again["ee_pos"])  # drawn from the seed
    moved = jittered["ee_pos"] - home["ee_pos"]
    assert 0.01 < np.abs(moved[:2]).max() < 0.11 and abs(moved[2]) < 0.06
    assert np.abs(other["ee_pos"] - jittered["ee_pos"]).max() > 1e-3
    np.testing.assert_allclose(env.reset(11)["ee_pos"], home["ee_pos"], atol=1e-6)  # the home start is kept


def _gripper_pixels(env):
    seg = env.render_segmentation()
    mask = np.isin(seg, env.geom_ids(["rightclaw", "rightpad", "leftclaw", "leftpad", "hand"]))
    ys, xs = np.nonzero(mask)
    assert len(xs) > 0, "the gripper is not visible"
    return xs + 0.5, ys + 0.5


def test_projected_end_effector_lands_on_the_rendered_gripper(env):
    obs = env.reset(3)
    for t in range(40):
        obs, _, _ = env.step(env.expert_action())
        if t % 8:
            continue
        uv = project(obs["ee_pos"], obs["camera_intrinsics"], obs["camera_extrinsics"])
        xs, ys = _gripper_pixels(env)
        nearest = np.min(np.hypot(xs - uv[0], ys - uv[1]))
        # the point between the open fingertips: a gap of a pixel or two, wider in the zoomed view
        tolerance = 4.0 if env.camera == "zoom" else 2.5
        assert nearest <= tolerance, f"step {t}: projected ee {uv} is {nearest:.1f} px from the gripper"
        # The fingertips are below the gripper's centroid in the image, never far off sideways.
        assert abs(xs.mean() - uv[0]) < 3.0
        # Depth agrees too: the rendered depth near the gripper matches the point's camera depth.
        z = depth_of(obs["ee_pos"], obs["camera_extrinsics"])
        x, y = int(uv[0]), int(uv[1])
        r = 5 if env.camera == "zoom" else 2
        patch = obs["depth"][max(0, y - r): y + r + 1, max(0, x - r): x + r + 1]
        assert np.min(np.abs(patch - z)) < 0.03
        # and the pixel with its depth gives the point back
        np.testing.assert_allclose(unproject(uv, z, obs["camera_intrinsics"], obs["camera_extrinsics"]), obs["ee_pos"],
                                   atol=1e-5)


def test_image_is_upright_and_the_flip_is_in_the_camera_matrices(env):
    obs = env.reset(0)
    K, E = obs["camera_intrinsics"], obs["camera_extrinsics"]
    low = project(np.array([0.0, 0.7, 0.0]), K, E)
    high = project(np.array([0.0, 0.7, 0.5]), K, E)
    assert high[1] < low[1], "a point above the table must appear higher (smaller row) in the image"
    # The puck projects onto its own pixels; without the 180-degree turn it would land far away.
    ys, xs = np.nonzero(np.isin(env.render_segmentation(), env.geom_ids(["obj"])))
    right = project(obs["privileged"]["obj_pos"], K, E)
    wrong = project(obs["privileged"]["obj_pos"], K, np.diag([-1.0, -1.0, 1.0, 1.0]) @ E)
    assert np.min(np.hypot(xs + 0.5 - right[0], ys + 0.5 - right[1])) < 1.5
    assert np.min(np.hypot(xs + 0.5 - wrong[0], ys + 0.5 - wrong[1])) > 10


def test_unknown_task_error_names_the_valid_ones():
    with pytest.raises(ValueError, match="reach-v3"):
        resolve_tasks("mt10", "reach-v9")
    with pytest.raises(ValueError, match="mt10"):
        resolve_tasks("mt7")
    assert resolve_tasks("mt10")[:2] == ["reach-v3", "push-v3"]
    assert len(resolve_tasks("mt50")) == 50
    assert resolve_tasks("drawer-open-v3") == ["drawer-open-v3"]


def test_bad_resolution_and_camera_are_refused():
    with pytest.raises(ValueError, match="resolution"):
        make_env("reach-v3", resolution=8)
    with pytest.raises(ValueError, match="camera"):
        make_env("reach-v3", camera="nope")


def test_the_zoomed_view_shows_the_puck_larger():
    sizes = {}
    for camera in ("corner2", "zoom"):
        e = make_env("push-v3", resolution=64, camera=camera)
        e.reset(5)
        sizes[camera] = int(np.isin(e.render_segmentation(), e.geom_ids(["obj"])).sum())
        e.close()
    assert sizes["zoom"] >= 4 * sizes["corner2"] > 0, sizes


def test_several_views_each_with_its_own_camera_and_the_object_points_on_the_object():
    env = make_env("push-v3", resolution=64, camera="zoom,gripperPOV")
    try:
        obs = env.reset(3)
        assert list(obs["images"]) == ["zoom", "gripperPOV"]
        np.testing.assert_array_equal(obs["images"]["zoom"], obs["rgb"])
        assert not np.array_equal(obs["images"]["gripperPOV"], obs["rgb"])
        K, E = obs["cameras"]["zoom"]
        np.testing.assert_allclose(E, obs["camera_extrinsics"])
        # The recorded points are the simulator's puck and goal, and the puck's projection lands on the puck
        # in both views.
        points = obs["privileged"]["points"]
        np.testing.assert_allclose(points[0], env._env._get_pos_objects()[:3], atol=1e-6)
        np.testing.assert_allclose(points[1], env._env._target_pos, atol=1e-6)
        puck = env.geom_ids(["obj"])
        for view in ("zoom", "gripperPOV"):
            u, v = project(points[0], *obs["cameras"][view])
            seg = env.render_segmentation(view)
            assert seg[int(v), int(u)] in puck, view
    finally:
        env.close()


def test_a_view_list_is_checked():
    with pytest.raises(ValueError, match="third-person"):
        make_env("reach-v3", camera="gripperPOV,zoom")
    with pytest.raises(ValueError, match="unknown camera nope"):
        make_env("reach-v3", camera="zoom,nope")


def _camera_centre(extrinsics: np.ndarray) -> np.ndarray:
    R, t = extrinsics[:3, :3].astype(np.float64), extrinsics[:3, 3].astype(np.float64)
    return -R.T @ t


def test_perturbations_change_the_scene_and_not_the_layout():
    from reasonact.envs.perturb import ScenePerturber

    plain = make_env("push-v3", resolution=64, camera="zoom,gripperPOV", render_depth=False)
    base = plain.reset(5)
    base_seg = plain.render_segmentation()
    plain.close()
    puck = None
    for perturb in ("camera=0.05", "lighting", "colors"):
        env = make_env("push-v3", resolution=64, camera="zoom,gripperPOV", render_depth=False, perturb=perturb)
        try:
            obs = env.reset(5)
            puck = env.geom_ids(["obj"])
            np.testing.assert_array_equal(obs["state"], base["state"])  # the same layout, hand and goal
            assert np.abs(obs["rgb"].astype(int) - base["rgb"]).mean() > 2, perturb  # the image changed
            seg = env.render_segmentation()
            if perturb == "camera=0.05":
                # The fixed view moved 5 cm, the wrist camera did not; the matrices follow, so the puck's
                # projection still lands on the puck.
                moved = _camera_centre(obs["cameras"]["zoom"][1]) - _camera_centre(base["cameras"]["zoom"][1])
                assert np.linalg.norm(moved) == pytest.approx(0.05, abs=1e-4)
                np.testing.assert_allclose(obs["cameras"]["gripperPOV"][1], base["cameras"]["gripperPOV"][1])
                u, v = project(obs["privileged"]["obj_pos"], *obs["cameras"]["zoom"])
                assert seg[int(v), int(u)] in puck
                assert (seg != base_seg).mean() > 0.02
            else:  # light and colour leave every pixel showing the same thing
                np.testing.assert_array_equal(seg, base_seg)
            # Drawn from the seed: another layout gets another draw, the same layout the same one again.
            model = env._env.model
            drawn = {f: getattr(model, f).copy() for f in ScenePerturber.FIELDS}
            env.reset(6)
            assert any(not np.array_equal(getattr(model, f), v) for f, v in drawn.items()), perturb
            env.reset(5)
            for f, v in drawn.items():
                np.testing.assert_array_equal(getattr(model, f), v, err_msg=f)
        finally:
            env.close()


def test_perturbations_are_checked():
    from reasonact.envs.perturb import parse_perturb

    assert parse_perturb("lighting,camera=0.05") == {"lighting": 0.5, "camera": 0.05}
    assert parse_perturb("") == {}
    with pytest.raises(ValueError, match="unknown perturbation 'fog'"):
        parse_perturb("fog")
    with pytest.raises(ValueError, match="must be a number"):
        parse_perturb("camera=far")
    with pytest.raises(ValueError, match="from 0 to 0.5"):
        parse_perturb("camera=2")


def _scene_with_a_mesh_and_a_site():
    import mujoco

    corners = " ".join(f"{x} {y} {z}" for x in (-.1, .1) for y in (-.1, .1) for z in (-.1, .1))
    return mujoco.MjModel.from_xml_string(f"""
<mujoco><asset><mesh name="box" vertex="{corners}"/></asset>
  <worldbody><light pos="0 0 2"/><camera name="eye" pos="0 -1 0.3" xyaxes="1 0 0 0 0.3 1"/>
    <geom type="mesh" mesh="box" group="1" contype="0" conaffinity="0" rgba=".8 .2 .2 1"/>
    <site name="mark" pos="0.15 0 0" size="0.05" rgba="0 1 0 1"/></worldbody></mujoco>""")


def test_coarse_views_follow_the_models_colours_as_the_simulator_changes_them():
    import mujoco

    from reasonact.envs.render import ViewRenderer

    model = _scene_with_a_mesh_and_a_site()
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    full = ViewRenderer(model, {"eye": 0}, 64)
    coarse = ViewRenderer(model, {"eye": 0}, 64, coarse_views=("eye",))  # a box's corners: nothing to merge
    try:
        np.testing.assert_array_equal(coarse.image(data, "eye"), full.image(data, "eye"))
        model.site_rgba[0, 3] = 0.0  # hidden after the renderers were made, as robosuite hides its sites at reset
        model.geom_rgba[0] = (0.2, 0.2, 0.8, 1.0)
        shown = full.image(data, "eye")
        np.testing.assert_array_equal(coarse.image(data, "eye"), shown)
        assert shown[..., 2].max() > 150 and shown[..., 1].max() < 150  # blue box, no green site
    finally:
        full.close()
        coarse.close()
