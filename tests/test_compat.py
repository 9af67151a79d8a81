"""Compatibility with the real packages our users run: openpi's own client (openpi-client 0.1.2, in the
side environment .venv-compat that scripts/setup-compat.sh builds, since it pins numpy<2)."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

import reasonact
from reasonact.data import load_dataset
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
