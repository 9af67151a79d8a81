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
from reasonact.serve.protocol import resize_with_pad
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
    np.testing.assert_allclose(seen["actions"], local.actions, atol=1e-6)  # resized on the server, both views read
    scale = 224 / policy.info.resolution  # the trace comes back in pixels of the image the client sent
    np.testing.assert_allclose(seen["trace"], local.trace * scale, atol=1e-3)
    assert seen["scalar_steps"] == nfe_at_2  # a numpy scalar, packed the way openpi packs it
    assert seen["error"] and "missing field 'prompt'" in seen["error"]
    np.testing.assert_allclose(seen["after_error"], local.actions, atol=1e-6)
    broker = np.array(seen["broker_actions"])  # one action per call, a new chunk every H calls
    np.testing.assert_allclose(broker, local.actions[np.arange(2 * H + 1) % H], atol=1e-6)
    assert seen["broker_trace_whole"] and seen["healthz"] == [200, "ok"]


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
