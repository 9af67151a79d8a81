"""Token layout and attention masks.

Every token carries a *role*, the *block* it belongs to and a rotary *position*. One function,
:func:`allowed`, turns those into the attention mask for training and for cached decoding alike:

- the prefix (image, instruction, state) attends to itself, bidirectionally, and never to later tokens;
- ``ar``: generated tokens attend causally (to the prefix and to every earlier generated token);
- ``diffusion``: a block's marker attends to the prefix and earlier blocks; a block's tokens attend to the
  prefix, earlier blocks, their marker and, bidirectionally, to each other. During training each block
  also appears as a *noisy* (partly masked) copy that sits after the clean sequence, with the clean
  copy's positions, and attends to the clean earlier blocks -- exactly what it sees when decoding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

PREFIX, MARKER, CLEAN, NOISY = 0, 1, 2, 3


@dataclass
class Span:
    """Attributes of a run of tokens, each a (L,) long tensor."""

    role: torch.Tensor
    block: torch.Tensor
    pos: torch.Tensor

    def __len__(self) -> int:
        return len(self.role)

    @classmethod
    def make(cls, role: list[int], block: list[int], pos: list[int], device=None) -> "Span":
        t = lambda x: torch.tensor(x, dtype=torch.long, device=device)  # noqa: E731
        return cls(t(role), t(block), t(pos))

    @classmethod
    def empty(cls, device=None) -> "Span":
        return cls.make([], [], [], device)

    def cat(self, other: "Span") -> "Span":
        return Span(torch.cat([self.role, other.role]), torch.cat([self.block, other.block]),
                    torch.cat([self.pos, other.pos]))

    def to(self, device) -> "Span":
        return Span(self.role.to(device), self.block.to(device), self.pos.to(device))


def allowed(q: Span, k: Span, causal: bool) -> torch.Tensor:
    """(Lq, Lk) bool: may query i attend to key j (padding is handled separately)."""
    qr, kr = q.role[:, None], k.role[None, :]
    qb, kb = q.block[:, None], k.block[None, :]
    q_prefix = qr == PREFIX
    k_prefix = kr == PREFIX
    gen = ~q_prefix & ~k_prefix
    if causal:
        rule = gen & (k.pos[None, :] <= q.pos[:, None])
    else:
        to_marker = (kr == MARKER) & (kb <= qb)
        to_clean = (kr == CLEAN) & ((kb < qb) | ((kb == qb) & (qr == CLEAN)))
        to_noisy = (kr == NOISY) & (qr == NOISY) & (kb == qb)
        rule = gen & (to_marker | to_clean | to_noisy)
    return k_prefix.expand(len(q), -1) | rule


def prefix_span(n: int, device=None) -> Span:
    return Span.make([PREFIX] * n, [-1] * n, list(range(n)), device)


def block_positions(n_prefix: int, lengths: list[int]) -> list[tuple[int, int]]:
    """(marker position, first token position) of each block in the decoding layout."""
    out, p = [], n_prefix
    for L in lengths:
        out.append((p, p + 1))
        p += 1 + L
    return out


def training_span(n_prefix: int, lengths: list[int], diffusion: bool, device=None) -> tuple[Span, list[slice], list[int]]:
    """The generated part of a training sequence.

    Returns the span of the generated tokens (after the prefix), the slice of each block's *target*
    tokens within it, and the index of each block's marker within it.
    """
    role, block, pos, targets, markers = [], [], [], [], []
    places = block_positions(n_prefix, lengths)
    n_blocks = len(lengths)
    for b, ((mpos, tpos), L) in enumerate(zip(places, lengths)):
        markers.append(len(role))
        role.append(MARKER), block.append(b), pos.append(mpos)
        if not diffusion:
            targets.append(slice(len(role), len(role) + L))
            role += [CLEAN] * L
            block += [b] * L
            pos += list(range(tpos, tpos + L))
        elif b < n_blocks - 1:  # clean context copy for the blocks after it
            role += [CLEAN] * L
            block += [b] * L
            pos += list(range(tpos, tpos + L))
    if diffusion:
        for b, ((_, tpos), L) in enumerate(zip(places, lengths)):
            targets.append(slice(len(role), len(role) + L))
            role += [NOISY] * L
            block += [b] * L
            pos += list(range(tpos, tpos + L))
    return Span.make(role, block, pos, device), targets, markers
