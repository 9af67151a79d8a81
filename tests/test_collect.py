import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import CAMERAS

import reasonact.data.collect as collect_mod
from reasonact.data import DatasetError, load_dataset
from reasonact.data.collect import collect
from reasonact.envs import make_env

pytestmark = pytest.mark.sim


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((root / "data").rglob("*.parquet"))}


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reasonact", *args], capture_output=True, text=True, timeout=300)


def test_collected_dataset_round_trips(tiny_dataset):
    ds = load_dataset(tiny_dataset)
    info = json.loads((tiny_dataset / "meta" / "info.json").read_text())
    assert info["total_episodes"] == 4 and len(ds.episodes) == 4
    assert info["total_frames"] == len(ds) == sum(e["length"] for e in ds.episodes)
    assert set(info["seeds"]) == {"reach-v3", "push-v3"} and all(len(v) == 2 for v in info["seeds"].values())
    for key in ("fps", "features", "total_episodes", "total_frames", "seeds"):
        assert key in info

    assert ds.views == ["zoom", "gripperPOV"] and info["cameras"] == ds.views
    for view in ds.views:
        assert f"observation.images.{view}" in info["features"]
        assert info["features"][f"observation.camera_extrinsics.{view}"]["shape"] == [16]  # stored flat
    item = ds[0]
    assert item["rgb"].shape == (48, 48, 3) and item["rgb"].dtype == np.uint8
    assert set(item["images"]) == {"zoom", "gripperPOV"} and item["images"]["zoom"] is not item["images"]["gripperPOV"]
    np.testing.assert_array_equal(item["images"]["zoom"], item["rgb"])
    assert item["points"].shape == (2, 2)
    assert item["depth"].shape == (48, 48) and item["depth"].dtype == np.float32
    assert item["trace"].shape == (5, 2)
    for key in ("state", "action", "ee_pos", "camera_intrinsics", "camera_extrinsics", "instruction", "task",
                "episode_index", "frame_index"):
        assert key in item

    # The stored first frame equals what the simulator renders for the recorded seed.
    ep = ds.episodes[0]
    env = make_env(ep["task"], resolution=48, camera="zoom,gripperPOV")
    obs = env.reset(ep["seed"])
    env.close()
    first = ds[ep["first_index"]]
    np.testing.assert_array_equal(first["rgb"], obs["rgb"])
    for view in ds.views:  # every view's image and camera matrices, as the simulator has them
        np.testing.assert_array_equal(first["images"][view], obs["images"][view])
        np.testing.assert_allclose(first["cameras"][view][0], obs["cameras"][view][0], atol=1e-5)
        np.testing.assert_allclose(first["cameras"][view][1], obs["cameras"][view][1], atol=1e-5)
    # The wrist camera moves with the hand; the zoomed view stays where it is.
    frames = ds.episode_frames(0)
    last = ds[frames[-1]]
    assert np.abs(last["cameras"]["gripperPOV"][1] - first["cameras"]["gripperPOV"][1]).max() > 1e-3
    np.testing.assert_allclose(last["cameras"]["zoom"][1], first["cameras"]["zoom"][1], atol=1e-6)
    np.testing.assert_allclose(first["depth"], np.minimum(obs["depth"], 6.5535), atol=1e-4)
    np.testing.assert_allclose(first["state"], obs["state"], atol=1e-6)
    assert first["instruction"] == obs["instruction"]
    # Every episode ends in success, and only there.
    table = pq.read_table(tiny_dataset / ep["file"], columns=["next.success"])
    flags = table["next.success"].to_pylist()
    assert flags[-1] and not any(flags[:-1])
    # Every file has the mode the user's umask gives (atomic writes must not leave 0600 behind).
    mask = os.umask(0)
    os.umask(mask)
    for f in (p for p in tiny_dataset.rglob("*") if p.is_file()):
        assert f.stat().st_mode & 0o777 == 0o666 & ~mask, f


def test_stats_match_the_data(tiny_dataset):
    ds = load_dataset(tiny_dataset)
    for key, values in (("action", ds.actions), ("state", ds.states)):
        s = ds.stats[key]
        np.testing.assert_allclose(s["mean"], values.mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(s["std"], values.std(0), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(s["min"], values.min(0))
        np.testing.assert_allclose(s["max"], values.max(0))
        np.testing.assert_allclose(s["q01"], np.quantile(values, 0.01, axis=0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(s["q99"], np.quantile(values, 0.99, axis=0), rtol=1e-5, atol=1e-6)


def test_trace_runs_from_now_to_the_episode_end(tiny_dataset):
    ds = load_dataset(tiny_dataset)
    frames = ds.episode_frames(1)
    first, last = frames[0], frames[-1]
    for i in (first, first + 7, last):
        tr = ds[i]["trace"]
        np.testing.assert_allclose(tr, ds.trace(i), atol=1e-3)
        from reasonact.envs import project

        np.testing.assert_allclose(tr[0], project(ds.ee_pos[i], ds.intrinsics[i], ds.extrinsics[i]), atol=1e-3)
        np.testing.assert_allclose(tr[-1], project(ds.ee_pos[last], ds.intrinsics[i], ds.extrinsics[i]), atol=1e-3)
    # At the last frame every point is the same place.
    assert np.ptp(ds[last]["trace"], axis=0).max() < 1e-3


def test_action_chunks_repeat_the_last_action_past_the_end(tiny_dataset):
    ds = load_dataset(tiny_dataset)
    frames = ds.episode_frames(0)
    chunk = ds.action_chunks(np.array([frames[-3]]), 8)[0]
    np.testing.assert_array_equal(chunk[:3], ds.actions[frames[-3]: frames[-1] + 1])
    np.testing.assert_array_equal(chunk[3:], np.repeat(ds.actions[frames[-1]][None], 5, 0))


def test_resume_and_extension_keep_earlier_episodes_byte_identical(tmp_path):
    out = tmp_path / "ds"
    collect(out, suite="reach-v3", episodes_per_task=2, resolution=32, workers=1, progress=False)
    before = _digests(out)
    again = collect(out, suite="reach-v3", episodes_per_task=2, resolution=32, workers=1, progress=False)
    assert again.new_episodes == 0 and _digests(out) == before
    more = collect(out, suite="reach-v3", episodes_per_task=3, resolution=32, workers=1, progress=False)
    assert more.new_episodes == 1
    after = _digests(out)
    assert len(after) == 3 and all(after[k] == v for k, v in before.items())
    seeds = [e["seed"] for e in load_dataset(out).episodes]
    assert len(set(seeds)) == 3


def test_task_episodes_gives_named_tasks_their_own_count(tmp_path):
    out = tmp_path / "ds"
    s = collect(out, suite="mt10", tasks="reach-v3,drawer-close-v3", episodes_per_task=1,
                task_episodes={"drawer-close-v3": 2}, resolution=32, workers=1, progress=False)
    assert s.episodes == {"reach-v3": 1, "drawer-close-v3": 2} and s.new_episodes == 3
    tasks = [e["task"] for e in load_dataset(out).episodes]
    assert sorted(tasks) == ["drawer-close-v3", "drawer-close-v3", "reach-v3"]
    with pytest.raises(ValueError, match="not among the tasks collected"):
        collect(out, suite="mt10", tasks="reach-v3", episodes_per_task=1, task_episodes={"push-v3": 3}, resolution=32)
    with pytest.raises(ValueError, match="must be a positive integer"):
        collect(out, suite="mt10", tasks="reach-v3", episodes_per_task=1, task_episodes={"reach-v3": 0}, resolution=32)


def test_a_crash_loses_only_the_episode_in_flight(tmp_path, monkeypatch):
    out = tmp_path / "ds"
    real = collect_mod.run_expert_episode
    calls = {"n": 0}

    def flaky(*args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated crash")
        return real(*args)

    monkeypatch.setattr(collect_mod, "run_expert_episode", flaky)
    with pytest.raises(RuntimeError, match="simulated crash"):
        collect(out, suite="reach-v3", episodes_per_task=4, resolution=32, workers=1, progress=False)
    saved = _digests(out)
    assert len(saved) == 2
    with pytest.raises(DatasetError, match="incomplete"):
        load_dataset(out)
    monkeypatch.setattr(collect_mod, "run_expert_episode", real)
    summary = collect(out, suite="reach-v3", episodes_per_task=4, resolution=32, workers=1, progress=False)
    assert summary.new_episodes == 2
    final = _digests(out)
    assert all(final[k] == v for k, v in saved.items()) and len(final) == 4
    assert len(load_dataset(out).episodes) == 4
    last = out / sorted(final)[-1]  # a damaged episode file: named, with the way out
    last.write_bytes(last.read_bytes()[:100])
    with pytest.raises(DatasetError, match="is damaged.*delete it"):
        collect(out, suite="reach-v3", episodes_per_task=4, resolution=32, workers=1, progress=False)
    last.unlink()
    assert collect(out, suite="reach-v3", episodes_per_task=4, resolution=32, workers=1, progress=False).new_episodes == 1
    assert len(load_dataset(out).episodes) == 4


def test_a_task_the_expert_keeps_failing_is_given_up_and_not_retried(tmp_path, monkeypatch):
    out = tmp_path / "ds"
    real = collect_mod.run_expert_episode
    tried = []

    def failing(task, seed, *args):
        tried.append((task, seed))
        return {"task": task, "seed": seed, "expert": args[3], "success": False, "length": 1}

    monkeypatch.setattr(collect_mod, "MAX_FAILURES_PER_TASK", 3)
    monkeypatch.setattr(collect_mod, "run_expert_episode", failing)
    summary = collect(out, suite="reach-v3", episodes_per_task=5, resolution=32, workers=1, progress=False)
    assert summary.gave_up == ["reach-v3"] and len(tried) == 3 and "gave up on reach-v3" in str(summary)
    again = collect(out, suite="reach-v3", episodes_per_task=5, resolution=32, workers=1, progress=False)
    assert again.gave_up == ["reach-v3"] and len(tried) == 3  # nothing retried
    # An expert that fails often but not always (a random path into the scene) is not given up: one success in
    # four tries is above the 10% a task needs to be kept.
    calls = []

    def sometimes(task, seed, *args):
        calls.append(seed)
        if len(calls) % 4 == 1:
            return real(task, seed, *args)
        return {"task": task, "seed": seed, "expert": args[3], "success": False, "length": 1}

    monkeypatch.setattr(collect_mod, "run_expert_episode", sometimes)
    some = collect(tmp_path / "some", suite="reach-v3", episodes_per_task=2, resolution=32, workers=1, progress=False)
    assert some.new_episodes == 2 and not some.gave_up and len(calls) == 5  # 3 failures after the first success
    # The other expert's failures are its own: random paths on the same task are still collected.
    monkeypatch.setattr(collect_mod, "run_expert_episode", real)
    paths = collect(out, suite="reach-v3", episodes_per_task=1, resolution=32, workers=1, expert="path",
                    path_hold=3, progress=False)
    assert paths.new_episodes == 1 and not paths.gave_up
    ds = load_dataset(out)
    assert ds.episodes[0]["seed"] not in {s for _, s in tried}
    # --path-hold: the episode ends with the hand kept at the path's last waypoint for 3 more steps.
    from reasonact.envs.paths import PathExpert

    ee, actions = ds.ee_pos[ds.episode_frames(0)], ds.actions[ds.episode_frames(0)]
    expert = PathExpert.for_episode("reach-v3", ds.episodes[0]["seed"], ee[0])
    np.testing.assert_array_equal(actions[-3:, :3], 0)
    assert np.abs(actions[:-3, :3]).max(axis=1).min() > 0  # it moved until it got there
    assert (np.linalg.norm(ee[-3:] - expert.waypoints[-1], axis=1) < expert.tolerance + 0.012).all()
    assert np.ptp(ee[:, 2]) < 0.025  # waypoints at the hand's starting height (the arm sways by a centimetre or two)
    # --path-heights random: the next random path goes down and up through its own waypoints.
    more = collect(out, suite="reach-v3", episodes_per_task=2, resolution=32, workers=1, expert="path",
                   path_heights="random", progress=False)
    assert more.new_episodes == 1
    ds = load_dataset(out)
    ee = ds.ee_pos[ds.episode_frames(1)]
    expert = PathExpert.for_episode("reach-v3", ds.episodes[1]["seed"], ee[0], planar=False)
    assert np.ptp(expert.waypoints[:, 2]) > 0.05 and np.ptp(ee[:, 2]) > 0.05
    assert np.linalg.norm(ee[-1] - expert.waypoints[-1]) < expert.tolerance + 0.012
    # --expert short: a few centimetres, the last waypoint closed to millimetres and held there.
    short = collect(out, suite="reach-v3", episodes_per_task=1, resolution=32, workers=1, expert="short",
                    path_hold=5, path_settle=True, path_heights="random", progress=False)
    assert short.new_episodes == 1 and "short-path" in str(short)
    ds = load_dataset(out)
    (i,) = [i for i, e in enumerate(ds.episodes) if e["expert"] == "short"]
    from reasonact.envs.paths import SHORT_PATHS

    ee = ds.ee_pos[ds.episode_frames(i)]
    expert = PathExpert.for_episode("reach-v3", ds.episodes[i]["seed"], ee[0], planar=False, **SHORT_PATHS)
    assert ds.path_frames[ds.episode_frames(i)].all() and np.linalg.norm(ee[-1] - expert.waypoints[-1]) < 0.004
    assert np.linalg.norm(ee - ee[0], axis=1).max() < 0.09  # one or two legs of at most 4 cm
    # --expert donor: the hand follows, in this layout, the scripted expert's path on another layout.
    donor = collect(out, suite="reach-v3", episodes_per_task=1, resolution=32, workers=1, expert="donor",
                    progress=False)
    assert donor.new_episodes == 1 and "donor-path" in str(donor)
    ds = load_dataset(out)
    (i,) = [i for i, e in enumerate(ds.episodes) if e["expert"] == "donor"]
    frames = ds.episode_frames(i)
    assert ds.path_frames[frames].all()  # trained with the trace given, as random paths are
    from reasonact.envs import make_env
    from reasonact.envs.paths import donor_seed
    from reasonact.steering import distance_to_path

    env = make_env("reach-v3", resolution=32)
    given, _, ok = env.expert_path(donor_seed(ds.episodes[i]["seed"]))
    env.close()
    ee = ds.ee_pos[frames]
    ours = load_dataset(out).ee_pos[ds.episode_frames(0)]  # this task's expert on the first layout
    assert ok and np.linalg.norm(ee[-1] - given[-1]) < 0.03  # it ends where the other layout's goal was...
    assert distance_to_path(ee, given).mean() < 0.01  # ...along that layout's path
    assert distance_to_path(ee, ours).mean() > 0.03  # which is not this layout's own
    for bad, match in ((dict(expert="path", path_hold=-1), "non-negative"), (dict(path_hold=5), "path episodes"),
                       (dict(expert="path", path_heights="up"), "hand, random"),
                       (dict(expert="path", path_settle=True), "path_hold > 0"), (dict(path_heights="random"), "random-path"),
                       (dict(fast_render=True), "for LIBERO")):
        with pytest.raises(ValueError, match=match):
            collect(out, suite="reach-v3", episodes_per_task=1, resolution=32, workers=1, progress=False, **bad)


def test_cli_rejects_an_unknown_task_and_writes_nothing(tmp_path):
    out = tmp_path / "never"
    r = _cli("collect", "--suite", "mt10", "--tasks", "reach-v3,fly-v3", "--out", str(out))
    assert r.returncode != 0
    assert "fly-v3" in r.stderr and "push-v3" in r.stderr  # names the bad one and the valid ones
    assert not out.exists()


def test_cli_rejects_a_bad_resolution_and_writes_nothing(tmp_path):
    out = tmp_path / "never"
    r = _cli("collect", "--suite", "reach-v3", "--resolution", "7", "--out", str(out))
    assert r.returncode != 0 and "resolution" in r.stderr
    assert not out.exists()


def test_cli_refuses_a_directory_with_other_settings(tiny_dataset):
    before = _digests(tiny_dataset)
    info_before = (tiny_dataset / "meta" / "info.json").read_bytes()
    r = _cli("collect", "--suite", "mt10", "--tasks", "reach-v3", "--resolution", "64", "--out", str(tiny_dataset))
    assert r.returncode != 0
    assert "resolution" in r.stderr and "48" in r.stderr and "64" in r.stderr
    assert _digests(tiny_dataset) == before
    assert (tiny_dataset / "meta" / "info.json").read_bytes() == info_before


def test_a_dataset_from_before_start_jitter_and_fast_render_counts_as_without_them(tiny_dataset):
    from reasonact.data.format import check_settings

    info = json.loads((tiny_dataset / "meta" / "info.json").read_text())
    settings = {k: info[k] for k in ("env", "suite", "resolution", "camera", "state_mode", "seed")}
    assert info["start_jitter"] == 0.0 and info["fast_render"] is False
    legacy = {k: v for k, v in info.items() if k not in ("start_jitter", "fast_render")}
    (tiny_dataset / "meta" / "info.json").write_text(json.dumps(legacy))
    try:
        settings["fast_render"] = False
        assert check_settings(tiny_dataset, {**settings, "start_jitter": 0.0}) is not None
        with pytest.raises(DatasetError, match="start_jitter: 0.0 there, 0.1 asked"):
            check_settings(tiny_dataset, {**settings, "start_jitter": 0.1})
        with pytest.raises(DatasetError, match="fast_render: False there, True asked"):
            check_settings(tiny_dataset, {**settings, "start_jitter": 0.0, "fast_render": True})
    finally:
        (tiny_dataset / "meta" / "info.json").write_text(json.dumps(info))


def test_cli_refuses_a_non_dataset_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    r = _cli("collect", "--suite", "reach-v3", "--out", str(tmp_path))
    assert r.returncode != 0 and "not empty" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_load_dataset_explains_what_is_missing(tmp_path):
    with pytest.raises(DatasetError, match="reasonact collect"):
        load_dataset(tmp_path)


def test_random_path_episodes_extend_a_dataset_and_visit_their_waypoints(tiny_dataset, tmp_path):
    from reasonact.envs.paths import PathExpert

    root = tmp_path / "mixed"
    shutil.copytree(tiny_dataset, root)
    before = _digests(root)
    s = collect(root, suite="mt10", tasks=["reach-v3"], episodes_per_task=2, resolution=48, camera=CAMERAS, workers=1,
                expert="path", progress=False)
    assert s.new_episodes == 2 and "2 random-path episodes" in str(s)
    after = _digests(root)
    assert all(after[k] == v for k, v in before.items())  # the task's demonstrations are untouched
    again = collect(root, suite="mt10", tasks=["reach-v3"], episodes_per_task=2, resolution=48, camera=CAMERAS, workers=1,
                    expert="path", progress=False)
    assert again.new_episodes == 0

    ds = load_dataset(root)
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["experts"] == {"task": 4, "path": 2, "short": 0, "donor": 0}
    paths = [e for e in ds.episodes if e["expert"] == "path"]
    demos = [e for e in ds.episodes if e["expert"] == "task" and e["task"] == "reach-v3"]
    assert {e["seed"] for e in paths}.isdisjoint(e["seed"] for e in demos)  # a layout is used once
    assert ds.path_frames.sum() == sum(e["length"] for e in paths)
    assert set(info["seeds"]["reach-v3"]) >= {e["seed"] for e in paths}  # so evaluation avoids them too
    for e in paths:
        frames = np.array(ds.episode_frames(ds.episodes.index(e)))
        assert ds.path_frames[frames].all()
        ee = ds.ee_pos[frames]
        expert = PathExpert.for_episode(e["task"], e["seed"], ee[0])
        assert len(expert.waypoints) >= 2
        # The gripper passed every waypoint, in order (the last one within one step after the last frame).
        hits = [int(np.argmin(np.linalg.norm(ee - w, axis=1))) for w in expert.waypoints]
        assert hits == sorted(hits)
        assert all(np.linalg.norm(ee - w, axis=1).min() < expert.tolerance + 0.012 for w in expert.waypoints)
        flags = pq.read_table(root / e["file"], columns=["next.success"])["next.success"].to_pylist()
        assert flags[-1] and not any(flags[:-1])
    with pytest.raises(ValueError, match="unknown expert"):
        collect(root, suite="mt10", tasks=["reach-v3"], episodes_per_task=1, resolution=48, expert="oracle")


def test_training_leaves_random_path_frames_out_unless_steering(tiny_dataset, tmp_path, capsys):
    import reasonact

    root = tmp_path / "mixed"
    shutil.copytree(tiny_dataset, root)
    collect(root, suite="mt10", tasks=["push-v3"], episodes_per_task=1, resolution=48, camera=CAMERAS, workers=1, expert="path",
            progress=False)
    n = int(load_dataset(root).path_frames.sum())
    kw = dict(config="debug", steps=1, batch_size=4, reasoning="trace", progress=False)
    reasonact.train(root, tmp_path / "plain", **kw)
    assert f"leaving out {n} frames of random-path episodes" in capsys.readouterr().out
    reasonact.train(root, tmp_path / "steered", steer_prob=0.5, **kw)
    assert "leaving out" not in capsys.readouterr().out


def _children(pid: int) -> set[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
def test_killing_collect_leaves_no_worker_behind(tmp_path):
    import signal
    import time

    proc = subprocess.Popen([sys.executable, "-m", "reasonact", "collect", "--tasks", "reach-v3,drawer-close-v3",
                             "--episodes-per-task", "3", "--resolution", "32", "--workers", "2",
                             "--out", str(tmp_path / "d")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, workers = time.time() + 120, set()
    while time.time() < deadline and len(workers) < 3:  # two simulator workers and the resource tracker
        workers = _children(proc.pid)
        time.sleep(0.2)
    assert len(workers) >= 2, "collect started no workers"
    time.sleep(2)  # the workers are busy starting their simulators
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 20
    while time.time() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.2)
    assert not [p for p in workers if _alive(p)], "workers outlived a killed collect"
