"""One vocabulary for every block: specials | text | depth codes | coordinate bins | action bins | late markers.

Each generated block (``think``, ``depth``, ``points``, ``trace``, ``act``) opens with its marker token and
is decoded within its own token range. Markers of blocks added after the first vocabulary (``points``) sit
after the action range, and only in vocabularies that use them, so that older runs keep their token ids.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

# <pad> and <eot> sit just before the text range so that a rationale block is one contiguous range.
SPECIALS = ("<mask>", "<think>", "<depth>", "<trace>", "<act>", "<pad>", "<eot>")
BLOCKS = ("think", "depth", "points", "trace", "act")  # fixed order in the sequence
LATE_MARKERS = ("<points>",)


@dataclass(frozen=True)
class Vocab:
    text: int = 256
    depth: int = 128
    coord: int = 256
    action: int = 256
    late: tuple[str, ...] = ()  # markers after the action range, e.g. ("<points>",)

    def __post_init__(self):
        object.__setattr__(self, "late", tuple(self.late))  # a list when read from vocab.json
        unknown = set(self.late) - set(LATE_MARKERS)
        if unknown:
            raise ValueError(f"unknown late marker(s) {sorted(unknown)}; known: {', '.join(LATE_MARKERS)}")

    @classmethod
    def for_blocks(cls, blocks, **sizes) -> "Vocab":
        """The vocabulary a sequence of these blocks needs (late markers only where used)."""
        return cls(**sizes, late=tuple(m for m in LATE_MARKERS if m[1:-1] in blocks))

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
        name = f"<{block}>"
        if name in SPECIALS:
            return SPECIALS.index(name)
        if name not in self.late:
            raise ValueError(f"this vocabulary has no {name} marker (a run trained before the {block} block existed)")
        return self.offset("late") + self.late.index(name)

    def offset(self, kind: str) -> int:
        order = ("text", "depth", "coord", "action")
        off = self.n_special
        for k in order:
            if k == kind:
                return off
            off += getattr(self, k)
        if kind == "late":
            return off
        raise KeyError(kind)

    @property
    def size(self) -> int:
        return self.n_special + self.text + self.depth + self.coord + self.action + len(self.late)

    def block_range(self, block: str) -> tuple[int, int]:
        """Token ids [lo, hi) a block may contain."""
        if block == "think":  # padding, the end-of-text marker, and text
            return self.pad, self.offset("text") + self.text
        kind = {"depth": "depth", "points": "coord", "trace": "coord", "act": "action"}[block]
        lo = self.offset(kind)
        return lo, lo + getattr(self, kind)

    def to_dict(self) -> dict:
        d = asdict(self)
        if not self.late:  # vocab.json as written before late markers existed
            del d["late"]
        else:
            d["late"] = list(self.late)
        return d
