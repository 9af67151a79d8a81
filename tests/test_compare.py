"""benchmarks/compare.py, the side-by-side table of evaluation reports."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _compare():
    spec = importlib.util.spec_from_file_location("compare", ROOT / "benchmarks" / "compare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_an_unfinished_evaluation_is_named_with_how_to_finish_it(tmp_path):
    compare = _compare()
    (tmp_path / "episodes.partial.jsonl").write_text('{"settings": "x"}\n{"success": true}\n{"success": false}\n')
    with pytest.raises(SystemExit, match=r"not finished .* holds 2 episodes.*run the same `reasonact eval`"):
        compare.load(tmp_path)
    with pytest.raises(SystemExit, match=r"^no report.json in \S+$"):
        compare.load(tmp_path / "elsewhere")


def _part(seed_base: int, successes: list[bool], checkpoint: str = "runs/a", execute: int = 4) -> dict:
    episodes = [{"task": "t", "seed": seed_base + i, "success": s, "steps": 10 if s else 20, "instruction": None,
                 "error": None} for i, s in enumerate(successes)]
    return {"suite": "libero_spatial", "diffusion_steps": 12, "execute": execute, "instructions": "canonical",
            "perturb": {}, "decode": {}, "decoder": "diffusion", "reasoning": "act", "checkpoint": checkpoint,
            "config": {"seed_base": seed_base, "workers": 2, "execute": execute}, "tasks": {"t": {}},
            "episodes": episodes, "latency_ms_per_chunk": 100.0 if seed_base else 200.0, "mean_batch": 2.0,
            "seconds": 60.0, "machine": {"cpu": "x"}}


def test_parts_of_one_evaluation_merge_and_others_are_refused(tmp_path):
    from reasonact.evaluation.report import merge_reports

    a, b = _part(0, [True, False, False]), _part(10, [True])
    m = merge_reports([a, b])
    t = m["tasks"]["t"]
    assert (t["episodes"], t["successes"], t["seeds"]) == (4, 2, [0, 1, 2, 10]) and m["success_rate"] == 0.5
    assert t["ci95"][0] < 0.5 < t["ci95"][1] and t["mean_steps"] == 15.0
    assert m["latency_ms_per_chunk"] == 175.0 and m["seconds"] == 120.0 and m["config"]["seed_base"] == 0
    assert [p["seed_base"] for p in m["parts"]] == [0, 10]
    again = merge_reports([m, _part(20, [False, False])])  # a merged report is a part too, its own parts kept
    assert [p["seed_base"] for p in again["parts"]] == [0, 10, 20] and again["tasks"]["t"]["episodes"] == 6
    assert again["seconds"] == 180.0 and again["success_rate"] == pytest.approx(2 / 6)
    with pytest.raises(ValueError, match="share episodes"):
        merge_reports([a, a])
    with pytest.raises(ValueError, match="execute"):
        merge_reports([a, _part(10, [True], execute=8)])
    with pytest.raises(ValueError, match="not the same weights"):
        merge_reports([a, _part(10, [True], checkpoint="runs/b")])
    for name, payload in (("a", b"weights"), ("b", b"weights")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.safetensors").write_bytes(payload)
    same = merge_reports([_part(0, [True], str(tmp_path / "a")), _part(10, [False], str(tmp_path / "b"))])
    assert same["tasks"]["t"]["episodes"] == 2
    moved = [_part(0, [True], str(tmp_path / "gone-a")), _part(10, [False], str(tmp_path / "gone-b"))]
    with pytest.raises(ValueError, match="not the same weights"):  # neither on disk, no hash recorded
        merge_reports(moved)
    for part, digest in zip(moved, ("f" * 64, "f" * 64)):
        part["weights_sha256"] = digest  # recorded at evaluation: the parts merge after their run folders are gone
    merged = merge_reports(moved)
    assert merged["tasks"]["t"]["episodes"] == 2 and merged["weights_sha256"] == "f" * 64
    moved[1]["weights_sha256"] = "e" * 64
    with pytest.raises(ValueError, match="not the same weights"):
        merge_reports(moved)
