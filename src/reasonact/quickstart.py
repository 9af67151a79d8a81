"""``reasonact quickstart`` (what ``make demo`` runs): the main job on a small embedded default."""

from __future__ import annotations

from pathlib import Path


def quickstart(out: str | Path = "demo", *, workers: int | None = None) -> Path:
    from .data.collect import collect
    from .data.show import show

    out = Path(out)
    summary = collect(out / "data", suite="mt10", tasks="reach-v3,drawer-close-v3", episodes_per_task=5,
                      resolution=96, workers=workers)
    print(summary)
    sheet = show(out / "data", 0, out / "episode0.png")
    print(f"contact sheet of episode 0 with its trace: {sheet}")
    return out
