"""The on-disk dataset layout (documented in docs/dataset.md): LeRobotDataset v3.0, which LeRobot's own
``LeRobotDataset`` reads, with reasonact's extra columns. The one module that writes it and reads it; it
also reads datasets that LeRobot wrote and those of reasonact's earlier layout (``reasonact/v1``).

    DIR/meta/info.json                          settings, totals, features, seeds
    DIR/meta/stats.json                         per-feature statistics (LeRobot's names)
    DIR/meta/tasks.parquet                      indexed by the task's language; task_index, task, paraphrases
    DIR/meta/episodes/chunk-000/file-000.parquet  one row per episode: its frames and file, seed, expert
    DIR/meta/failures.jsonl                     expert failures (task, seed): never retried, never evaluated
    DIR/data/chunk-000/file-000.parquet         one row per step; here one file per episode
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..envs.paths import EXPERTS
from ..io import DEPTH_SCALE, read_json, read_jsonl, write_json_atomic, write_parquet_atomic

CODEBASE_VERSION = "v3.0"
LEGACY_VERSION = "reasonact/v1"  # one file per episode as episode_NNNNNN.parquet, PNG bytes, meta/episodes.parquet
CHUNK_SIZE = 1000  # files per chunk directory
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"

IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])  # an image as LeRobot (Hugging Face) stores it
DEPTH = pa.list_(pa.list_(pa.uint16()))  # (H, W) rows, DEPTH_SCALE metres per unit
# Settings that must match for two collections to share a directory.
SETTING_KEYS = ("env", "suite", "resolution", "camera", "state_mode", "seed", "start_jitter", "fast_render")
# what a dataset written before the key existed was collected with
SETTING_DEFAULTS = {"start_jitter": 0.0, "fast_render": False}


def fps_of(root: Path) -> int:
    """Actions per second of the simulator a dataset was collected in."""
    from ..envs import simulator

    return simulator(read_info(root).get("env", "metaworld")).FPS


def episode_file(root: Path, episode: int) -> Path:
    """Where collection writes an episode: a file of its own, numbered by the episode."""
    return Path(root) / DATA_PATH.format(chunk_index=episode // CHUNK_SIZE, file_index=episode % CHUNK_SIZE)


def is_legacy(info: dict) -> bool:
    return info.get("codebase_version") == LEGACY_VERSION


def camera_columns(view: str) -> tuple[str, str, str]:
    """A view's (image, intrinsics, extrinsics) columns."""
    return f"observation.images.{view}", f"observation.camera_intrinsics.{view}", f"observation.camera_extrinsics.{view}"


def view_columns(info: dict) -> dict[str, tuple[str, str, str]]:
    """view -> its (image, intrinsics, extrinsics) columns, the first view first (the trace is in it).
    Datasets written before views were named hold one view under ``observation.image``; a dataset LeRobot
    wrote names its views by its image features (``observation.images.<view>``)."""
    if "cameras" in info:
        return {v: camera_columns(v) for v in info["cameras"]}
    if is_legacy(info):
        return {info.get("camera", "camera"): ("observation.image", "observation.camera_intrinsics",
                                                "observation.camera_extrinsics")}
    images = [k for k, f in info.get("features", {}).items() if f.get("dtype") == "image"]
    if not images and any(f.get("dtype") == "video" for f in info.get("features", {}).values()):
        raise DatasetError("this dataset stores its cameras as video; reasonact reads image features only "
                           "(record with use_videos=False, or convert the videos to images)")
    views = {k.removeprefix("observation.images."): k for k in images}
    return {v: (k, camera_columns(v)[1], camera_columns(v)[2]) for v, k in views.items()}


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
            *[(c[0], IMAGE) for c in cols],
            ("observation.depth", DEPTH),
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
    """Every column as LeRobot declares features: dtype, shape (as stored: matrices flat) and names."""
    r = resolution
    cameras = {}
    for image, K, E in map(camera_columns, views):
        cameras[image] = {"dtype": "image", "shape": [r, r, 3], "names": ["height", "width", "channels"]}
        cameras[K] = {"dtype": "float32", "shape": [9], "names": None,
                      "info": "3x3 row-major, pixels; OpenCV convention"}
        cameras[E] = {"dtype": "float32", "shape": [16], "names": None,
                      "info": "4x4 row-major, world -> camera, OpenCV axes"}
    one = {"shape": [1], "names": None}
    return {
        **cameras,
        "observation.depth": {
            "dtype": "uint16", "shape": [r, r], "names": ["height", "width"],
            "info": f"the first view's ({views[0]}) depth; metres = value * {DEPTH_SCALE}; clipped at 6.5535 m",
        },
        "observation.state": {"dtype": "float32", "shape": [state_dim], "names": None},
        "observation.ee_pos": {"dtype": "float32", "shape": [3], "names": ["x", "y", "z"],
                               "info": "metres, world frame"},
        "observation.privileged": {"dtype": "float32", "shape": [privileged_dim], "names": None,
                                   "info": "simulator state; never a model input"},
        **({"observation.points": {
            "dtype": "float32", "shape": [points_dim], "names": None,
            "info": "world xyz (m) of the task's object, then its goal (simulator truth); a training target, "
                    "never a model input"}}
           if points_dim else {}),
        "action": {"dtype": "float32", "shape": [action_dim], "names": None, "info": "each in [-1, 1]"},
        "next.success": {"dtype": "bool", **one},
        "index": {"dtype": "int64", **one},
        "episode_index": {"dtype": "int64", **one},
        "frame_index": {"dtype": "int64", **one},
        "timestamp": {"dtype": "float32", **one},
        "task_index": {"dtype": "int64", **one},
    }


class DatasetError(ValueError):
    """A dataset directory is missing, incomplete, or does not fit the request."""


def read_info(root: str | Path) -> dict:
    root = Path(root)
    info_path = root / "meta" / "info.json"
    if not info_path.exists():
        raise DatasetError(
            f"{root} is not a dataset (no meta/info.json); create one with "
            f"`reasonact collect --suite mt10 --out {root}`"
        )
    return read_json(info_path)


# -- reading ------------------------------------------------------------------------------------
def read_stats(root: Path) -> dict | None:
    path = Path(root) / "meta" / "stats.json"
    return read_json(path) if path.exists() else None


def _read_tables(files: list[Path], columns: list[str] | None = None) -> pa.Table:
    tables = [pq.read_table(f, columns=columns) for f in files]
    return pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]


def read_episodes(root: Path, info: dict) -> list[dict]:
    """One dict per episode in order: episode_index, task, seed, expert, length, file, first_index."""
    root = Path(root)
    if is_legacy(info):
        episodes = pq.read_table(root / "meta" / "episodes.parquet").to_pylist()
        for e in episodes:
            e.setdefault("expert", "task")  # datasets written before random-path episodes existed
        return episodes
    files = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    if not files:
        raise DatasetError(f"{root} has no meta/episodes/chunk-*/file-*.parquet; if `reasonact collect` wrote it, "
                           "re-run the same command to finish it")
    schema = pq.read_schema(files[0])
    wanted = ["episode_index", "tasks", "length", "data/chunk_index", "data/file_index", "dataset_from_index",
              "task", "seed", "expert"]
    rows = _read_tables(files, [c for c in wanted if c in schema.names]).to_pylist()
    path = info.get("data_path", DATA_PATH)
    return [{
        "episode_index": r["episode_index"],
        "task": r.get("task") or (r.get("tasks") or [""])[0],  # reasonact's task name, else LeRobot's task
        "seed": r.get("seed", -1),
        "expert": r.get("expert", "task"),
        "length": r["length"],
        "file": path.format(chunk_index=r["data/chunk_index"], file_index=r["data/file_index"]),
        "first_index": r["dataset_from_index"],
    } for r in sorted(rows, key=lambda r: r["dataset_from_index"])]


def read_tasks(root: Path, info: dict) -> list[dict]:
    """One dict per task in task_index order: task (reasonact's name, e.g. push-v3, else the language),
    instruction, paraphrases, unseen. LeRobot indexes its task table by the task's language."""
    table = pq.read_table(Path(root) / "meta" / "tasks.parquet")
    if is_legacy(info):
        return table.to_pylist()
    meta = json.loads((table.schema.metadata or {}).get(b"pandas", b"{}"))
    index = next((c for c in meta.get("index_columns", []) if isinstance(c, str)), None)
    rows = []
    for r in sorted(table.to_pylist(), key=lambda r: r["task_index"]):
        language = r.get(index) if index else r.get("instruction", r.get("task"))
        rows.append({"task_index": r["task_index"], "task": r.get("task") or language, "instruction": language,
                     "paraphrases": r.get("paraphrases") or [], "unseen": r.get("unseen") or []})
    return rows


def read_frames(root: Path, episodes: list[dict]) -> pa.Table:
    """Every step of the given episodes, in global frame order, as one Arrow table (images stay encoded)."""
    files = list(dict.fromkeys(Path(root) / e["file"] for e in episodes))  # LeRobot packs episodes per file
    table = _read_tables(files)
    index = table["index"].to_numpy()
    if len(index) and not (np.diff(index) > 0).all():
        table = table.take(np.argsort(index, kind="stable"))
    return table


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
    for f in sorted((root / "data").glob("chunk-*/file-*.parquet")):
        try:
            meta = pq.read_metadata(f)
        except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
            raise DatasetError(f"episode file {f} is damaged ({e}); delete it and run the same `reasonact collect` "
                               "again: that episode is collected anew") from None
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
    return read_jsonl(root / "meta" / "failures.jsonl")


def append_failure(root: Path, task: str, seed: int, expert: str) -> None:
    path = root / "meta" / "failures.jsonl"
    with open(path, "a") as f:
        f.write(json.dumps({"task": task, "seed": seed, "expert": expert}) + "\n")
        f.flush()
        os.fsync(f.fileno())


def write_episode(root: Path, result: dict, episode_index: int, first_index: int, task_index: int) -> Path:
    """Write one collected episode: ``result["columns"]`` holds every column of :func:`episode_schema`
    but the index columns -- PNG bytes per view, (H, W) uint16 depth, vectors -- (``result["views"]`` names
    the views, ``result["dims"]`` the vector widths)."""
    cols = result["columns"]
    n = result["length"]
    fps = fps_of(root)
    schema = episode_schema(result["views"], *result["dims"]).with_metadata(
        {
            "reasonact.task": result["task"],
            "reasonact.seed": str(result["seed"]),
            "reasonact.expert": result["expert"],
            "reasonact.episode_index": str(episode_index),
        }
    )
    index = {"index": np.arange(first_index, first_index + n), "episode_index": np.full(n, episode_index),
             "frame_index": np.arange(n), "timestamp": np.arange(n, dtype=np.float32) / fps,
             "task_index": np.full(n, task_index)}
    arrays = []
    for f in schema:
        if f.name in index:
            arrays.append(pa.array(index[f.name], f.type))
        elif f.type == IMAGE:
            arrays.append(pa.StructArray.from_arrays([pa.array(cols[f.name], pa.binary()), pa.nulls(n, pa.string())],
                                                     fields=list(IMAGE)))
        elif f.type == DEPTH:
            d = np.asarray(cols[f.name], np.uint16)  # (n, H, W)
            rows = pa.ListArray.from_arrays(pa.array(np.arange(0, d.size + 1, d.shape[2], dtype=np.int32)),
                                            pa.array(d.reshape(-1)))
            arrays.append(pa.ListArray.from_arrays(pa.array(np.arange(0, n * d.shape[1] + 1, d.shape[1],
                                                                      dtype=np.int32)), rows))
        elif pa.types.is_fixed_size_list(f.type):
            arr = np.asarray(cols[f.name], np.float32).reshape(-1)
            arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(arr, pa.float32()), f.type.list_size))
        else:
            arrays.append(pa.array(cols[f.name], f.type))
    table = pa.Table.from_arrays(arrays, schema=schema)
    path = episode_file(root, episode_index)
    # PNG bytes do not compress further; everything else is zstd.
    write_parquet_atomic(table, path, compression={f.name: "none" if f.type == IMAGE else "zstd" for f in schema})
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


def _indexed_by(table: pa.Table, index: str) -> pa.Table:
    """Mark ``index`` as the table's pandas index, so that ``pandas.read_parquet`` (LeRobot's reader) gives
    a frame indexed by it; other readers see a plain column."""
    pandas_type = {pa.int64(): ("int64", "int64"), pa.string(): ("unicode", "object")}
    columns = [{"name": f.name, "field_name": f.name,
                "pandas_type": pandas_type.get(f.type, ("list[unicode]", "object"))[0],
                "numpy_type": pandas_type.get(f.type, ("", "object"))[1], "metadata": None} for f in table.schema]
    meta = {"index_columns": [index], "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode",
                                                          "numpy_type": "object", "metadata": {"encoding": "UTF-8"}}],
            "columns": columns, "creator": {"library": "pyarrow", "version": pa.__version__}, "pandas_version": "2.2.3"}
    return table.replace_schema_metadata({b"pandas": json.dumps(meta).encode()})


def _image_stats(files: list[Path], columns: list[str], sample: int = 500) -> dict:
    """Per-channel min/max/mean/std of each view over up to ``sample`` frames from up to 50 episode files
    spread over the dataset (read once for every view), in [0, 1], shaped (3, 1, 1) as LeRobot keeps image
    statistics."""
    from ..io import decode_png

    few = [files[i] for i in np.unique(np.linspace(0, len(files) - 1, min(len(files), 50)).round().astype(int))]
    table = _read_tables(few, columns)
    pick = np.linspace(0, table.num_rows - 1, min(sample, table.num_rows)).round().astype(int)
    shaped = lambda v: [[[float(c)]] for c in v]  # noqa: E731
    stats = {}
    for column in columns:
        images = table[column].combine_chunks().field("bytes")
        px = np.stack([decode_png(images[int(i)].as_py()) for i in pick]).reshape(-1, 3) / 255.0
        stats[column] = {"min": shaped(px.min(0)), "max": shaped(px.max(0)), "mean": shaped(px.mean(0)),
                         "std": shaped(px.std(0)), "count": [len(pick)]}
    return stats


def finalize(root: Path) -> int:
    """(Re)write meta/: episodes, tasks, stats and info, from the episode files on disk."""
    from ..envs import simulator, task_text
    from .stats import compute_stats

    root = Path(root)
    info = read_info(root)
    sim = simulator(info.get("env", "metaworld"))
    episodes = existing_episodes(root)
    failures = read_failures(root)
    tasks = info["tasks"]
    texts = [task_text(t) for t in tasks]
    first = 0
    for e in episodes:
        e["first_index"] = first
        first += e["length"]
    e_index = [e["episode_index"] for e in episodes]
    write_parquet_atomic(pa.table({
        "episode_index": pa.array(e_index, pa.int64()),
        "tasks": pa.array([[texts[tasks.index(e["task"])].instruction] for e in episodes], pa.list_(pa.string())),
        "length": pa.array([e["length"] for e in episodes], pa.int64()),
        "data/chunk_index": pa.array([i // CHUNK_SIZE for i in e_index], pa.int64()),
        "data/file_index": pa.array([i % CHUNK_SIZE for i in e_index], pa.int64()),
        "dataset_from_index": pa.array([e["first_index"] for e in episodes], pa.int64()),
        "dataset_to_index": pa.array([e["first_index"] + e["length"] for e in episodes], pa.int64()),
        "meta/episodes/chunk_index": pa.array([0] * len(episodes), pa.int64()),
        "meta/episodes/file_index": pa.array([0] * len(episodes), pa.int64()),
        "task": pa.array([e["task"] for e in episodes], pa.string()),
        "seed": pa.array([e["seed"] for e in episodes], pa.int64()),
        "expert": pa.array([e["expert"] for e in episodes], pa.string()),
    }), root / EPISODES_PATH)
    write_parquet_atomic(_indexed_by(pa.table({
        "task_index": pa.array(range(len(tasks)), pa.int64()),
        "task": pa.array(tasks, pa.string()),
        "paraphrases": pa.array([list(x.paraphrases) for x in texts], pa.list_(pa.string())),
        "unseen": pa.array([list(x.unseen) for x in texts], pa.list_(pa.string())),
        "__index_level_0__": pa.array([x.instruction for x in texts], pa.string()),
    }), "__index_level_0__"), root / "meta" / "tasks.parquet")
    files = [root / e["file"] for e in episodes]
    views = list(view_columns(info))
    state_dim = action_dim = priv_dim = points_dim = 0
    if files:
        numeric = _read_tables(files, ["observation.state", "action", "observation.privileged"])
        schema = pq.read_schema(files[0])
        k = schema.get_field_index("observation.points")
        points_dim = 0 if k < 0 else schema.field(k).type.list_size
        actions = np.asarray(numeric["action"].combine_chunks().flatten()).reshape(numeric.num_rows, -1)
        states = np.asarray(numeric["observation.state"].combine_chunks().flatten()).reshape(numeric.num_rows, -1)
        priv_dim = len(numeric["observation.privileged"][0])
        state_dim, action_dim = states.shape[1], actions.shape[1]
        stats = {"action": compute_stats(actions), "observation.state": compute_stats(states),
                 **_image_stats(files, [camera_columns(v)[0] for v in views])}
        write_json_atomic(root / "meta" / "stats.json", stats)
    seeds: dict[str, list[int]] = {t: [] for t in tasks}
    for e in episodes:
        seeds.setdefault(e["task"], []).append(e["seed"])
    failed: dict[str, list[int]] = {}
    for f in failures:
        failed.setdefault(f["task"], []).append(f["seed"])
    info.update(
        codebase_version=CODEBASE_VERSION,
        robot_type=sim.ROBOT,
        complete=bool(files),
        total_episodes=len(episodes),
        experts={x: sum(e["expert"] == x for e in episodes) for x in EXPERTS},
        total_frames=first,
        total_tasks=len(tasks),
        fps=sim.FPS,
        chunks_size=CHUNK_SIZE,
        data_files_size_in_mb=100,
        video_files_size_in_mb=200,
        data_path=DATA_PATH,
        video_path=None,
        splits={"train": f"0:{len(episodes)}"},
        action_space=sim.ACTION_SPACE,
        state_dim=state_dim,
        action_dim=action_dim,
        features=features(views, info["resolution"], state_dim, action_dim, priv_dim, points_dim),
        seeds={t: sorted(v) for t, v in seeds.items()},
        failed_seeds={t: sorted(v) for t, v in failed.items()},
    )
    write_json_atomic(root / "meta" / "info.json", info)
    return first
