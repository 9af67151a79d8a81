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
