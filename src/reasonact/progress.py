"""Progress bars that stay readable in a log: on a terminal a live tqdm bar; when the output is a file or a
pipe (``make demo > log``), one plain line at most every 30 seconds and one at the end, instead of every
refresh of the bar."""

from __future__ import annotations

import sys

LOG_INTERVAL_S = 30.0


class _Lines:
    """A file for tqdm that writes each refresh as its own line, never a carriage return."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").replace("\x1b[A", "").strip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(iterable=None, *, disable: bool = False, **kwargs):
    """``tqdm(iterable, **kwargs)`` that writes plain, rare lines when stderr is not a terminal."""
    from tqdm.auto import tqdm

    stream = sys.stderr
    if disable or stream.isatty() or "ipykernel" in sys.modules:
        return tqdm(iterable, disable=disable, **kwargs)

    class LogBar(tqdm):
        def set_postfix(self, ordered_dict=None, refresh=True, **kw):  # shown with the next line, not now
            super().set_postfix(ordered_dict, refresh=False, **kw)

    kwargs = {"mininterval": LOG_INTERVAL_S, "maxinterval": LOG_INTERVAL_S * 4, "miniters": 1, "ncols": 100,
              **kwargs, "file": _Lines(stream), "ascii": True}
    return LogBar(iterable, **kwargs)
