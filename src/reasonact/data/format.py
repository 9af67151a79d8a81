"""The on-disk dataset layout (documented in docs/dataset.md), modelled on LeRobotDataset v3.

    DIR/meta/info.json          settings, totals, features, seeds
    DIR/meta/stats.json         per-dimension min/max/mean/std/q01/q99 of action and state
    DIR/meta/tasks.parquet      task_index, task, instruction, paraphrases
    DIR/meta/episodes.parquet   episode_index, task, seed, length, first frame index, file
    DIR/meta/failures.jsonl     expert failures (task, seed): never retried, never used for evaluation
    DIR/data/chunk-000/episode_000000.parquet   one row per step (images as PNG bytes)
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from ..io import DEPTH_SCALE, read_json

CODEBASE_VERSION = "reasonact/v1"
CHUNK_SIZE = 1000
DATA_PATH = "data/chunk-{chunk:03d}/episode_{episode:06d}.parquet"
FPS = 80  # Meta-World: 5 physics steps of 2.5 ms per action
# Settings that must match for two collections to share a directory.
SETTING_KEYS = ("env", "suite", "resolution", "camera", "state_mode", "seed")
IMAGE_COLUMNS = ("observation.image", "observation.depth")


def episode_file(root: Path, episode: int) -> Path:
    return Path(root) / DATA_PATH.format(chunk=episode // CHUNK_SIZE, episode=episode)


def episode_schema(state_dim: int, action_dim: int, privileged_dim: int) -> pa.Schema:
    f32 = pa.float32()
    return pa.schema(
        [
            ("index", pa.int64()),
            ("episode_index", pa.int64()),
            ("frame_index", pa.int64()),
            ("timestamp", f32),
            ("task_index", pa.int64()),
            ("observation.image", pa.binary()),
            ("observation.depth", pa.binary()),
            ("observation.state", pa.list_(f32, state_dim)),
            ("observation.ee_pos", pa.list_(f32, 3)),
            ("observation.camera_intrinsics", pa.list_(f32, 9)),
            ("observation.camera_extrinsics", pa.list_(f32, 16)),
            ("observation.privileged", pa.list_(f32, privileged_dim)),
            ("action", pa.list_(f32, action_dim)),
            ("next.success", pa.bool_()),
        ]
    )


def features(resolution: int, state_dim: int, action_dim: int, privileged_dim: int) -> dict:
    r = resolution
    return {
        "observation.image": {"dtype": "png", "shape": [r, r, 3], "names": ["height", "width", "rgb"]},
        "observation.depth": {
            "dtype": "png16", "shape": [r, r], "unit": "m", "scale": DEPTH_SCALE,
            "note": "uint16 PNG; metres = value * scale; clipped at 6.5535 m",
        },
        "observation.state": {"dtype": "float32", "shape": [state_dim]},
        "observation.ee_pos": {"dtype": "float32", "shape": [3], "unit": "m", "frame": "world"},
        "observation.camera_intrinsics": {"dtype": "float32", "shape": [3, 3], "convention": "opencv"},
        "observation.camera_extrinsics": {"dtype": "float32", "shape": [4, 4], "convention": "world->camera, opencv"},
        "observation.privileged": {"dtype": "float32", "shape": [privileged_dim], "note": "simulator state; never a model input"},
        "action": {"dtype": "float32", "shape": [action_dim], "range": [-1.0, 1.0]},
        "next.success": {"dtype": "bool", "shape": [1]},
        "index": {"dtype": "int64", "shape": [1]},
        "episode_index": {"dtype": "int64", "shape": [1]},
        "frame_index": {"dtype": "int64", "shape": [1]},
        "timestamp": {"dtype": "float32", "shape": [1]},
        "task_index": {"dtype": "int64", "shape": [1]},
    }


class DatasetError(ValueError):
    """A dataset directory is missing, incomplete, or does not fit the request."""


def read_info(root: str | Path) -> dict:
    root = Path(root)
    info_path = root / "meta" / "info.json"
    if not info_path.exists():
        raise DatasetError(
            f"{root} is not a reasonact dataset (no meta/info.json); create one with "
            f"`reasonact collect --suite mt10 --out {root}`"
        )
    return read_json(info_path)
