"""Rollout videos with the predicted (or given) trace drawn on the frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np

EXECUTED_PATH_COLOR = (255, 0, 255)  # magenta: apart from the red arm and the yellow given path


def _caption(ep, k: int) -> str:
    return f"{ep.task} t={k}" + (" success" if ep.success and k == len(ep.frames) - 1 else "")


def write_videos(episodes, directory: Path, resolution: int) -> None:
    """One MP4 per recorded episode, with the trace the policy predicted (or was given) drawn on each frame."""
    from ..viz.draw import GIVEN_TRACE_COLOR, TRACE_COLOR, draw_trace, label, write_video

    scale = max(1, 256 // resolution)
    for ep in episodes:
        if not ep.record or not ep.frames:
            continue
        color = GIVEN_TRACE_COLOR if ep.given_trace is not None else TRACE_COLOR
        frames = []
        for k, (img, tr) in enumerate(zip(ep.frames, ep.frame_traces)):
            f = draw_trace(img, tr, scale=scale, color=color)
            frames.append(label(f, _caption(ep, k)))
        write_video(directory / f"{ep.task}_seed{ep.seed}.mp4", frames, fps=30)


def steered_frames(ep, given: np.ndarray, resolution: int) -> list[np.ndarray]:
    """The frames of a recorded steered episode with the whole given path (yellow, pixels of the first view)
    and the gripper's executed path up to each frame (magenta, its end effector projected) drawn on them."""
    from PIL import Image

    from ..envs import project
    from ..viz.draw import GIVEN_TRACE_COLOR, draw_trace, label, upscale

    if not ep.frames or ep.camera is None:
        raise ValueError(f"episode {ep.task} seed {ep.seed} was not recorded (Episode(record=True))")
    scale = max(1, 256 // resolution)
    executed = project(np.asarray(ep.ee_path[:len(ep.frames)], np.float64), *ep.camera)
    out = []
    for k, img in enumerate(ep.frames):
        canvas = Image.fromarray(upscale(np.asarray(img)[..., :3], scale))
        draw_trace(None, given, scale=scale, color=GIVEN_TRACE_COLOR, canvas=canvas)
        done = np.vstack([executed[:k + 1:4], executed[k:k + 1]])  # every 4th step, and where the gripper is now
        f = draw_trace(None, done, scale=scale, color=EXECUTED_PATH_COLOR, canvas=canvas)
        out.append(label(f, _caption(ep, k)))
    return out
