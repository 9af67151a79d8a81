"""Action tokenizer: per-dimension quantile bounds -> clip to [-1, 1] -> uniform bins."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class ActionTokenizer:
    low: list[float]  # per-dimension q01
    high: list[float]  # per-dimension q99
    bins: int = 256

    @classmethod
    def from_stats(cls, stats: dict, bins: int = 256) -> "ActionTokenizer":
        if "action" not in stats or "q01" not in stats["action"]:
            raise ValueError("dataset stats have no action q01/q99; re-run `reasonact collect` on the dataset")
        return cls(list(map(float, stats["action"]["q01"])), list(map(float, stats["action"]["q99"])), bins)

    @property
    def dim(self) -> int:
        return len(self.low)

    def _bounds(self) -> tuple[np.ndarray, np.ndarray]:
        low = np.asarray(self.low, np.float64)
        high = np.asarray(self.high, np.float64)
        return low, np.maximum(high, low + 1e-6)

    def normalize(self, actions: np.ndarray) -> np.ndarray:
        low, high = self._bounds()
        return np.clip(2 * (np.asarray(actions, np.float64) - low) / (high - low) - 1, -1, 1)

    def encode(self, actions: np.ndarray) -> np.ndarray:
        """(..., D) float -> (..., D) int64 in [0, bins)."""
        actions = np.asarray(actions)
        if actions.shape[-1] != self.dim:
            raise ValueError(f"expected actions with {self.dim} dimensions, got shape {actions.shape}")
        x = (self.normalize(actions) + 1) / 2 * self.bins
        return np.clip(np.floor(x), 0, self.bins - 1).astype(np.int64)

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """(..., D) int -> (..., D) float32: bin centres in the environment's units."""
        low, high = self._bounds()
        x = (np.asarray(tokens, np.float64) + 0.5) / self.bins * 2 - 1
        return ((x + 1) / 2 * (high - low) + low).astype(np.float32)

    def bin_width(self) -> np.ndarray:
        low, high = self._bounds()
        return ((high - low) / self.bins).astype(np.float32)

    def to_dict(self) -> dict:
        return {"type": "action", **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "ActionTokenizer":
        return cls(d["low"], d["high"], d.get("bins", 256))
