"""Run in .venv-compat with LeRobot 0.4.4 (see scripts/setup-compat.sh). Two jobs:

    lerobot_check.py read DATASET REFERENCE.npz   LeRobotDataset opens a dataset that reasonact collected;
                                                  every frame must equal the reference (what reasonact reads)
    lerobot_check.py write DATASET WRITTEN.npz    LeRobotDataset.create writes a dataset (two episodes, one
                                                  camera); WRITTEN.npz holds what was put in, for reasonact
    lerobot_check.py import                       LeRobot's dataset code imports (set-up's check)

torchvision cannot be installed beside this torch, and LeRobot imports it for one conversion only (a PIL
image to a float tensor, ``transforms.ToTensor``); when it is missing, a stand-in doing that conversion
is put in its place. Everything else is LeRobot's own code.
"""

import importlib.machinery
import importlib.util
import json
import sys
import types

import numpy as np


def _torchvision_stand_in() -> None:
    if importlib.util.find_spec("torchvision") is not None:
        return
    import torch

    class ToTensor:  # torchvision's semantics for 8-bit images: HWC uint8 -> CHW float in [0, 1]
        def __call__(self, pic):
            a = np.asarray(pic)
            a = a[:, :, None] if a.ndim == 2 else a
            return torch.from_numpy(a.transpose(2, 0, 1).copy()).float().div(255)

    tv = types.ModuleType("torchvision")
    tv.transforms = types.ModuleType("torchvision.transforms")
    tv.transforms.ToTensor = ToTensor
    tv.transforms.v2 = types.ModuleType("torchvision.transforms.v2")
    tv.io = types.ModuleType("torchvision.io")
    for m in (tv, tv.transforms, tv.transforms.v2, tv.io):
        m.__spec__ = importlib.machinery.ModuleSpec(m.__name__, None)
        sys.modules[m.__name__] = m


def read(root: str, reference: str) -> dict:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ref = np.load(reference, allow_pickle=False)
    views = [str(v) for v in ref["views"]]
    fps = int(ref["fps"])
    ds = LeRobotDataset("local/reasonact", root=root)
    assert len(ds) == len(ref["state"]), (len(ds), len(ref["state"]))
    assert ds.num_episodes == int(ref["episodes"]) and ds.fps == fps
    assert ds.meta.camera_keys == [f"observation.images.{v}" for v in views], ds.meta.camera_keys
    for i in range(len(ds)):
        item = ds[i]
        for k, v in enumerate(views):
            img = item[f"observation.images.{v}"]
            assert tuple(img.shape) == (3, *ref["images"].shape[2:4]), img.shape  # LeRobot's CHW floats
            got = (img.numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8)
            assert np.array_equal(got, ref["images"][i, k]), f"frame {i} view {v}"
        np.testing.assert_allclose(item["observation.state"].numpy(), ref["state"][i], atol=1e-6)
        np.testing.assert_allclose(item["action"].numpy(), ref["action"][i], atol=1e-6)
        np.testing.assert_allclose(item["observation.depth"].numpy() * 1e-4, ref["depth"][i], atol=1e-6)
        assert item["task"] == str(ref["instruction"][i]), (item["task"], ref["instruction"][i])
        assert int(item["episode_index"]) == ref["episode_index"][i] and int(item["frame_index"]) == ref["frame_index"][i]
    # LeRobot's action chunks (delta_timestamps) are reasonact's: the episode's last action repeats past its end.
    H = ref["chunks"].shape[1]
    chunked = LeRobotDataset("local/reasonact", root=root, delta_timestamps={"action": [t / fps for t in range(H)]})
    for i in range(len(chunked)):
        np.testing.assert_allclose(chunked[i]["action"].numpy(), ref["chunks"][i], atol=1e-6)
    stats = ds.meta.stats
    np.testing.assert_allclose(stats["observation.state"]["mean"], ref["state"].mean(0), rtol=1e-4, atol=1e-5)
    assert np.asarray(stats[f"observation.images.{views[0]}"]["mean"]).shape == (3, 1, 1)
    return {"frames": len(ds), "episodes": ds.num_episodes, "cameras": ds.meta.camera_keys,
            "task": ds[0]["task"]}


def write(root: str, written: str) -> dict:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    size, steps = 32, [14, 11]
    features = {
        "observation.images.front": {"dtype": "image", "shape": (size, size, 3), "names": ["height", "width", "channels"]},
        "observation.state": {"dtype": "float32", "shape": (6,), "names": None},
        "action": {"dtype": "float32", "shape": (3,), "names": None},
    }
    ds = LeRobotDataset.create("local/written-by-lerobot", fps=10, root=root, robot_type="toy", features=features,
                               use_videos=False)
    rng = np.random.default_rng(0)
    out = {"images": [], "state": [], "action": [], "task": []}
    tasks = ["push the red block left", "lift the blue cup"]
    for n, task in zip(steps, tasks):
        for t in range(n):
            img = np.full((size, size, 3), 60, np.uint8)
            img[4 + t: 10 + t, 8:16] = (200, 30, 30)  # a block that moves down the image
            state = rng.normal(size=6).astype(np.float32)
            action = np.tanh(state[:3]).astype(np.float32)  # the action a policy can read off the state
            ds.add_frame({"observation.images.front": img, "observation.state": state, "action": action, "task": task})
            for k, v in (("images", img), ("state", state), ("action", action), ("task", task)):
                out[k].append(v)
        ds.save_episode()
    ds.finalize()
    np.savez(written, **{k: np.stack(v) if k != "task" else np.array(v) for k, v in out.items()})
    return {"frames": sum(steps), "episodes": len(steps)}


if __name__ == "__main__":
    _torchvision_stand_in()
    if sys.argv[1] == "import":  # the set-up's check that LeRobot's dataset code loads here
        from importlib.metadata import version

        from lerobot.datasets.lerobot_dataset import LeRobotDataset  # noqa: F401

        print(json.dumps({"lerobot": version("lerobot")}))
    else:
        job, root, path = sys.argv[1:4]
        print(json.dumps({"read": read, "write": write}[job](root, path)))
