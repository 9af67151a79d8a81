"""One refinement round of masked discrete diffusion.

Round t of T (1-based): every still-masked position is predicted at once; committed tokens whose
probability under the new prediction fell below eta_t = eta * (1 - t/T) are re-masked (secondary
remasking) and revisited in a later round; then the most confident masked positions -- confidence
perturbed by Gumbel noise whose temperature anneals to zero -- are committed until a share
1 - cos(pi/2 * t/T) of the block is committed. After round T every position is committed.

:class:`DecodeOptions` turns each part off for ablations: no remasking (``eta=0``), a random commit order
instead of easy-first, a constant noise temperature instead of the annealed one. ``values="mean"`` reads
each token as the mean of its bins instead of the most likely one (both decoders).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

ORDERS = ("confidence", "random")
ACTION_VALUES = ("mode", "mean")


@dataclass(frozen=True)
class DecodeOptions:
    """How a diffusion block is refined (the defaults are the decoder as trained and published)."""

    eta: float = 0.5  # secondary remasking threshold at round 1 (0: never remask)
    temperature: float = 1.0  # Gumbel noise on the commit score (0: pure confidence order)
    anneal: bool = True  # the temperature falls to zero over the rounds (False: constant)
    order: str = "confidence"  # which open positions commit first: "confidence" (easy first) or "random"
    # what a token's value is, read as a number (an action): its most likely bin ("mode", as trained and
    # published) or the mean of its bins under the predicted distribution ("mean"). Where the model spreads
    # its belief over many bins (a small correction), the mode falls on the most common bin, zero motion,
    # and the mean keeps the direction and size the distribution says.
    values: str = "mode"

    def __post_init__(self):
        if not 0 <= self.eta <= 1:
            raise ValueError(f"the remasking threshold eta must be from 0 to 1, got {self.eta}")
        if not self.temperature >= 0:
            raise ValueError(f"the commit temperature must be 0 or more, got {self.temperature}")
        if self.order not in ORDERS:
            raise ValueError(f"the commit order must be one of {', '.join(ORDERS)}, got {self.order!r}")
        if self.values not in ACTION_VALUES:
            raise ValueError(f"action values must be one of {', '.join(ACTION_VALUES)}, got {self.values!r}")


def committed_target(length: int, t: int, steps: int) -> int:
    return length - int(math.floor(length * math.cos(math.pi / 2 * t / steps) + 1e-9))


def diffusion_step(
    probs: torch.Tensor,
    tokens: torch.Tensor,
    committed: torch.Tensor,
    t: int,
    steps: int,
    *,
    eta: float = 0.5,
    temperature: float = 1.0,
    anneal: bool = True,
    order: str = "confidence",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """probs (B, L, V) over the block's local vocabulary; tokens (B, L) local ids (ignored where not
    committed); committed (B, L) bool. Returns updated (tokens, committed) and round statistics."""
    B, L, _ = probs.shape
    conf, pred = probs.max(-1)
    # Secondary remasking of committed tokens the model no longer believes in.
    eta_t = eta * (1 - t / steps)
    current = probs.gather(-1, tokens.clamp(min=0)[..., None])[..., 0]
    remask = committed & (current < eta_t)
    committed = committed & ~remask
    # Easy first: rank the open positions by Gumbel-perturbed log confidence (or at random).
    temp = temperature * (1 - t / steps) if anneal else temperature
    if order == "random":
        score = torch.rand(conf.shape, device=conf.device, generator=generator)
        temp = 0.0
    else:
        score = conf.clamp_min(1e-12).log()
    if temp > 0:
        u = torch.rand(score.shape, device=score.device, generator=generator).clamp_(1e-9, 1 - 1e-9)
        score = score + temp * -torch.log(-torch.log(u))
    open_ = ~committed & ~remask
    score = score.masked_fill(~open_, float("-inf"))
    need = (committed_target(L, t, steps) - committed.sum(1)).clamp(min=0)  # (B,)
    order = score.argsort(1, descending=True)
    rank = order.argsort(1)
    pick = (rank < need[:, None]) & open_
    tokens = torch.where(pick, pred, tokens)
    committed = committed | pick
    return tokens, committed, {"remasked": int(remask.sum()), "committed": int(pick.sum())}
