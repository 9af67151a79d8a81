"""``setting(...)``: a dataclass field that carries its command-line help; the command line is generated
from the config dataclasses (``TrainConfig``, ``EvalConfig``, ``QuickstartConfig``), so every field is an
option with its help and default."""

from __future__ import annotations

from dataclasses import field, fields, replace
from typing import Any


def setting(default: Any, help: str, group: str, **extra) -> Any:
    """A config field with its command-line help and the group it is listed under (``choices=`` too)."""
    meta = {"help": help, "group": group, **extra}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def from_preset(presets: dict, name: str, kind: str, **overrides) -> Any:
    """``presets[name]`` with ``overrides`` applied; unknown names and fields are refused, naming the valid ones."""
    if name not in presets:
        raise ValueError(f"unknown model config {name!r}; choose from {', '.join(presets)}")
    known = {f.name for f in fields(presets[name])}
    bad = set(overrides) - known
    if bad:
        raise ValueError(f"unknown {kind} option(s) {sorted(bad)}; options: {sorted(known)}")
    return replace(presets[name], **overrides)
