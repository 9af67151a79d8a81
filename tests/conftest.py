import os

os.environ.setdefault("MUJOCO_GL", "egl")
# Tests train with a fixed thread count, whatever else the machine runs (runs compared within a test must
# not differ in threads); training_threads() itself is tested with this unset.
os.environ.setdefault("REASONACT_THREADS", str(os.cpu_count() or 1))

import pytest  # noqa: E402

TASKS = ["reach-v3", "push-v3"]
CAMERAS = "zoom,gripperPOV"


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """Two episodes each of two tasks at 48 px from two views (zoom, then the wrist camera), collected once
    per test session."""
    from reasonact.data.collect import collect

    out = tmp_path_factory.mktemp("data") / "tiny"
    collect(out, suite="mt10", tasks=TASKS, episodes_per_task=2, resolution=48, camera=CAMERAS, workers=2,
            progress=False)
    return out


@pytest.fixture(scope="session")
def fake_data(tmp_path_factory):
    """A dataset in the real on-disk format made without the simulator: 2 tasks x 3 episodes x 30 steps, 32 px."""
    from reasonact.data.fake import fake_dataset

    return fake_dataset(tmp_path_factory.mktemp("fake") / "data")
