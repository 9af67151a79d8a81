"""A rationale has four short sections: Observation, Situation, Spatial reasoning, Plan."""

from __future__ import annotations

import re
from dataclasses import dataclass

SECTIONS = ("Observation", "Situation", "Spatial reasoning", "Plan")
_HEAD = re.compile(r"(?im)^[\s*#>-]*\**\s*(observation|situation|spatial reasoning|plan)\s*\**\s*[:\-–]\s*")


@dataclass(frozen=True)
class Rationale:
    observation: str
    situation: str
    spatial: str
    plan: str

    def text(self) -> str:
        return (f"Observation: {self.observation} Situation: {self.situation} "
                f"Spatial reasoning: {self.spatial} Plan: {self.plan}")


class RationaleParseError(ValueError):
    pass


def parse_rationale(text: str) -> Rationale:
    """Parse a teacher's answer (one section per line, or all on one line) into a Rationale."""
    if not isinstance(text, str) or not text.strip():
        raise RationaleParseError("empty answer")
    flat = re.sub(r"\s+", " ", text.strip())
    # Put each heading on its own line so both layouts parse the same way.
    flat = re.sub(r"(?i)\s*\**\s*(observation|situation|spatial reasoning|plan)\s*\**\s*:\s*\**\s*",
                  lambda m: f"\n{m.group(1)}: ", flat)
    parts: dict[str, str] = {}
    for line in flat.splitlines():
        m = _HEAD.match(line)
        if m:
            key = m.group(1).lower()
            if key in parts:
                raise RationaleParseError(f"section {key!r} appears twice")
            parts[key] = line[m.end():].strip()
    missing = [s for s in SECTIONS if not parts.get(s.lower())]
    if missing:
        raise RationaleParseError(f"missing section(s): {', '.join(missing)}")
    clean = lambda s: s.strip().rstrip(".") + "."  # noqa: E731
    return Rationale(*(clean(parts[s.lower()]) for s in SECTIONS))
