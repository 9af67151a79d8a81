"""Visualisation: trace overlays, contact sheets, videos, plots, attention maps."""

from .draw import contact_sheet, draw_trace, label, upscale, write_video

__all__ = ["contact_sheet", "draw_trace", "label", "upscale", "write_video"]
