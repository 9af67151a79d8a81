"""Worker processes that do not outlive the process that started them.

Simulator workers (``collect``, ``eval``) call :func:`die_with_parent` first thing: a daemon thread watches
the parent's pid and ends the worker as soon as the parent is gone, however it went (``kill -9`` included,
where no clean-up code of the parent runs). Without it, a killed ``collect`` left its workers (~420 MB each)
running under pid 1.
"""

from __future__ import annotations

import os
import threading
import time


def die_with_parent(poll_s: float = 0.5) -> None:
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()
