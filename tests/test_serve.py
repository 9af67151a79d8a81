import json
import threading
import urllib.request

import numpy as np
import pytest

import reasonact
from reasonact.client import PolicyClient, PolicyServerError
from reasonact.data import load_dataset
from reasonact.serve.codec import packb, unpackb
from reasonact.serve.server import BackgroundServer


@pytest.fixture(scope="module")
def policy(fake_data, tmp_path_factory):
    run = reasonact.train(fake_data, tmp_path_factory.mktemp("runs") / "serve", config="debug", steps=3,
                          batch_size=4, reasoning="trace", progress=False)
    return reasonact.load_policy(run)


@pytest.fixture(scope="module")
def obs(fake_data):
    item = load_dataset(fake_data)[5]
    return {"rgb": item["rgb"], "state": item["state"], "instruction": item["instruction"]}


def test_codec_round_trips_arrays_and_refuses_objects():
    msg = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": [np.uint8(3), "x"], "c": None}
    back = unpackb(packb(msg))
    np.testing.assert_array_equal(back["a"], msg["a"])
    assert back["a"].dtype == np.float32 and back["b"] == [3, "x"] and back["c"] is None
    with pytest.raises(ValueError):
        packb({"o": np.array([object()])})
    with pytest.raises(ValueError, match="msgpack"):
        unpackb(b"\xc1\xc1 not msgpack")


def test_round_trip_over_a_real_socket_equals_the_in_process_prediction(policy, obs):
    local = policy.predict(obs)
    with BackgroundServer(policy) as url, PolicyClient(url) as client:
        remote = client.predict(obs)
        np.testing.assert_array_equal(remote.actions, local.actions)
        np.testing.assert_array_equal(remote.trace, local.trace)
        assert remote.nfe == local.nfe
        timing = client.last_reply["server_timing"]
        assert timing["predict_ms"] > 0 and timing["total_ms"] >= timing["predict_ms"]
        h = client.health()
        assert h["status"] == "ok" and h["policy"]["decoder"] == "diffusion" and h["served"] == 1
        http = json.loads(urllib.request.urlopen(url.replace("ws://", "http://") + "/health", timeout=10).read())
        assert http["status"] == "ok" and http["policy"]["resolution"] == 32
        steered = client.predict(obs, trace=np.array([[5.0, 5.0], [20.0, 25.0], [30.0, 30.0]]))
        assert steered.trace_given and steered.actions.shape == (8, 4)


def test_malformed_requests_get_clear_errors_and_the_server_keeps_serving(policy, obs):
    with BackgroundServer(policy, max_payload=64 * 1024) as url, PolicyClient(url) as client:
        cases = [
            ({"type": "predict", "state": obs["state"], "instruction": "x"}, "missing field 'rgb'"),
            ({**obs, "rgb": obs["rgb"].astype(np.float32)}, "uint8"),
            ({**obs, "rgb": np.zeros((32, 32, 4), np.uint8)}, "(H, W, 3)"),
            ({**obs, "state": np.zeros(2, np.float32)}, "7 numbers"),
            ({**obs, "instruction": ""}, "instruction"),
            ({**obs, "trace": np.zeros((3, 4))}, "(N, 2)"),
            ({**obs, "diffusion_steps": "many"}, "'diffusion_steps' must be an integer"),
            ({"type": "dance"}, "unknown request type"),
            ({**obs, "rgb": np.zeros((200, 200, 3), np.uint8)}, "exceeds the server's limit"),
        ]
        for msg, expected in cases:
            with pytest.raises(PolicyServerError) as e:
                client.request(msg)
            assert expected in str(e.value), (expected, str(e.value))
        with pytest.raises(PolicyServerError, match="msgpack"):
            client.send_raw(b"\x93\x01garbage")
        assert client.predict(obs).actions.shape == (8, 4)  # still serving, same connection


def test_images_of_another_size_are_resized_on_the_server(policy, obs):
    from PIL import Image

    big = np.asarray(Image.fromarray(obs["rgb"]).resize((96, 96), Image.NEAREST))  # 3x, every pixel a 3x3 block
    local = policy.predict(obs)
    with BackgroundServer(policy) as url, PolicyClient(url) as client:
        remote = client.predict({**obs, "rgb": big})
        np.testing.assert_array_equal(remote.actions, local.actions)
        np.testing.assert_allclose(remote.trace, local.trace * 3, atol=1e-4)  # in pixels of the image sent


def test_a_trace_with_depth_goes_over_the_wire_in_the_client_image_pixels_and_metres(fake_data, obs, tmp_path):
    from PIL import Image

    run = reasonact.train(fake_data, tmp_path / "depth", config="debug", steps=2, batch_size=4, reasoning="trace",
                          trace_depth=True, steer_prob=0.3, progress=False)
    policy = reasonact.load_policy(run)
    big = np.asarray(Image.fromarray(obs["rgb"]).resize((64, 64), Image.NEAREST))  # 2x the policy's pixels
    given = np.array([[5.0, 5.0, 0.8], [20.0, 25.0, 0.85], [30.0, 30.0, 0.9]], np.float32)
    local, local_steered = policy.predict(obs), policy.predict(obs, trace=given)
    with BackgroundServer(policy) as url, PolicyClient(url) as client:
        assert client.info.trace_depth
        remote = client.predict({**obs, "rgb": big})
        np.testing.assert_allclose(remote.trace, local.trace * 2, atol=1e-4)
        np.testing.assert_array_equal(remote.trace_depth, local.trace_depth)  # metres, whatever the image size
        steered = client.predict({**obs, "rgb": big}, trace=given * np.array([2, 2, 1], np.float32))
        np.testing.assert_array_equal(steered.actions, local_steered.actions)
        np.testing.assert_allclose(steered.trace_depth, local_steered.trace_depth, atol=1e-6)


def test_several_clients_at_once(policy, obs):
    expected = policy.predict(obs).actions
    results, errors = [], []

    def worker():
        try:
            with PolicyClient(url) as c:
                for _ in range(3):
                    results.append(c.predict(obs).actions)
        except Exception as e:  # collected and asserted below
            errors.append(e)

    with BackgroundServer(policy) as url:
        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    assert not errors and len(results) == 12
    for a in results:
        np.testing.assert_array_equal(a, expected)


class GatedPolicy:
    """The test policy, whose predictions wait until ``gate`` is set (a slow or stuck model)."""

    def __init__(self, policy):
        self.inner, self.info = policy, policy.info
        self.gate, self.started = threading.Event(), threading.Event()

    def predict(self, **kwargs):
        self.started.set()
        self.gate.wait(60)
        return self.inner.predict(**kwargs)


def test_requests_beyond_the_bounds_are_refused_and_others_are_answered_at_once(policy, obs):
    import time

    with BackgroundServer(policy) as url, PolicyClient(url) as attacker, PolicyClient(url) as other:
        cases = [
            ({**obs, "diffusion_steps": 2**63 - 1}, "'diffusion_steps' must be from 1 to 64"),
            ({**obs, "diffusion_steps": 0}, "'diffusion_steps' must be from 1 to 64"),
            ({**obs, "seed": -1}, "'seed' must be from 0"),
            ({**obs, "state": np.full(7, np.nan, np.float32)}, "NaN or infinity"),
            ({**obs, "state": np.full(7, np.inf, np.float32)}, "NaN or infinity"),
            ({**obs, "instruction": "x" * 100_000}, "at most 1000 are accepted"),
            ({**obs, "rgb": np.zeros((1, 4000, 3), np.uint8)}, "at most 2048 pixels a side"),
            ({**obs, "trace": np.zeros((5000, 2), np.float32)}, "at most 1000 are accepted"),
            ({**obs, "images": {"elsewhere": obs["rgb"]}}, "does not read"),
        ]
        for msg, expected in cases:
            with pytest.raises(PolicyServerError) as e:
                attacker.request(msg)
            assert expected in str(e.value), (expected, str(e.value))
        t0 = time.perf_counter()
        assert other.predict(obs).actions.shape == (8, 4)
        assert time.perf_counter() - t0 < 1.0
        assert other.health()["status"] == "ok"


def test_a_stuck_prediction_times_out_and_health_says_stuck(policy, obs):
    slow = GatedPolicy(policy)
    with BackgroundServer(slow, request_timeout=0.5) as url, PolicyClient(url) as client:
        health_url = url.replace("ws://", "http://") + "/healthz"
        with pytest.raises(PolicyServerError, match="did not finish within 0.5 s"):
            client.predict(obs)
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(health_url, timeout=10)
        assert e.value.code == 503 and json.loads(e.value.read())["status"] == "stuck"
        slow.gate.set()
        # the connection still serves: the late reply is dropped, the next request answered
        assert client.predict(obs).actions.shape == (8, 4)
        assert json.loads(urllib.request.urlopen(health_url, timeout=10).read())["status"] == "ok"


def test_the_request_of_a_client_that_left_is_dropped_before_it_runs(policy, obs):
    import time

    from websockets.sync.client import connect

    slow = GatedPolicy(policy)
    with BackgroundServer(slow) as url:
        first = PolicyClient(url)
        first._ws.send(packb({**obs, "type": "predict"}))  # holds the worker until the gate opens
        assert slow.started.wait(30)
        with connect(url) as leaver:  # queues a request behind it, then hangs up
            leaver.recv(timeout=10)  # metadata
            leaver.send(packb({**obs, "type": "predict"}))
            time.sleep(0.2)
        slow.gate.set()
        assert unpackb(first._ws.recv(timeout=30))["type"] == "prediction"
        with PolicyClient(url) as after:
            h = after.health()
        first.close()
    assert h["served"] == 1 and h["dropped"] == 1


def test_pages_of_other_sites_cannot_open_a_websocket(policy):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    with BackgroundServer(policy) as url:
        with pytest.raises(InvalidStatus) as e:
            connect(url, origin="http://evil.example")
        assert e.value.response.status_code == 403 and b"--allow-origin" in e.value.response.body
        for origin in ("http://localhost:3000", "http://127.0.0.1:8000", None):  # this machine, or a program
            with connect(url, origin=origin) as ws:
                assert unpackb(ws.recv(timeout=10))["server"] == "reasonact"
    with BackgroundServer(policy, allow_origins=("http://lab-pc:3000",)) as url:
        with connect(url, origin="http://lab-pc:3000") as ws:
            assert unpackb(ws.recv(timeout=10))["server"] == "reasonact"
