"""Per-dimension statistics (LeRobot's names: min, max, mean, std, plus q01/q99 for tokenizers)."""

from __future__ import annotations

import numpy as np


def compute_stats(x: np.ndarray) -> dict[str, list[float]]:
    """x: (N, D) -> {stat: [D floats]}."""
    x = np.asarray(x, dtype=np.float64)
    q01, q99 = np.quantile(x, [0.01, 0.99], axis=0)
    return {
        "min": x.min(0).tolist(),
        "max": x.max(0).tolist(),
        "mean": x.mean(0).tolist(),
        "std": x.std(0).tolist(),
        "q01": q01.tolist(),
        "q99": q99.tolist(),
        "count": [int(x.shape[0])] * x.shape[1],
    }
