"""``reasonact annotate``: add teacher rationales to a dataset.

Every K-th step of each episode (a keyframe) gets a rationale from the teacher; every other step
inherits the nearest keyframe's. Keyframe rationales are appended, one JSON line each, to
``meta/rationales/keyframes.jsonl`` as they arrive: an interrupted run resumes where it stopped, and a
rationale once written is never rewritten. ``meta/rationales.parquet`` (one row per frame) is derived
from that file.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.format import DatasetError, write_rationales
from ..io import read_json, read_jsonl, write_json_atomic
from .teachers import PrivilegedTeacher, StepContext, make_teacher


@dataclass
class AnnotateSummary:
    keyframes: int
    new: int
    failures: list[dict] = field(default_factory=list)
    frames: int = 0
    teacher_stats: dict = field(default_factory=dict)

    def __str__(self) -> str:
        s = (f"{self.keyframes} keyframes annotated ({self.new} new), {self.frames} frames carry a rationale")
        if self.failures:
            s += f"; {len(self.failures)} keyframe(s) failed (re-run to retry):"
            s += "".join(f"\n  episode {f['episode_index']} step {f['frame_index']}: {f['error']}" for f in self.failures[:10])
        return s


def _keyframes_file(root: Path) -> Path:
    return root / "meta" / "rationales" / "keyframes.jsonl"


def read_keyframes(root: Path) -> dict[int, dict]:
    out: dict[int, dict] = {}
    for rec in read_jsonl(_keyframes_file(root)):  # a torn last line from a crash is skipped
        out.setdefault(int(rec["index"]), rec)  # the first answer stands
    return out


def annotate(data: str | Path, *, teacher: str = "privileged", every: int = 1, endpoint: str | None = None,
             model: str | None = None, prompt: str | Path | None = None, concurrency: int = 4,
             progress: bool = True, teacher_obj=None) -> AnnotateSummary:
    from ..data import load_dataset
    from ..progress import progress_bar

    if every < 1:
        raise ValueError(f"--every must be at least 1, got {every}")
    ds = load_dataset(data)
    root = ds.root
    settings = {"teacher": teacher, "every": every, "model": model,
                "prompt_sha256": hashlib.sha256(Path(prompt).read_bytes()).hexdigest() if prompt else None}
    meta = root / "meta" / "rationales.json"
    if meta.exists():
        old = read_json(meta)
        if {k: old.get(k) for k in settings} != settings:
            raise DatasetError(f"{root} already has rationales from {old}; they are never rewritten. Annotate a copy "
                               "of the dataset to use another teacher or --every.")
    if teacher_obj is None:  # made before anything is written: a bad teacher setting leaves the dataset as it was
        kwargs = {}
        if teacher == "openai":
            kwargs = dict(endpoint=endpoint, model=model, prompt=prompt, cache_dir=root / "meta" / "rationales" / "cache")
        teacher_obj = make_teacher(teacher, **kwargs)
    write_json_atomic(meta, settings)
    needs_image = not isinstance(teacher_obj, PrivilegedTeacher)

    keys = np.nonzero(ds.frame_index % every == 0)[0]
    done = read_keyframes(root)
    todo = [int(i) for i in keys if int(i) not in done]
    path = _keyframes_file(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    failures: list[dict] = []

    def context(i: int) -> StepContext:
        task = ds.tasks[int(ds.task_index[i])]
        return StepContext(task=task["task"], instruction=task["instruction"], rgb=ds.image(i) if needs_image else None,
                           privileged=ds.privileged[i], action=ds.actions[i], frame_index=int(ds.frame_index[i]),
                           episode_length=int(ds.episode_end[i] - ds.episode_start[i]))

    def ask(i: int):
        return i, teacher_obj.rationale(context(i))

    bar = progress_bar(total=len(todo), desc=f"annotate ({teacher_obj.name})", unit="step", disable=not progress or not todo)
    with open(path, "a") as f:
        def record(i: int, r) -> None:
            f.write(json.dumps({"index": i, "episode_index": int(ds.episode_index[i]), "frame_index": int(ds.frame_index[i]),
                                "teacher": teacher_obj.name, "rationale": r.text()}) + "\n")
            f.flush()
            os.fsync(f.fileno())
            bar.update(1)

        def failed(i: int, e: Exception) -> None:
            failures.append({"index": i, "episode_index": int(ds.episode_index[i]), "frame_index": int(ds.frame_index[i]),
                             "error": str(e)})
            bar.update(1)

        if concurrency <= 1 or not needs_image:
            for i in todo:
                try:
                    record(*ask(i))
                except Exception as e:  # reported in the summary; the rest goes on
                    failed(i, e)
        else:
            with cf.ThreadPoolExecutor(max_workers=concurrency) as pool:
                futures = {pool.submit(ask, i): i for i in todo}
                for fut in cf.as_completed(futures):
                    try:
                        record(*fut.result())
                    except Exception as e:  # reported in the summary; the rest goes on
                        failed(futures[fut], e)
    bar.close()
    frames = _write_frame_table(ds, read_keyframes(root))
    stats = getattr(teacher_obj, "stats", {})
    return AnnotateSummary(keyframes=len(read_keyframes(root)), new=len(todo) - len(failures), failures=failures,
                           frames=frames, teacher_stats=dict(stats))


def _write_frame_table(ds, keyframes: dict[int, dict]) -> int:
    """Give every frame the rationale of the nearest annotated keyframe in its episode."""
    n = len(ds)
    text: list[str | None] = [None] * n
    source = np.full(n, -1, np.int64)
    annotated = np.array(sorted(keyframes), dtype=np.int64)
    if len(annotated):
        ep_of = ds.episode_row[annotated]
        for i in range(n):
            same = annotated[ep_of == ds.episode_row[i]]
            if len(same) == 0:
                continue
            k = same[np.argmin(np.abs(same - i))]  # ties go to the earlier keyframe
            text[i] = keyframes[int(k)]["rationale"]
            source[i] = k
    write_rationales(ds.root, ds.episode_index, ds.frame_index, text, source)
    return int(sum(t is not None for t in text))
