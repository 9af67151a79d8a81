"""End to end: headless Chromium drives the steering console -- loads the page, draws a trace, presses
Step -- and checks that the page shows the new frame and the steered trace. A screenshot is kept in
test-artifacts/ (or $REASONACT_TEST_ARTIFACTS)."""

import json
import os
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from cdp import Chromium, find_chromium

import reasonact
from reasonact.serve.console import BackgroundConsole

pytestmark = pytest.mark.sim

ARTIFACTS = Path(os.environ.get("REASONACT_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))


@pytest.fixture(scope="module")
def policy(tiny_dataset, tmp_path_factory):
    run = reasonact.train(tiny_dataset, tmp_path_factory.mktemp("runs") / "console", config="debug", steps=3,
                          batch_size=4, reasoning="depth+trace", depth_vae_steps=30, progress=False)
    return reasonact.load_policy(run)


def test_console_serves_its_own_assets(policy):
    with BackgroundConsole(policy, "reach-v3") as url:
        page = urllib.request.urlopen(url + "/", timeout=10).read().decode()
        assert "<canvas id=\"camera\"" in page and "http://" not in page.replace("http://www.w3.org", "")
        # before the first state arrives the panels say they are waiting, not that the policy lacks them
        assert "Waiting for the first prediction" in page and "writes no" not in page
        for asset in ("/console.js", "/console.css"):
            assert urllib.request.urlopen(url + asset, timeout=10).status == 200
        assert json.loads(urllib.request.urlopen(url + "/health", timeout=10).read())["task"] == "reach-v3"
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(url + "/../../etc/passwd", timeout=10)


def test_browser_draws_a_trace_steps_and_sees_the_steered_episode(policy):
    assert find_chromium(), "chromium is missing: `make test` installs Debian's chromium package"
    with BackgroundConsole(policy, "reach-v3") as url, Chromium(url + "/", width=1280, height=900) as browser:
        browser.wait_for("window.consoleState && window.consoleState.frame")
        first = browser.evaluate("window.consoleState")
        assert first["step"] == 0 and first["given_trace"] is None and first["trace"] is not None
        assert browser.evaluate("getComputedStyle(document.getElementById('depth')).display") != "none"
        # depth and attention both in view at 1280 x 900, without scrolling
        browser.wait_for("getComputedStyle(document.getElementById('attention')).display !== 'none'")
        bottom = browser.evaluate("document.getElementById('attention').getBoundingClientRect().bottom")
        assert 0 < bottom <= browser.evaluate("window.innerHeight") <= 900
        # The policy reads a second view (the wrist camera): the page shows it.
        assert policy.info.views == ("zoom", "gripperPOV")
        assert browser.evaluate("document.querySelectorAll('#views img').length") == 1
        assert browser.evaluate("document.querySelector('#views img').title") == "gripperPOV"

        # Draw a path across the camera image, from its left third to its right third.
        rect = browser.evaluate("(() => { const r = document.getElementById('camera').getBoundingClientRect();"
                                " return [r.x, r.y, r.width, r.height]; })()")
        x0, y0, w, h = rect
        pts = [(x0 + w * (0.3 + 0.05 * k), y0 + h * (0.6 - 0.04 * k)) for k in range(9)]
        browser.drag(pts)
        state = browser.wait_for("window.consoleState.given_trace && window.consoleState")
        res = state["resolution"]
        drawn0 = state["drawn"][0]
        assert abs(drawn0[0] - 0.3 * res) < 1.0 and abs(drawn0[1] - 0.6 * res) < 1.0
        end = state["drawn"][-1]
        assert abs(end[0] - 0.7 * res) < 1.0 and abs(end[1] - 0.28 * res) < 1.0
        assert state["trace"] is not None  # the trace the policy followed is the drawn one, resampled
        assert abs(state["trace"][-1][0] - end[0]) < 1.0 and abs(state["trace"][-1][1] - end[1]) < 1.0

        # The drawn trace is painted in yellow where it ends.
        cx, cy = 0.7 * 512, 0.28 * 512
        pixel = browser.evaluate(f"Array.from(document.getElementById('camera').getContext('2d')"
                                 f".getImageData({cx:.0f}, {cy:.0f}, 1, 1).data)")
        assert pixel[0] > 200 and pixel[1] > 150 and pixel[2] < 100, pixel

        # Step: a new frame arrives, and the episode stays steered.
        browser.click("#step")
        after = browser.wait_for("window.consoleState.step > 0 && window.consoleState")
        assert after["frame"] != first["frame"]
        assert after["given_trace"] is not None and len(after["path"]) > 1
        # given from the gripper's pixel (where the executed path is now), as every training trace starts
        assert np.allclose(after["given_trace"][0], after["path"][-1], atol=1e-3)
        assert browser.evaluate("document.body.dataset.step") == str(after["step"])
        shot = browser.screenshot(ARTIFACTS / "console.png")
        assert shot.stat().st_size > 10_000

        browser.click("#clear")
        cleared = browser.wait_for("window.consoleState.drawn === null && window.consoleState")
        assert cleared["given_trace"] is None
        browser.click("#reset")
        browser.wait_for(f"window.consoleState.seed !== {after['seed']} && window.consoleState.step === 0")


def test_bad_messages_get_errors_and_the_session_carries_on(policy):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    with BackgroundConsole(policy, "reach-v3") as url:
        ws_url = url.replace("http://", "ws://") + "/ws"
        with connect(ws_url) as ws:
            assert json.loads(ws.recv(timeout=60))["step"] == 0
            bad = ['{"cmd": "trace", "points": [[NaN, NaN], [1, 1]]}', '{"cmd": "trace", "points": [[1, 2, 3]]}',
                   '{"cmd": "trace", "points": "here"}', '{"cmd": "reset", "seed": "x"}', '{"cmd": "reset", "seed": -4}',
                   '[1, 2]', 'not json', '{"cmd": "dance"}']
            for raw in bad:
                ws.send(raw)
                reply = json.loads(ws.recv(timeout=60))
                assert reply["type"] == "error" and reply["error"], (raw, reply)
            ws.send('{"cmd": "step"}')
            state = json.loads(ws.recv(timeout=60))
            assert state["type"] == "state" and state["step"] > 0 and state["drawn"] is None
        with pytest.raises(InvalidStatus):
            connect(ws_url, origin="http://evil.example")


def test_a_depth_trace_policy_is_given_the_drawing_at_the_hands_height_and_corrected(tiny_dataset, tmp_path, policy):
    from reasonact.envs import depth_of, project, unproject
    from reasonact.serve.console import ConsoleSession

    run = reasonact.train(tiny_dataset, tmp_path / "depth-trace", config="debug", steps=2, batch_size=4,
                          reasoning="trace", trace_depth=True, trace_relative=True, progress=False)
    session = ConsoleSession(reasonact.load_policy(run), "reach-v3", correct=0.5)
    try:
        hand = session.obs["ee_pos"]
        K, E = session.obs["camera_intrinsics"], session.obs["camera_extrinsics"]
        ahead = hand + np.array([[0.05, 0.0, 0.0], [0.05, 0.08, 0.0]])  # two legs at the hand's height
        session.set_trace(project(ahead, K, E).tolist())
        given = session.given
        assert given.shape == (3, 3)  # the gripper's pixel, then the drawing, each with its depth
        # 5 cm from the hand is beyond the correction's 3 cm radius: the drawing as it is
        np.testing.assert_allclose(given[:, :2], np.r_[project(hand, K, E).reshape(1, 2), project(ahead, K, E)],
                                   atol=1e-3)
        np.testing.assert_allclose(given[:, 2], depth_of(np.r_[hand[None], ahead], E), atol=1e-4)
        assert session.pred.trace_given and len(session.message()["given_trace"][0]) == 2  # the page draws pixels

        # a path starting 1 cm from the hand: each call shifts it by half the residual more, in the world
        near = hand + np.array([[0.01, 0.0, 0.0], [0.05, 0.0, 0.0]])
        for calls in (1, 2):
            session.set_trace(project(near, K, E).tolist()) if calls == 1 else session.predict()
            shifted = unproject(session.given[1:, :2], session.given[1:, 2], K, E)
            np.testing.assert_allclose(shifted, near + [0.005 * calls, 0.0, 0.0], atol=2e-4)
        session.clear_trace()
        session.set_trace(project(near, K, E).tolist())  # a new drawing starts its sum afresh
        np.testing.assert_allclose(unproject(session.given[1:, :2], session.given[1:, 2], K, E),
                                   near + [0.005, 0.0, 0.0], atol=2e-4)
    finally:
        session.close()
    with pytest.raises(ValueError, match="--trace-depth"):
        ConsoleSession(policy, "reach-v3", correct=0.2)  # a trace of pixels alone has no world path to shift
