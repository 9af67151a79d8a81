"""The on-disk dataset layout (documented in docs/dataset.md), modelled on LeRobotDataset v3: the one
module that writes it and reads it.

    DIR/meta/info.json          settings, totals, features, seeds
    DIR/meta/stats.json         per-dimension min/max/mean/std/q01/q99 of action and state
    DIR/meta/tasks.parquet      task_index, task, instruction, paraphrases
    DIR/meta/episodes.parquet   episode_index, task, seed, length, first frame index, file
    DIR/meta/failures.jsonl     expert failures (task, seed): never retried, never used for evaluation
    DIR/data/chunk-000/episode_000000.parquet   one row per step (images as PNG bytes)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..io import DEPTH_SCALE, read_json, write_json_atomic, write_parquet_atomic

CODEBASE_VERSION = "reasonact/v1"
CHUNK_SIZE = 1000
DATA_PATH = "data/chunk-{chunk:03d}/episode_{episode:06d}.parquet"
FPS = 80  # Meta-World: 5 physics steps of 2.5 ms per action
# Settings that must match for two collections to share a directory.
SETTING_KEYS = ("env", "suite", "resolution", "camera", "state_mode", "seed", "start_jitter")
SETTING_DEFAULTS = {"start_jitter": 0.0}  # what a dataset written before the key existed was collected with
EXPERTS = ("task", "path")  # the task's scripted expert; random paths through its scene (steering)


def episode_file(root: Path, episode: int) -> Path:
    return Path(root) / DATA_PATH.format(chunk=episode // CHUNK_SIZE, episode=episode)


def camera_columns(view: str) -> tuple[str, str, str]:
    """A view's (image, intrinsics, extrinsics) columns."""
    return f"observation.images.{view}", f"observation.camera_intrinsics.{view}", f"observation.camera_extrinsics.{view}"


def view_columns(info: dict) -> dict[str, tuple[str, str, str]]:
    """view -> its (image, intrinsics, extrinsics) columns, the first view first (the trace is in it).
    Datasets written before views were named hold one view under ``observation.image``."""
    if "cameras" in info:
        return {v: camera_columns(v) for v in info["cameras"]}
    return {info.get("camera", "camera"): ("observation.image", "observation.camera_intrinsics",
                                            "observation.camera_extrinsics")}


def episode_schema(views: list[str], state_dim: int, action_dim: int, privileged_dim: int,
                   points_dim: int = 0) -> pa.Schema:
    f32 = pa.float32()
    cols = [camera_columns(v) for v in views]
    return pa.schema(
        [
            ("index", pa.int64()),
            ("episode_index", pa.int64()),
            ("frame_index", pa.int64()),
            ("timestamp", f32),
            ("task_index", pa.int64()),
            *[(c[0], pa.binary()) for c in cols],
            ("observation.depth", pa.binary()),
            ("observation.state", pa.list_(f32, state_dim)),
            ("observation.ee_pos", pa.list_(f32, 3)),
            *[f for c in cols for f in ((c[1], pa.list_(f32, 9)), (c[2], pa.list_(f32, 16)))],
            ("observation.privileged", pa.list_(f32, privileged_dim)),
            *([("observation.points", pa.list_(f32, points_dim))] if points_dim else []),
            ("action", pa.list_(f32, action_dim)),
            ("next.success", pa.bool_()),
        ]
    )


def features(views: list[str], resolution: int, state_dim: int, action_dim: int, privileged_dim: int,
             points_dim: int = 0) -> dict:
    r = resolution
    cameras = {}
    for image, K, E in map(camera_columns, views):
        cameras[image] = {"dtype": "png", "shape": [r, r, 3], "names": ["height", "width", "rgb"]}
        cameras[K] = {"dtype": "float32", "shape": [3, 3], "convention": "opencv"}
        cameras[E] = {"dtype": "float32", "shape": [4, 4], "convention": "world->camera, opencv"}
    return {
        **cameras,
        "observation.depth": {
            "dtype": "png16", "shape": [r, r], "unit": "m", "scale": DEPTH_SCALE,
            "note": f"uint16 PNG of the first view ({views[0]}); metres = value * scale; clipped at 6.5535 m",
        },
        "observation.state": {"dtype": "float32", "shape": [state_dim]},
        "observation.ee_pos": {"dtype": "float32", "shape": [3], "unit": "m", "frame": "world"},
        "observation.privileged": {"dtype": "float32", "shape": [privileged_dim], "note": "simulator state; never a model input"},
        **({"observation.points": {
            "dtype": "float32", "shape": [points_dim // 3, 3], "unit": "m", "frame": "world",
            "note": "the task's object and goal (simulator truth); a training target, never a model input"}}
           if points_dim else {}),
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


# -- reading ------------------------------------------------------------------------------------
def read_stats(root: Path) -> dict:
    path = Path(root) / "meta" / "stats.json"
    if not path.exists():
        raise DatasetError(f"dataset at {root} has no meta/stats.json; re-run `reasonact collect` on it")
    return read_json(path)


def read_episodes(root: Path) -> list[dict]:
    episodes = pq.read_table(Path(root) / "meta" / "episodes.parquet").to_pylist()
    for e in episodes:
        e.setdefault("expert", "task")  # datasets written before random-path episodes existed
    return episodes


def read_tasks(root: Path) -> list[dict]:
    return pq.read_table(Path(root) / "meta" / "tasks.parquet").to_pylist()


def read_frames(root: Path, episodes: list[dict]) -> pa.Table:
    """Every step of the given episodes, in order, as one Arrow table (images stay PNG-encoded)."""
    return pq.read_table([Path(root) / e["file"] for e in episodes])


RATIONALES = "meta/rationales.parquet"


def read_rationales(root: Path, frames: int) -> list[str] | None:
    """One rationale per frame, or None when the dataset has not been annotated."""
    path = Path(root) / RATIONALES
    if not path.exists():
        return None
    texts = pq.read_table(path, columns=["rationale"])["rationale"].to_pylist()
    if len(texts) != frames:
        raise DatasetError(f"{path} has {len(texts)} rows for {frames} frames; re-run `reasonact annotate`")
    missing = sum(t is None for t in texts)
    if missing:
        raise DatasetError(f"{missing} frames of {root} have no rationale (failed keyframes?); re-run `reasonact annotate`")
    return texts


def write_rationales(root: Path, episode_index: np.ndarray, frame_index: np.ndarray, texts: list[str | None],
                     source_index: np.ndarray) -> None:
    n = len(texts)
    write_parquet_atomic(pa.table({"index": np.arange(n), "episode_index": episode_index, "frame_index": frame_index,
                                   "rationale": pa.array(texts, pa.string()), "source_index": source_index}),
                         Path(root) / RATIONALES)


# -- writing ------------------------------------------------------------------------------------
def existing_episodes(root: Path) -> list[dict]:
    """Episodes already on disk, read from each file's own metadata (the files are the truth)."""
    episodes = []
    for f in sorted((root / "data").glob("chunk-*/episode_*.parquet")):
        meta = pq.read_metadata(f)
        kv = {k.decode(): v.decode() for k, v in (meta.metadata or {}).items()}
        if "reasonact.task" not in kv:
            raise DatasetError(f"{f} has no reasonact metadata; the dataset at {root} is damaged")
        episodes.append(
            {
                "episode_index": int(kv["reasonact.episode_index"]),
                "task": kv["reasonact.task"],
                "seed": int(kv["reasonact.seed"]),
                "expert": kv.get("reasonact.expert", "task"),
                "length": meta.num_rows,
                "file": str(f.relative_to(root)),
            }
        )
    episodes.sort(key=lambda e: e["episode_index"])
    return episodes


def read_failures(root: Path) -> list[dict]:
    path = root / "meta" / "failures.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a torn last line from a crash: ignore it
            continue
    return out


def append_failure(root: Path, task: str, seed: int, expert: str) -> None:
    path = root / "meta" / "failures.jsonl"
    with open(path, "a") as f:
        f.write(json.dumps({"task": task, "seed": seed, "expert": expert}) + "\n")
        f.flush()
        os.fsync(f.fileno())


def write_episode(root: Path, result: dict, episode_index: int, first_index: int, task_index: int) -> Path:
    """Write one collected episode: ``result["columns"]`` holds every column of :func:`episode_schema`
    but the index columns (``result["views"]`` names the views, ``result["dims"]`` the vector widths)."""
    cols = result["columns"]
    n = result["length"]
    schema = episode_schema(result["views"], *result["dims"]).with_metadata(
        {
            "reasonact.task": result["task"],
            "reasonact.seed": str(result["seed"]),
            "reasonact.expert": result["expert"],
            "reasonact.episode_index": str(episode_index),
        }
    )
    index = {"index": np.arange(first_index, first_index + n), "episode_index": np.full(n, episode_index),
             "frame_index": np.arange(n), "timestamp": np.arange(n, dtype=np.float32) / FPS,
             "task_index": np.full(n, task_index)}
    arrays = []
    for f in schema:
        if f.name in index:
            arrays.append(pa.array(index[f.name], f.type))
        elif pa.types.is_fixed_size_list(f.type):
            arr = np.asarray(cols[f.name], np.float32).reshape(-1)
            arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(arr, pa.float32()), f.type.list_size))
        else:
            arrays.append(pa.array(cols[f.name], f.type))
    table = pa.Table.from_arrays(arrays, schema=schema)
    path = episode_file(root, episode_index)
    # PNG bytes do not compress further; everything else is zstd.
    write_parquet_atomic(table, path, compression={f.name: "none" if pa.types.is_binary(f.type) else "zstd"
                                                   for f in schema})
    return path


def check_settings(root: Path, settings: dict) -> dict | None:
    """Return the existing info if ``root`` holds a compatible dataset; raise if it holds another."""
    if not root.exists() or not any(root.iterdir()):
        return None
    if not (root / "meta" / "info.json").exists():
        raise DatasetError(
            f"{root} exists and is not empty but holds no reasonact dataset; choose another --out "
            "or empty it"
        )
    info = read_info(root)
    there = {k: info.get(k, SETTING_DEFAULTS.get(k)) for k in SETTING_KEYS}
    diffs = [f"{k}: {there[k]!r} there, {settings[k]!r} asked" for k in SETTING_KEYS if there[k] != settings[k]]
    if diffs:
        raise DatasetError(
            f"{root} holds a dataset collected with other settings ({'; '.join(diffs)}). Collect into "
            "another --out, or repeat the original settings to resume or extend it."
        )
    return info


def finalize(root: Path) -> int:
    """(Re)write meta/: episodes, tasks, stats and info, from the episode files on disk."""
    from ..envs import task_text
    from .stats import compute_stats

    root = Path(root)
    info = read_info(root)
    episodes = existing_episodes(root)
    failures = read_failures(root)
    tasks = info["tasks"]
    first = 0
    for e in episodes:
        e["first_index"] = first
        first += e["length"]
    write_parquet_atomic(
        pa.Table.from_pylist(episodes, schema=pa.schema([
            ("episode_index", pa.int64()), ("task", pa.string()), ("seed", pa.int64()), ("expert", pa.string()),
            ("length", pa.int64()), ("file", pa.string()), ("first_index", pa.int64())])),
        root / "meta" / "episodes.parquet",
    )
    texts = [task_text(t) for t in tasks]
    write_parquet_atomic(
        pa.table({
            "task_index": list(range(len(tasks))),
            "task": tasks,
            "instruction": [x.instruction for x in texts],
            "paraphrases": [list(x.paraphrases) for x in texts],
            "unseen": [list(x.unseen) for x in texts],
        }),
        root / "meta" / "tasks.parquet",
    )
    files = [root / e["file"] for e in episodes]
    state_dim = action_dim = priv_dim = points_dim = 0
    if files:
        numeric = pq.read_table(files, columns=["observation.state", "action", "observation.privileged"])
        schema = pq.read_schema(files[0])
        k = schema.get_field_index("observation.points")
        points_dim = 0 if k < 0 else schema.field(k).type.list_size
        actions = np.asarray(numeric["action"].combine_chunks().flatten()).reshape(numeric.num_rows, -1)
        states = np.asarray(numeric["observation.state"].combine_chunks().flatten()).reshape(numeric.num_rows, -1)
        priv_dim = len(numeric["observation.privileged"][0])
        state_dim, action_dim = states.shape[1], actions.shape[1]
        write_json_atomic(root / "meta" / "stats.json", {"action": compute_stats(actions), "state": compute_stats(states)})
    seeds: dict[str, list[int]] = {t: [] for t in tasks}
    for e in episodes:
        seeds.setdefault(e["task"], []).append(e["seed"])
    failed: dict[str, list[int]] = {}
    for f in failures:
        failed.setdefault(f["task"], []).append(f["seed"])
    info.update(
        complete=bool(files),
        total_episodes=len(episodes),
        experts={x: sum(e["expert"] == x for e in episodes) for x in EXPERTS},
        total_frames=first,
        total_tasks=len(tasks),
        fps=FPS,
        chunks_size=1000,
        data_path="data/chunk-{chunk:03d}/episode_{episode:06d}.parquet",
        robot_type="sawyer",
        action_space="metaworld-xyz-delta+gripper",
        state_dim=state_dim,
        action_dim=action_dim,
        features=features(list(view_columns(info)), info["resolution"], state_dim, action_dim, priv_dim, points_dim),
        seeds={t: sorted(v) for t, v in seeds.items()},
        failed_seeds={t: sorted(v) for t, v in failed.items()},
    )
    write_json_atomic(root / "meta" / "info.json", info)
    return first
