"""Training: :mod:`.config` (``TrainConfig`` and its presets), :mod:`.setup` (a run built from a dataset)
and :mod:`.loop` (``train``). Importing this package loads neither torch nor the trainer."""

from .config import TRAIN_PRESETS, TrainConfig, train_config

__all__ = ["TRAIN_PRESETS", "TrainConfig", "train_config", "train"]


def __getattr__(name: str):
    if name == "train":
        from .loop import train

        return train
    raise AttributeError(f"module 'reasonact.training' has no attribute {name!r}")
