"""Dataset read speed: random-access items per second from ``load_dataset`` (PNG decode included),
and the time to open the dataset.

    python benchmarks/dataset.py [--data DIR]   # collects a small dataset first when --data is not given
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=None)
    ap.add_argument("--items", type=int, default=3000)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()

    from reasonact.data import load_dataset
    from reasonact.data.collect import collect

    tmp = None
    data = a.data
    if data is None:
        tmp = tempfile.TemporaryDirectory()
        data = Path(tmp.name) / "ds"
        collect(data, suite="mt10", tasks="reach-v3,push-v3", episodes_per_task=4, resolution=128, progress=False)

    t0 = time.perf_counter()
    ds = load_dataset(data)
    open_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(ds), a.items)
    rows = []
    for what, fn in (("full item (rgb+depth+trace)", lambda i: ds[i]), ("rgb only", ds.image)):
        t0 = time.perf_counter()
        for i in idx:
            fn(int(i))
        dt = time.perf_counter() - t0
        rows.append({"access": what, "items": a.items, "items_per_s": a.items / dt, "us_per_item": dt / a.items * 1e6})
    report("dataset", rows, ["access", "items", "items_per_s", "us_per_item"],
           extra={"frames": len(ds), "resolution": ds.resolution, "open_seconds": open_s}, out=a.out)
    print(f"opened {len(ds)} frames in {open_s:.2f}s")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
