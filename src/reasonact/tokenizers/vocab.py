"""One vocabulary for every block: specials | text | depth codes | coordinate bins | action bins.

Each generated block (``think``, ``depth``, ``trace``, ``act``) opens with its marker token and is
decoded within its own token range.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

# <pad> and <eot> sit just before the text range so that a rationale block is one contiguous range.
SPECIALS = ("<mask>", "<think>", "<depth>", "<trace>", "<act>", "<pad>", "<eot>")
BLOCKS = ("think", "depth", "trace", "act")  # fixed order in the sequence


@dataclass(frozen=True)
class Vocab:
    text: int = 256
    depth: int = 128
    coord: int = 256
    action: int = 256

    @property
    def n_special(self) -> int:
        return len(SPECIALS)

    def special(self, name: str) -> int:
        return SPECIALS.index(name)

    @property
    def pad(self) -> int:
        return SPECIALS.index("<pad>")

    @property
    def mask(self) -> int:
        return SPECIALS.index("<mask>")

    @property
    def eot(self) -> int:
        return SPECIALS.index("<eot>")

    def marker(self, block: str) -> int:
        return SPECIALS.index(f"<{block}>")

    def offset(self, kind: str) -> int:
        order = ("text", "depth", "coord", "action")
        off = self.n_special
        for k in order:
            if k == kind:
                return off
            off += getattr(self, k)
        raise KeyError(kind)

    @property
    def size(self) -> int:
        return self.n_special + self.text + self.depth + self.coord + self.action

    def block_range(self, block: str) -> tuple[int, int]:
        """Token ids [lo, hi) a block may contain."""
        if block == "think":  # padding, the end-of-text marker, and text
            return self.pad, self.offset("text") + self.text
        kind = {"depth": "depth", "trace": "coord", "act": "action"}[block]
        lo = self.offset(kind)
        return lo, lo + getattr(self, kind)

    def to_dict(self) -> dict:
        return asdict(self)
