"""The run directory: written and read only through reasonact.checkpoint; runs written by earlier versions
load and predict exactly as they did."""

import json
import os
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

import reasonact
from reasonact import checkpoint as ckpt

ARTIFACTS = Path(__file__).parent / "artifacts"


def test_a_run_written_before_the_run_spec_existed_predicts_as_it_did():
    """tests/artifacts/run-v0: a debug run (depth+trace, steer-trained) and its predictions, both written by
    the code before RunSpec; its config.json still says sequence.mode."""
    assert "mode" in json.loads((ARTIFACTS / "run-v0" / "config.json").read_text())["sequence"]
    policy = reasonact.load_policy(ARTIFACTS / "run-v0", "cpu")
    assert policy.info.reasoning == "depth+trace" and policy.info.steer_trained
    golden = load_file(str(ARTIFACTS / "run-v0-predictions.safetensors"))
    instructions = ["reach the goal", "reach the goal", "close the drawer"]
    for k, text in enumerate(instructions):
        obs = {"rgb": golden[f"rgb{k}"], "state": golden[f"state{k}"], "instruction": text}
        p = policy.predict(obs, seed=k)
        np.testing.assert_array_equal(p.actions, golden[f"actions{k}"])
        np.testing.assert_array_equal(p.trace, golden[f"trace{k}"])
        np.testing.assert_array_equal(p.depth_tokens, golden[f"depth{k}"])
        steered = policy.predict(obs, trace=np.array([[10, 10], [20, 30], [40, 40]], np.float32), seed=k)
        np.testing.assert_array_equal(steered.actions, golden[f"steered_actions{k}"])
    # Read as their bins' means, the same chunk's actions leave the bin centres; what the model writes before
    # them (its trace, its depth) is decoded as before.
    policy.decode_options = replace(policy.decode_options, values="mean")
    p = policy.predict(obs, seed=k)
    np.testing.assert_array_equal(p.trace, golden[f"trace{k}"])
    centres = policy.tok.action.decode(policy.tok.action.encode(p.actions))
    assert np.abs(p.actions - golden[f"actions{k}"]).max() > 0 and not np.allclose(p.actions, centres)


def test_run_spec_round_trips_through_config_json(tmp_path):
    spec = ckpt.load_spec(ARTIFACTS / "run-v0")
    spec = replace(spec, train=replace(spec.train, lr=3e-4))
    ckpt.save_spec(tmp_path, spec, {"action": {}, "state": {}})
    back = ckpt.load_spec(tmp_path)
    assert back.model == spec.model and back.sequence == spec.sequence and back.train == spec.train
    assert back.data == spec.data and back.vocab == spec.vocab
    np.testing.assert_array_equal(back.state_norm.mean, spec.state_norm.mean)
    assert json.loads((tmp_path / "config.json").read_text())["sequence"]["reasoning"] == "depth+trace"
    with pytest.raises(FileNotFoundError, match="reasonact train"):
        ckpt.load_run(tmp_path)  # no weights: not a trained run


def test_loading_a_policy_imports_neither_the_trainer_nor_a_cycle():
    code = ("import sys, reasonact; p = reasonact.load_policy(sys.argv[1], 'cpu'); "
            "bad = [m for m in sys.modules if m in ('reasonact.training.loop', 'reasonact.training.setup', "
            "'reasonact.data.pipeline')]; assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code, str(ARTIFACTS / "run-v0")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_the_client_imports_without_torch():
    code = ("import sys; from reasonact.client import PolicyClient; from reasonact.interface import Prediction, "
            "PolicyInfo, PolicyLike; assert 'torch' not in sys.modules, 'torch was imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_run_files_are_readable_by_group_and_others_under_the_usual_umask(fake_data, tmp_path):
    old = os.umask(0o022)
    try:
        run = reasonact.train(fake_data, tmp_path / "run", config="debug", steps=2, progress=False)
        fresh = reasonact.fake_dataset(tmp_path / "data")
    finally:
        os.umask(old)
    files = [p for p in [*run.rglob("*"), *fresh.rglob("*")] if p.is_file()]
    assert any(p.name == "model.safetensors" for p in files) and any(p.name == "info.json" for p in files)
    for p in files:
        mode = p.stat().st_mode
        assert mode & stat.S_IRGRP and mode & stat.S_IROTH, f"{p} has mode {oct(mode)}"


SHIPPED = sorted(p.parent for p in (Path(__file__).parent.parent / "checkpoints").glob("*/model.safetensors"))


@pytest.mark.sim
@pytest.mark.parametrize("run", SHIPPED, ids=[p.name for p in SHIPPED])
def test_a_shipped_checkpoint_loads_and_acts_in_its_simulator(run):
    from reasonact import load_policy
    from reasonact.envs import make_env

    assert sum(f.stat().st_size for f in run.rglob("*") if f.is_file()) < 25e6
    policy = load_policy(run)
    info = policy.info
    env = make_env(info.tasks[0], resolution=info.resolution, camera=info.camera, state_mode=info.state_mode)
    try:
        obs = env.reset(10**6)
        pred = policy.predict(obs)
        assert pred.actions.shape == (info.horizon, info.action_dim) and np.isfinite(pred.actions).all()
        assert np.abs(pred.actions).max() <= 1.0
        # It moves the hand: executing the chunk changes the end effector's position.
        start = obs["ee_pos"].copy()
        for a in pred.actions:
            obs, _, _ = env.step(a)
        assert np.linalg.norm(obs["ee_pos"] - start) > 1e-3
    finally:
        env.close()


def test_checkpoints_are_shipped():
    assert SHIPPED, "checkpoints/ holds no model"


TRACE_RUN = Path(__file__).parent.parent / "checkpoints" / "mt10-trace"


@pytest.mark.sim
def test_the_shipped_trace_checkpoint_moves_the_hand_along_a_drawn_path():
    """Given a 10 cm path from the hand in each of four directions (pixels and depth, as the console gives it),
    the shipped steering model moves the hand along it, in the simulator: the same layout, four ways."""
    from reasonact import load_policy
    from reasonact.envs import depth_of, make_env, project

    policy = load_policy(TRACE_RUN)
    info = policy.info
    assert info.trace_depth
    env = make_env("reach-v3", resolution=info.resolution, camera=info.camera, state_mode=info.state_mode)
    try:
        for direction in ([1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0]):
            obs = env.reset(10**6)
            start = obs["ee_pos"].copy()
            end = start + 0.1 * np.array(direction)
            for _ in range(4):  # replanning every 2 steps, the path ahead from where the hand is
                K, E = obs["camera_intrinsics"], obs["camera_extrinsics"]
                pts = np.stack([obs["ee_pos"], end])
                trace = np.concatenate([project(pts, K, E), depth_of(pts, E)[:, None]], -1).astype(np.float32)
                for a in policy.predict(obs, trace=trace, diffusion_steps=1).actions[:2]:
                    obs, _, _ = env.step(a)
            moved = obs["ee_pos"] - start
            along = float(moved @ direction)
            assert along > 0.03 and np.linalg.norm(moved - along * np.array(direction)) < 0.5 * along, (direction, moved)
    finally:
        env.close()
