"""reasonact: Action Reasoning Models that perceive depth, draw a trace, explain, then act.

Every pipeline stage is a function here and a ``reasonact`` command of the same name.
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "collect": ("reasonact.data.collect", "collect"),
    "load_dataset": ("reasonact.data.dataset", "load_dataset"),
    "show": ("reasonact.data.show", "show"),
    "make_env": ("reasonact.envs", "make_env"),
    "train": ("reasonact.training.loop", "train"),
    "fake_dataset": ("reasonact.data.fake", "fake_dataset"),
    "load_policy": ("reasonact.policy", "load_policy"),
    "evaluate": ("reasonact.evaluation.evaluate", "evaluate"),
    "annotate": ("reasonact.reasoning.annotate", "annotate"),
    "train_depth_vae": ("reasonact.tokenizers.depth_vae", "train_depth_vae"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'reasonact' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
