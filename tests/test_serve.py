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
            ({**obs, "trace": np.zeros((3, 3))}, "(N, 2)"),
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
