"""Generate the reasoning blocks and the action chunk for a batch of observations.

The prefix is encoded once and cached. ``ar`` spends one forward pass per token; ``diffusion`` spends
``diffusion_steps`` passes per block: the first pass of each block also encodes the block committed before it,
so a block costs exactly ``diffusion_steps`` passes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..model.arm import ActionReasoningModel, noisy_span
from ..model.layers import KVCache
from ..model.layout import CLEAN, MARKER, Span, block_positions, prefix_span
from .schedule import diffusion_step


@dataclass
class GenerationResult:
    tokens: dict[str, torch.Tensor]  # block -> (B, L) global token ids
    nfe: int  # transformer forward passes
    stats: dict = field(default_factory=dict)
    # with values="mean": block -> (B, L) float ids, each token's mean under the distribution it was chosen from
    means: dict[str, torch.Tensor] = field(default_factory=dict)


class _Pending:
    """Tokens waiting to be encoded into the cache by the next forward pass."""

    def __init__(self, x: torch.Tensor, span: Span, valid: torch.Tensor):
        self.x, self.span, self.valid = x, span, valid

    def add(self, x: torch.Tensor, span: Span) -> None:
        self.x = torch.cat([self.x, x], 1)
        self.span = self.span.cat(span)
        self.valid = torch.cat([self.valid, torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)], 1)

    def __len__(self) -> int:
        return self.x.shape[1]


@torch.no_grad()
def generate(
    model: ActionReasoningModel,
    images: torch.Tensor,
    instr: torch.Tensor,
    state: torch.Tensor,
    *,
    diffusion_steps: int = 12,
    given: dict[str, torch.Tensor] | None = None,
    eta: float = 0.5,
    temperature: float = 1.0,
    anneal: bool = True,
    order: str = "confidence",
    values: str = "mode",
    generator: torch.Generator | None = None,
) -> GenerationResult:
    """Decode every block of the model's sequence (``given`` blocks, e.g. a steering trace, are used
    as they are; a given block's negative ids, e.g. a trace's depth left open, are decoded around the rest).
    The decoder is the one the model was trained for; ``eta``, ``temperature``, ``anneal`` and ``order`` are
    :class:`reasonact.decoding.schedule.DecodeOptions`' (diffusion only); ``values="mean"`` also returns each
    token's mean id under the distribution it was committed from (``GenerationResult.means``, either decoder)."""
    vocab, seq = model.vocab, model.cfg.sequence
    given = given or {}
    steps = diffusion_steps
    if not model.causal and steps < 1:
        raise ValueError(f"diffusion needs at least one refinement step, got {steps}")
    device = images.device
    B = images.shape[0]
    px, pvalid = model.prefix(images, instr, state)
    Lp = px.shape[1]
    cache = KVCache(len(model.layers))
    pending = _Pending(px, prefix_span(Lp, device), pvalid)
    places = block_positions(Lp, model.block_lengths())
    out: dict[str, torch.Tensor] = {}
    means: dict[str, torch.Tensor] = {}
    mean_of = (lambda p: p @ torch.arange(p.shape[-1], device=p.device, dtype=p.dtype)) if values == "mean" else None
    nfe = 0
    stats = {"remasked": 0}
    for b, block in enumerate(seq.blocks):
        (mpos, tpos), L = places[b], seq.block_length(block)
        pending.add(model.embed(torch.full((B, 1), vocab.marker(block), device=device)),
                    Span.make([MARKER], [b], [mpos], device))
        fixed = given[block].to(device) if block in given else None  # (B, L) ids; < 0: to be generated
        if fixed is not None and bool((fixed >= 0).all()):
            out[block] = fixed
            if mean_of:
                means[block] = fixed.float()
            pending.add(model.embed(fixed), Span.make([CLEAN] * L, [b] * L, list(range(tpos, tpos + L)), device))
            continue
        lo, hi = vocab.block_range(block)
        if model.causal:
            toks, avg = [], []
            for j in range(L):
                h = model.run(pending.x, pending.span, pending.valid, cache, append=len(pending))
                nfe += 1
                logits = model.logits(h[:, -1], lo, hi)
                tok = logits.argmax(-1) + lo  # (B,)
                if fixed is not None:
                    tok = torch.where(fixed[:, j] >= 0, fixed[:, j], tok)
                if mean_of:
                    mean = mean_of(logits.float().softmax(-1)) + lo
                    avg.append(mean if fixed is None else torch.where(fixed[:, j] >= 0, tok.float(), mean))
                toks.append(tok)
                pending = _Pending(model.embed(tok[:, None]), Span.make([CLEAN], [b], [tpos + j], device),
                                   torch.ones(B, 1, dtype=torch.bool, device=device))
            out[block] = torch.stack(toks, 1)
            if mean_of:
                means[block] = torch.stack(avg, 1)
            continue
        local = torch.zeros(B, L, dtype=torch.long, device=device)
        avg = torch.zeros(B, L, device=device)  # each committed token's mean local id, from its round
        committed = torch.zeros(B, L, dtype=torch.bool, device=device)
        if fixed is not None:  # a block given in part: the given tokens stay committed, the rest are refined
            known = fixed >= 0
            local, committed = torch.where(known, fixed - lo, local), known
        span = noisy_span(b, tpos, L, device)
        ones = torch.ones(B, L, dtype=torch.bool, device=device)
        for t in range(1, steps + 1):
            ids = torch.where(committed, local + lo, torch.full_like(local, vocab.mask))
            x = model.embed(ids)
            if t == 1:  # also encodes the pending tokens (prefix or the previous block) into the cache
                h = model.run(torch.cat([pending.x, x], 1), pending.span.cat(span),
                              torch.cat([pending.valid, ones], 1), cache, append=len(pending))[:, -L:]
            else:
                h = model.run(x, span, ones, cache)
            nfe += 1
            probs = model.logits(h, lo, hi).float().softmax(-1)
            before = committed
            local, committed, st = diffusion_step(probs, local, committed, t, steps, eta=eta,
                                                  temperature=temperature, anneal=anneal, order=order,
                                                  generator=generator)
            if mean_of:
                avg = torch.where(committed & ~before, mean_of(probs), avg)
            if fixed is not None:
                local, committed = torch.where(known, fixed - lo, local), committed | known
            stats["remasked"] += st["remasked"]
        toks = local + lo
        out[block] = toks
        if mean_of:
            means[block] = (avg if fixed is None else torch.where(known, local.float(), avg)) + lo
        pending = _Pending(model.embed(toks), Span.make([CLEAN] * L, [b] * L, list(range(tpos, tpos + L)), device), ones)
    return GenerationResult(out, nfe, stats, means)
