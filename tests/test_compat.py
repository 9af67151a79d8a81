"""Compatibility with the real packages our users run: openpi's own client (openpi-client 0.1.2) and LeRobot's
own dataset reader and writer (lerobot 0.4.4), in the side environment .venv-compat that
scripts/setup-compat.sh builds (openpi-client pins numpy<2; lerobot pins an older torch)."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

import reasonact
from reasonact.data import DatasetError, load_dataset
from reasonact.serve.protocol import _image, resize_with_pad
from reasonact.serve.server import BackgroundServer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def compat_python():
    r = subprocess.run(["bash", str(ROOT / "scripts" / "setup-compat.sh")], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return ROOT / ".venv-compat" / "bin" / "python"


def _upscale(img: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize((size, size), Image.NEAREST))


def test_resize_with_pad_maps_pixels_both_ways():
    img = np.zeros((100, 200, 3), np.uint8)
    img[40:60, 140:160] = 255  # a white square centred on pixel (150, 50)
    out, frame = resize_with_pad(img, 64)
    assert out.shape == (64, 64, 3) and out[:16].max() == 0 and out[-16:].max() == 0  # padded top and bottom
    ys, xs = np.nonzero(out[..., 0] > 128)
    np.testing.assert_allclose(frame.to_policy(np.array([150.0, 50.0])), [xs.mean() + 0.5, ys.mean() + 0.5], atol=0.6)
    np.testing.assert_allclose(frame.to_client(frame.to_policy(np.array([[3.0, 7.0]]))), [[3.0, 7.0]], atol=1e-4)
    # a client whose images are mirrored from the policy's (openpi's LIBERO convention): the square is at (50, 50)
    # in the client's image mirrored left to right, at (150, 50) in the one mirrored top to bottom
    for axis, sent, seen in (("x", img[:, ::-1], [50.0, 50.0]), ("y", img[::-1], [150.0, 50.0])):
        out, frame = _image(np.ascontiguousarray(sent), "rgb", 64, mirror=axis)
        ys, xs = np.nonzero(out[..., 0] > 128)  # back where the policy's own view of it has the square
        assert (ys.mean(), xs.mean()) == tuple(np.argwhere(resize_with_pad(img, 64)[0][..., 0] > 128).mean(0))
        np.testing.assert_allclose(frame.to_policy(np.array(seen)), [xs.mean() + 0.5, ys.mean() + 0.5], atol=0.6)
        np.testing.assert_allclose(frame.to_client(frame.to_policy(np.array([[3.0, 7.0]]))), [[3.0, 7.0]], atol=1e-4)


@pytest.mark.sim
def test_openpi_client_and_action_chunk_broker_against_our_server(tiny_dataset, compat_python, tmp_path):
    run = reasonact.train(tiny_dataset, tmp_path / "run", config="debug", steps=3, batch_size=4, reasoning="trace",
                          progress=False)
    policy = reasonact.load_policy(run)
    H, views = policy.info.horizon, policy.info.views
    assert len(views) == 2
    item = load_dataset(tiny_dataset)[7]
    image, wrist = _upscale(item["rgb"], 224), _upscale(item["images"][views[1]], 224)  # openpi sends 224 px
    obs_file = tmp_path / "obs.npz"
    np.savez(obs_file, image=image, wrist_image=wrist, state=item["state"], prompt=item["instruction"])
    local_obs = {"rgb": resize_with_pad(image, policy.info.resolution)[0], "state": item["state"],
                 "images": {views[1]: resize_with_pad(wrist, policy.info.resolution)[0]}}
    local = policy.predict(local_obs, item["instruction"])
    nfe_at_2 = policy.predict(local_obs, item["instruction"], diffusion_steps=2).nfe
    assert nfe_at_2 != local.nfe

    with BackgroundServer(policy) as url:
        r = subprocess.run([str(compat_python), str(ROOT / "tests" / "compat" / "openpi_client_check.py"), url,
                            str(obs_file), str(H)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    seen = json.loads(r.stdout.strip().splitlines()[-1])
    assert seen["metadata_policy"]["camera"] == ",".join(views)
    assert seen["metadata_policy"]["default_execute"] == policy.info.default_execute  # None: the whole chunk
    np.testing.assert_allclose(seen["actions"], local.actions, atol=1e-6)  # resized on the server, both views read
    scale = 224 / policy.info.resolution  # the trace comes back in pixels of the image the client sent
    np.testing.assert_allclose(seen["trace"], local.trace * scale, atol=1e-3)
    assert seen["scalar_steps"] == nfe_at_2  # a numpy scalar, packed the way openpi packs it
    assert seen["error"] and "missing field 'prompt'" in seen["error"]
    np.testing.assert_allclose(seen["after_error"], local.actions, atol=1e-6)
    broker = np.array(seen["broker_actions"])  # one action per call, a new chunk every H calls
    np.testing.assert_allclose(broker, local.actions[np.arange(2 * H + 1) % H], atol=1e-6)
    assert seen["broker_trace_whole"] and seen["healthz"] == [200, "ok"]


def _libero_raw_observation(suite: str, task: int, init_state: int, size: int) -> dict:
    """LIBERO's own environment as openpi's LIBERO example makes and starts it: robosuite's raw observation after
    the k-th standard init state and 10 no-op steps."""
    from reasonact.envs.libero import NOOP, _libero

    lib = _libero()
    from libero.libero.envs import OffScreenRenderEnv

    bench = lib["suites"][suite]
    t = bench.get_task(task)
    env = OffScreenRenderEnv(bddl_file_name=str(lib["bddl_root"] / t.problem_folder / t.bddl_file),
                             camera_heights=size, camera_widths=size)
    try:
        env.seed(7)
        env.reset()
        obs = env.set_init_state(bench.get_task_init_states(task)[init_state])
        for _ in range(10):
            obs, *_ = env.step(NOOP.tolist())
        return {**obs, "prompt": t.language}
    finally:
        env.close()


@pytest.mark.sim
def test_openpi_libero_example_drives_a_served_libero_policy(compat_python, tmp_path):
    from reasonact.envs import EVAL_SEED_BASE
    from reasonact.envs.libero import LiberoEnv, suite_tasks
    from reasonact.serve.protocol import parse_request

    policy = reasonact.load_policy(ROOT / "checkpoints" / "libero-spatial")
    env = LiberoEnv(suite_tasks("libero_spatial")[0], resolution=policy.info.resolution)
    try:
        ours = env.reset(EVAL_SEED_BASE)  # the first standard init state, settled: what the policy was trained on
    finally:
        env.close()
    raw = _libero_raw_observation("libero_spatial", 0, 0, 256)
    keys = ("agentview_image", "robot0_eye_in_hand_image", "robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos")
    np.savez(tmp_path / "raw.npz", prompt=raw["prompt"], **{k: raw[k] for k in keys})
    with BackgroundServer(policy) as url:
        r = subprocess.run([str(compat_python), str(ROOT / "tests" / "compat" / "openpi_libero_check.py"), url,
                            str(tmp_path / "raw.npz"), str(tmp_path / "sent.npz")], capture_output=True, text=True,
                           timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    sent = np.load(tmp_path / "sent.npz")
    assert list(sent["acks"]) == ["episode_start", "episode_end"]
    request = {"observation/image": sent["image"], "observation/wrist_image": sent["wrist_image"],
               "observation/state": sent["state"], "prompt": str(sent["prompt"])}
    kwargs, _ = parse_request(request, policy.info)
    # openpi's 8 numbers become the policy's state: position, gripper opening, the grip site's rotation
    np.testing.assert_allclose(kwargs["obs"]["state"], ours["state"], atol=1e-4)
    # both views come back to the orientation the policy was trained on, not a mirror or a half-turn of it
    wrist = policy.info.views[1]
    for got, want in ((kwargs["obs"]["rgb"], ours["rgb"]), (kwargs["obs"]["images"][wrist], ours["images"][wrist])):
        got, want = got.astype(np.float32), want.astype(np.float32)
        error = np.abs(got - want).mean()
        others = [np.abs(o - want).mean() for o in (got[:, ::-1], got[::-1], got[::-1, ::-1])]
        assert error < 8 and error < 0.3 * min(others), (error, others)
    actions = sent["actions"]
    assert actions.shape == (policy.info.horizon, 7) and np.abs(actions).max() <= 1.0
    np.testing.assert_allclose(actions, policy.predict(**kwargs).actions, atol=1e-6)


def _compat(compat_python, *args: str) -> dict:
    r = subprocess.run([str(compat_python), str(ROOT / "tests" / "compat" / "lerobot_check.py"), *args],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.sim
def test_lerobot_reads_a_collected_dataset_frame_for_frame(tiny_dataset, compat_python, tmp_path):
    ds = load_dataset(tiny_dataset)
    n, horizon = len(ds), 8
    reference = tmp_path / "reference.npz"
    np.savez(reference, views=np.array(ds.views), fps=ds.info["fps"], episodes=len(ds.episodes),
             images=np.stack([[ds.image(i, v) for v in ds.views] for i in range(n)]), state=ds.states,
             action=ds.actions, depth=np.stack([ds.depth(i) for i in range(n)]),
             instruction=np.array([ds[i]["instruction"] for i in range(n)]), episode_index=ds.episode_index,
             frame_index=ds.frame_index, chunks=ds.action_chunks(np.arange(n), horizon))
    seen = _compat(compat_python, "read", str(tiny_dataset), str(reference))
    assert seen["frames"] == n and seen["cameras"] == [f"observation.images.{v}" for v in ds.views]
    assert seen["task"] == ds[0]["instruction"]  # LeRobot's task is the instruction


def test_a_dataset_lerobot_wrote_loads_and_trains(compat_python, tmp_path):
    root, written = tmp_path / "by-lerobot", tmp_path / "written.npz"
    _compat(compat_python, "write", str(root), str(written))
    w = np.load(written)
    ds = load_dataset(root)
    assert len(ds) == len(w["action"]) and ds.views == ["front"] and ds.resolution == 32 and len(ds.episodes) == 2
    for i in range(len(ds)):
        item = ds[i]
        np.testing.assert_array_equal(item["rgb"], w["images"][i])
        np.testing.assert_allclose(item["state"], w["state"][i], atol=1e-6)
        np.testing.assert_allclose(item["action"], w["action"][i], atol=1e-6)
        assert item["instruction"] == w["task"][i] and "trace" not in item and "depth" not in item
    np.testing.assert_allclose(ds.action_chunks(np.array([10]), 8)[0, 3:], np.repeat(w["action"][13:14], 5, 0))

    run = reasonact.train(root, tmp_path / "run", config="debug", steps=60, batch_size=8, lr=3e-3, progress=False)
    losses = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert losses[-1] < 0.7 * losses[0]
    policy = reasonact.load_policy(run)
    pred = policy.predict({"rgb": w["images"][3], "state": w["state"][3]}, str(w["task"][3]))
    assert pred.actions.shape == (policy.info.horizon, 3)
    with pytest.raises(DatasetError, match="--reasoning act"):
        reasonact.train(root, tmp_path / "trace-run", config="debug", steps=2, reasoning="trace", progress=False)
