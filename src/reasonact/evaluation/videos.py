"""Rollout videos with the predicted (or given) trace drawn on the frames."""

from __future__ import annotations

from pathlib import Path


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
            frames.append(label(f, f"{ep.task} t={k}" + (" success" if ep.success and k == len(ep.frames) - 1 else "")))
        write_video(directory / f"{ep.task}_seed{ep.seed}.mp4", frames, fps=30)
