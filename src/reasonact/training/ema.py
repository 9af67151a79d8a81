"""An exponential moving average of the weights: the policy a run publishes when ``--ema`` is set."""

from __future__ import annotations

import contextlib

import torch


class WeightAverage:
    """``avg <- avg + (1 - decay_t) * (w - avg)`` after every step, with ``decay_t = min(decay, (1 + t) / (10 + t))``
    so that the early average does not hold on to the random initial weights."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.average = [p.detach().clone().float() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self.average, [p.detach().float() for p in self.params], 1 - d)

    @contextlib.contextmanager
    @torch.no_grad()
    def applied(self):
        """Within the block the model holds the averaged weights; its own come back after."""
        own = [p.detach().clone() for p in self.params]
        for p, a in zip(self.params, self.average):
            p.copy_(a)
        try:
            yield
        finally:
            for p, o in zip(self.params, own):
                p.copy_(o)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "average": self.average}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state["updates"])
        for a, saved in zip(self.average, state["average"]):
            a.copy_(saved)
