"""The README's Python snippet, run as a script the way a new user would (scaled down to seconds): the
simulator workers that collection and evaluation spawn import the script again, so it must work as
written, guard and all."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.sim
@pytest.mark.slow
def test_the_readme_snippet_runs_as_a_script(tmp_path):
    text = README.read_text()
    code = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "reasonact.collect(" in b)
    assert 'if __name__ == "__main__":' in code
    smaller = [('suite="mt10"', 'suite="reach-v3"'), ("episodes_per_task=50", "episodes_per_task=2"),
               ('config="tiny"', 'config="debug"'), ("steps=4000", "steps=2"), ("episodes_per_task=20", "episodes_per_task=1")]
    for old, new in smaller:
        assert old in code, f"the README snippet changed: {old!r} is gone; update this test"
        code = code.replace(old, new)
    code += "\n    print('success rate', report['success_rate'], 'trace', pred.trace.shape)\n"
    (tmp_path / "snippet.py").write_text(code)
    r = subprocess.run([sys.executable, "snippet.py"], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "success rate" in r.stdout and "worker process died" not in r.stderr
    assert (tmp_path / "evals" / "mt10" / "report.json").exists()
