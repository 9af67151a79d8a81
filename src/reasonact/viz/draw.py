"""Drawing overlays on frames: the visual trace (planned path), labels, and contact sheets."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

TRACE_COLOR = (0, 255, 120)
GIVEN_TRACE_COLOR = (255, 200, 0)


def upscale(img: np.ndarray, scale: int) -> np.ndarray:
    return img if scale == 1 else np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)


def draw_trace(
    img: np.ndarray,
    points: np.ndarray | None,
    *,
    scale: int = 1,
    color: tuple[int, int, int] = TRACE_COLOR,
    canvas: Image.Image | None = None,
) -> np.ndarray:
    """Draw a trace (P, 2) given in the pixel coordinates of ``img`` onto ``img`` upscaled by ``scale``.

    The first point is drawn hollow (where the gripper is now), the last one largest (where it ends).
    """
    im = canvas if canvas is not None else Image.fromarray(upscale(np.asarray(img), scale))
    if points is not None and len(points):
        d = ImageDraw.Draw(im)
        pts = [(float(x) * scale, float(y) * scale) for x, y in np.asarray(points, dtype=np.float64)]
        width = max(1, scale // 2 + 1)
        if len(pts) > 1:
            d.line(pts, fill=color, width=width, joint="curve")
        for k, (x, y) in enumerate(pts):
            r = max(1.5, scale * (0.6 + 0.6 * k / max(1, len(pts) - 1)))
            box = (x - r, y - r, x + r, y + r)
            d.ellipse(box, outline=color, width=width) if k == 0 else d.ellipse(box, fill=color)
    return np.asarray(im)


def label(img: np.ndarray, text: str, *, color=(255, 255, 255)) -> np.ndarray:
    im = Image.fromarray(np.asarray(img))
    d = ImageDraw.Draw(im)
    d.rectangle((0, 0, 7 * len(text) + 4, 13), fill=(0, 0, 0))
    d.text((2, 1), text, fill=color)
    return np.asarray(im)


def contact_sheet(frames: Sequence[np.ndarray], cols: int = 4, pad: int = 2) -> np.ndarray:
    frames = [np.asarray(f) for f in frames]
    h, w = frames[0].shape[:2]
    rows = (len(frames) + cols - 1) // cols
    sheet = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 32, np.uint8)
    for k, f in enumerate(frames):
        r, c = divmod(k, cols)
        sheet[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = f[..., :3]
    return sheet


def write_video(path: str | Path, frames: Sequence[np.ndarray], fps: int = 20) -> Path:
    """Write frames as .mp4 (H.264 through imageio-ffmpeg) or .gif, chosen by the file's suffix."""
    import imageio.v2 as iio

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".mp4", ".gif"):
        raise ValueError(f"unsupported video file type {suffix!r}; use .mp4 or .gif")
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = [np.asarray(f)[..., :3] for f in frames]
    if suffix == ".gif":
        iio.mimwrite(path, frames, format="GIF", duration=1000 / fps, loop=0)
    else:
        iio.mimwrite(path, frames, format="FFMPEG", fps=fps, codec="libx264", macro_block_size=8)
    return path
