"""Small I/O helpers: atomic writes (nothing half-written survives a crash) and image codecs."""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

DEPTH_SCALE = 1e-4  # metres per unit of the stored uint16 depth: 0.1 mm steps, 6.5535 m at most


def _file_mode() -> int:
    """The mode ``open()`` gives a new file under the process's umask (``mkstemp`` would give 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        # mkstemp (and some writers, e.g. safetensors) leave 0600: give the mode any file the user writes has,
        # so that a lab's shared storage can read datasets and runs
        os.chmod(tmp_path, _file_mode())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=2, default=_json_default) + "\n").encode())


def _json_default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def content_digest(obj: Any) -> str:
    """A short digest of a JSON-able object (dict keys sorted): equal content, equal digest."""
    import hashlib

    text = json.dumps(obj, sort_keys=True, default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The JSON objects of a file written one line at a time ([] when it does not exist). A line cut short by a
    kill in the middle of a write is skipped: the lines before it stand."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            records.append(rec)
    return records


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file; a damaged one raises ValueError naming the file."""
    with open(path) as f:
        try:
            return json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path} is not valid JSON ({e}): the file is damaged; restore or re-create it") from None


def encode_png(img: np.ndarray, level: int = 1) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", compress_level=level)
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)))


def quantize_depth(depth_m: np.ndarray) -> np.ndarray:
    """Metres (float) -> uint16 in DEPTH_SCALE units, clipped at 6.5535 m."""
    return np.clip(np.round(np.asarray(depth_m) / DEPTH_SCALE), 0, 65535).astype(np.uint16)


def decode_depth(data: bytes) -> np.ndarray:
    """A 16-bit PNG in DEPTH_SCALE units (datasets of the reasonact/v1 layout) -> metres."""
    return decode_png(data).astype(np.float32) * np.float32(DEPTH_SCALE)


def write_parquet_atomic(table, path: str | os.PathLike, **kwargs) -> None:
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, **kwargs)
