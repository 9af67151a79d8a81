"""Datasets: collection from scripted experts (``data.collect``), the on-disk format, and loading."""

from .dataset import ReasonactDataset, load_dataset
from .format import DatasetError

__all__ = ["ReasonactDataset", "load_dataset", "DatasetError"]
