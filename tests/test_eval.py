import json
import shutil

import numpy as np
import pytest

import reasonact
from reasonact.evaluation import held_out_seeds, wilson

pytestmark = pytest.mark.sim


@pytest.fixture(scope="module")
def debug_run(tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "debug"
    return reasonact.train(tiny_dataset, out, config="debug", steps=2, batch_size=4, progress=False, reasoning="trace")


def crashing_env(task, **kwargs):
    """An environment whose simulator fails mid-episode on one layout (a stand-in for a MuJoCo crash)."""
    from reasonact.envs import make_env

    env = make_env(task, **kwargs)
    real_step, real_reset = env.step, env.reset

    def reset(seed):
        env._bad = seed == 1_000_001
        return real_reset(seed)

    def step(action):
        if env._bad and env.elapsed_steps >= 3:
            raise RuntimeError("simulated simulator failure")
        return real_step(action)

    env.reset, env.step = reset, step
    return env


def test_eval_writes_a_report_on_held_out_layouts(debug_run, tmp_path):
    r = reasonact.evaluate(debug_run, tmp_path / "ev", suite="mt10", tasks="reach-v3", episodes_per_task=2,
                           workers=1, max_steps=16, progress=False, video=True)
    on_disk = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert on_disk == json.loads(json.dumps(r))
    for key in ("suite", "checkpoint", "decoder", "diffusion_steps", "episodes_per_task", "tasks", "success_rate",
                "latency_ms_per_chunk", "nfe_per_chunk", "episodes"):
        assert key in r
    t = r["tasks"]["reach-v3"]
    assert t["episodes"] == 2 and 0 <= t["successes"] <= 2 and t["success_rate"] == t["successes"] / 2
    assert 0 <= t["ci95"][0] <= t["success_rate"] <= t["ci95"][1] <= 1
    assert r["decoder"] == "diffusion" and r["diffusion_steps"] == 12 and r["nfe_per_chunk"] == 24
    assert [(e["task"], e["seed"]) for e in r["episodes"]] == [("reach-v3", s) for s in t["seeds"]]
    assert all(e["steps"] <= 16 and isinstance(e["success"], bool) and e["error"] is None for e in r["episodes"])
    assert sum(e["success"] for e in r["episodes"]) == t["successes"] and r["untrained_tasks"] == []
    train_seeds = set(json.loads((debug_run / "config.json").read_text())["data"]["seeds"]["reach-v3"])
    assert train_seeds and not set(t["seeds"]) & train_seeds
    assert (tmp_path / "ev" / "report.md").read_text().startswith("# Evaluation")
    assert (tmp_path / "ev" / "success.png").stat().st_size > 1000
    assert len(list((tmp_path / "ev" / "videos").glob("*.mp4"))) == 1


def test_a_worker_that_raises_is_reported_not_hung(debug_run, tmp_path):
    r = reasonact.evaluate(debug_run, tmp_path / "ev", suite="reach-v3", episodes_per_task=3, workers=1,
                           max_steps=12, progress=False, env_factory=crashing_env, timeout=120)
    t = r["tasks"]["reach-v3"]
    assert t["episodes"] == 3 and r["errors"] == 1
    assert t["errors"][0]["seed"] == 1_000_001 and "simulated simulator failure" in t["errors"][0]["error"]
    assert "simulator error" in (tmp_path / "ev" / "report.md").read_text()


def dying_env(task, **kwargs):
    """A simulator worker that dies outright (as when a script without a __main__ guard is imported again)."""
    import os

    os._exit(3)


def test_a_dead_worker_and_untrained_tasks_are_said_plainly(debug_run, tmp_path, capsys):
    r = reasonact.evaluate(debug_run, tmp_path / "ev", suite="mt10", tasks="reach-v3,window-open-v3",
                           episodes_per_task=1, workers=1, max_steps=8, progress=False, env_factory=dying_env, timeout=60)
    err = capsys.readouterr().err
    assert "window-open-v3" in err and "never in the training data" in err
    assert r["untrained_tasks"] == ["window-open-v3"] and r["errors"] == 2
    assert all("worker process died" in e["error"] for e in r["episodes"])
    assert "__main__" in err and r["latency_ms_per_chunk"] is None
    md = (tmp_path / "ev" / "report.md").read_text()
    assert "No prediction was made" in md and "Not trained on" in md


def evaluate_killed_after(n: int, monkeypatch, *args, **kwargs) -> None:
    """An evaluation killed right after its n-th finished episode is written."""
    import importlib

    ev = importlib.import_module("reasonact.evaluation.evaluate")  # the module (the package exports the function)
    real_add, added = ev.PartialResults.add, []

    def add_then_die(self, episode):
        real_add(self, episode)
        added.append(episode.seed)
        if len(added) == n:
            raise KeyboardInterrupt

    monkeypatch.setattr(ev.PartialResults, "add", add_then_die)
    with pytest.raises(KeyboardInterrupt):
        reasonact.evaluate(*args, **kwargs)
    monkeypatch.undo()


def test_a_killed_evaluation_resumes_from_the_episodes_it_finished(debug_run, tmp_path, monkeypatch, capsys):
    import importlib

    ev = importlib.import_module("reasonact.evaluation.evaluate")  # the module (the package exports the function)

    args = dict(suite="reach-v3", episodes_per_task=3, workers=1, max_steps=8, progress=False)
    whole = reasonact.evaluate(debug_run, tmp_path / "whole", **args)
    evaluate_killed_after(2, monkeypatch, debug_run, tmp_path / "part", **args)
    partial = tmp_path / "part" / ev.PARTIAL
    assert len(partial.read_text().splitlines()) == 3 and not (tmp_path / "part" / "report.json").exists()
    with open(partial, "a") as f:
        f.write('{"task": "reach-v3", "se')  # and the kill cut a third line short
    capsys.readouterr()
    r = reasonact.evaluate(debug_run, tmp_path / "part", **args)
    assert "2 of 3 episodes are done" in capsys.readouterr().out
    assert [(e["task"], e["seed"], e["success"], e["steps"]) for e in r["episodes"]] == \
        [(e["task"], e["seed"], e["success"], e["steps"]) for e in whole["episodes"]]
    assert not partial.exists()
    reasonact.evaluate(debug_run, tmp_path / "part", **args)  # a finished evaluation runs again in full
    assert "resuming" not in capsys.readouterr().out


def test_other_settings_keep_the_earlier_episodes_beside_and_start_afresh(debug_run, tmp_path, monkeypatch, capsys):
    import importlib

    ev = importlib.import_module("reasonact.evaluation.evaluate")
    args = dict(suite="reach-v3", episodes_per_task=2, workers=1, max_steps=8, progress=False)
    evaluate_killed_after(1, monkeypatch, debug_run, tmp_path / "ev", **args)
    before = (tmp_path / "ev" / ev.PARTIAL).read_text()
    assert len(before.splitlines()) == 2
    capsys.readouterr()
    r = reasonact.evaluate(debug_run, tmp_path / "ev", **{**args, "max_steps": 6})
    kept = list((tmp_path / "ev").glob("episodes.partial.*.jsonl"))
    assert "kept in" in capsys.readouterr().err and len(kept) == 1 and kept[0].read_text() == before
    assert len(r["episodes"]) == 2 and all(e["steps"] <= 6 for e in r["episodes"])


def test_a_checkpoint_saved_default_of_executed_actions_is_followed(debug_run, tmp_path):
    from reasonact.policy import load_policy

    run = tmp_path / "run"
    shutil.copytree(debug_run, run)
    config = json.loads((run / "config.json").read_text())
    config["train"]["execute"] = 3
    (run / "config.json").write_text(json.dumps(config))
    policy = load_policy(run)
    assert policy.info.execute == 3 and policy.n_action_steps == 3
    assert load_policy(debug_run).info.execute == load_policy(debug_run).info.horizon
    args = dict(suite="reach-v3", episodes_per_task=1, workers=1, max_steps=8, progress=False)
    assert reasonact.evaluate(run, tmp_path / "a", **args)["execute"] == 3
    assert reasonact.evaluate(run, tmp_path / "b", execute=2, **args)["execute"] == 2  # the caller's choice wins
    config["train"]["execute"] = 99
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="--execute must be between 1 and the chunk length"):
        load_policy(run)


def camera_moved_env(task, **kwargs):
    """The real environment, refusing to run unless the evaluation asked for the camera to be moved."""
    from reasonact.envs import make_env

    if kwargs.get("perturb") != {"camera": 0.05, "lighting": 0.5}:
        raise RuntimeError(f"the perturbation did not reach the simulator: {kwargs.get('perturb')}")
    return make_env(task, **kwargs)


def test_eval_perturbs_the_scene_and_ablates_the_decoder(debug_run, tmp_path):
    r = reasonact.evaluate(debug_run, tmp_path / "ev", suite="mt10", tasks="reach-v3", episodes_per_task=1,
                           workers=1, max_steps=8, progress=False, perturb="camera=0.05,lighting",
                           env_factory=camera_moved_env, remask=False, commit_order="random", anneal=False,
                           action_values="mean")
    assert r["errors"] == 0 and r["episodes"][0]["steps"] == 8
    assert r["perturb"] == {"camera": 0.05, "lighting": 0.5}
    assert r["decode"] == {"eta": 0.0, "temperature": 1.0, "anneal": False, "order": "random", "values": "mean"}
    md = (tmp_path / "ev" / "report.md").read_text()
    assert "Out of distribution" in md and "no secondary remasking, commits in a random order" in md
    assert "actions read as their bins' mean" in md
    with pytest.raises(ValueError, match="unknown perturbation 'fog'"):
        reasonact.evaluate(debug_run, tmp_path / "ev2", suite="reach-v3", perturb="fog")
    assert not (tmp_path / "ev2").exists()


def goal_counting_env(task, **kwargs):
    """The real environment, counting two goal conditions as LIBERO's does: a step taken, and four."""
    from reasonact.envs import make_env

    env = make_env(task, **kwargs)
    env.goals_met = lambda: (int(env.elapsed_steps >= 1) + int(env.elapsed_steps >= 4), 2)
    return env


def test_eval_counts_the_goal_conditions_held_at_the_start_and_the_end(debug_run, tmp_path, monkeypatch):
    args = dict(suite="reach-v3", episodes_per_task=2, workers=1, max_steps=8, progress=False,
                env_factory=goal_counting_env)
    r = reasonact.evaluate(debug_run, tmp_path / "ev", **args)
    assert [e["goals"] for e in r["episodes"]] == [[0, (e["steps"] >= 1) + (e["steps"] >= 4), 2] for e in r["episodes"]]
    t = r["tasks"]["reach-v3"]
    assert t["goals_start"] == 0 and t["goals_end"] == np.mean([e["goals"][1] / 2 for e in r["episodes"]]) > 0
    assert "goal conditions held, start → end" in (tmp_path / "ev" / "report.md").read_text()
    evaluate_killed_after(1, monkeypatch, debug_run, tmp_path / "part", **args)
    resumed = reasonact.evaluate(debug_run, tmp_path / "part", **args)  # the finished episode's counts are kept
    assert [e["goals"] for e in resumed["episodes"]] == [e["goals"] for e in r["episodes"]]
    plain = reasonact.evaluate(debug_run, tmp_path / "plain", **{**args, "env_factory": None, "episodes_per_task": 1})
    assert plain["episodes"][0]["goals"] is None and "goals_end" not in plain["tasks"]["reach-v3"]


def test_eval_bad_input_fails_clearly(debug_run, tmp_path):
    with pytest.raises(FileNotFoundError, match="reasonact train"):
        reasonact.evaluate(tmp_path / "missing", tmp_path / "ev")
    with pytest.raises(ValueError, match="reach-v3"):
        reasonact.evaluate(debug_run, tmp_path / "ev", suite="mt10", tasks="reach-v99")
    other = tmp_path / "other"
    shutil.copytree(debug_run, other)
    cfg = json.loads((other / "config.json").read_text())
    cfg["sequence"]["action_dim"] = 7
    (other / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="7-d action space"):
        reasonact.evaluate(other, tmp_path / "ev", suite="reach-v3", episodes_per_task=1)
    assert not (tmp_path / "ev" / "report.json").exists()


def test_wilson_interval_and_seed_choice():
    lo, hi = wilson(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-3) and hi == pytest.approx(0.9433, abs=1e-3)
    assert wilson(0, 5)[0] == 0.0 and wilson(5, 5)[1] == 1.0
    assert held_out_seeds(3, {10, 11}, base=10) == [12, 13, 14]
    assert np.all(np.diff(held_out_seeds(5, set())) == 1)
