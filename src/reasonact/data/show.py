"""``reasonact show``: look at an episode with its trace drawn (video or contact sheet)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..viz.draw import contact_sheet, draw_trace, label, write_video
from .dataset import load_dataset


def show(data: str | Path, episode: int, out: str | Path, *, scale: int = 0, frames: int = 16, fps: int = 20) -> Path:
    """Write ``out`` (.png: a contact sheet of ``frames`` frames; .mp4/.gif: every frame) for an episode."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".png", ".mp4", ".gif"):
        raise ValueError(f"--out must end in .png (contact sheet), .mp4 or .gif (video), got {out.name!r}")
    ds = load_dataset(data)
    idx = list(ds.episode_frames(episode))
    scale = scale or max(1, 256 // ds.resolution)
    task = ds.tasks[int(ds.task_index[idx[0]])]["task"]

    def render(i: int) -> np.ndarray:  # the trace on the first view; the other views beside it
        img = draw_trace(ds.image(i), ds.traces[i], scale=scale)
        others = [np.kron(ds.image(i, v), np.ones((scale, scale, 1), np.uint8)) for v in ds.views[1:]]
        return label(np.concatenate([img, *others], 1), f"{task} t={ds.frame_index[i]}")

    if suffix == ".png":
        pick = np.unique(np.linspace(0, len(idx) - 1, min(frames, len(idx))).round().astype(int))
        from PIL import Image

        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(contact_sheet([render(idx[k]) for k in pick])).save(out)
    else:
        write_video(out, [render(i) for i in idx], fps=fps)
    return out
