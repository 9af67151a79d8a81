import os

os.environ.setdefault("MUJOCO_GL", "egl")

import pytest  # noqa: E402

TASKS = ["reach-v3", "push-v3"]


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """Two episodes each of two tasks at 48 px, collected once per test session."""
    from reasonact.data.collect import collect

    out = tmp_path_factory.mktemp("data") / "tiny"
    collect(out, suite="mt10", tasks=TASKS, episodes_per_task=2, resolution=48, workers=2, progress=False)
    return out
