"""The Action Reasoning Model: one transformer over [image | instruction | state] and the generated
blocks (rationale, depth, trace, actions), with one output head over the shared vocabulary."""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..tokenizers.vocab import Vocab
from .config import Config
from .layers import Block, KVCache, RMSNorm, rope_cos_sin
from .layout import NOISY, Span, allowed, prefix_span, training_span
from .vision import VisionEncoder


class ActionReasoningModel(nn.Module):
    def __init__(self, cfg: Config, vocab: Vocab):
        super().__init__()
        self.cfg, self.vocab = cfg, vocab
        m, s = cfg.model, cfg.sequence
        d = m.d_model
        self.vision = VisionEncoder(m)
        self.tok_emb = nn.Embedding(vocab.size, d)
        self.coord_emb = CoordinateFeatures(vocab.offset("coord"), vocab.coord, d) if m.coord_features else None
        self.state_proj = nn.Sequential(nn.Linear(s.state_dim, d), nn.SiLU(), nn.Linear(d, d))
        self.layers = nn.ModuleList(Block(d, m.n_heads, m.mlp_hidden, m.dropout) for _ in range(m.n_layers))
        self.norm = RMSNorm(d)
        self.head = nn.Linear(d, vocab.size, bias=False)
        self.head.weight = self.tok_emb.weight  # tied
        # Pointing: where the task's objects are in the first view, read from the state token's hidden state.
        self.points_head = nn.Linear(d, 2 * m.points) if m.points else None
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith(("attn.proj.weight", "mlp.down.weight")):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * m.n_layers))
        if self.coord_emb is not None:
            nn.init.zeros_(self.coord_emb.proj.weight)

    @staticmethod
    def _init(mod: nn.Module) -> None:
        if isinstance(mod, nn.Linear):
            nn.init.normal_(mod.weight, std=0.02)
            if mod.bias is not None:
                nn.init.zeros_(mod.bias)
        elif isinstance(mod, nn.Embedding):
            nn.init.normal_(mod.weight, std=0.02)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids (B, L) -> input embeddings (B, L, d): the token's own embedding, plus for coordinate
        bins a learnt projection of Fourier features of the bin's value, so that a trace's geometry (where
        the gripper is, which way the path goes) need not be learnt bin by bin."""
        x = self.tok_emb(ids)
        return x if self.coord_emb is None else x + self.coord_emb(ids)

    @property
    def n_prefix(self) -> int:
        return self.cfg.model.n_image_tokens + self.cfg.sequence.instruction_tokens + 1

    @property
    def causal(self) -> bool:
        return self.cfg.sequence.decoder == "ar"

    def block_lengths(self) -> list[int]:
        s = self.cfg.sequence
        return [s.block_length(b) for b in s.blocks]

    # -- encoding ---------------------------------------------------------------------------------
    def prefix(self, images: torch.Tensor, instr: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, V, 3, S, S) (or (B, 3, S, S) for one view) in [0, 1], instr (B, Li) ids, state (B, S)
        normalised -> embeddings (B, Lp, d) and key validity (B, Lp) (instruction padding is invalid)."""
        B = images.shape[0]
        img = self.vision(images)
        txt = self.embed(instr)
        st = self.state_proj(state.to(img.dtype))[:, None]
        valid = torch.cat([torch.ones(B, img.shape[1], dtype=torch.bool, device=images.device),
                           instr != self.vocab.pad,
                           torch.ones(B, 1, dtype=torch.bool, device=images.device)], 1)
        return torch.cat([img, txt, st], 1), valid

    def run(self, x: torch.Tensor, span: Span, key_valid: torch.Tensor, cache: KVCache | None = None,
            append: int = 0) -> torch.Tensor:
        """Run the transformer on new tokens x (B, L, d); attend to the cache too. The first ``append``
        new tokens are added to the cache. Returns normalised hidden states (B, L, d)."""
        m = self.cfg.model
        cos, sin = rope_cos_sin(span.pos, m.d_model // m.n_heads, m.rope_base)
        if cache is not None and len(cache):
            k_span, k_valid = cache.span.cat(span), torch.cat([cache.key_valid, key_valid], 1)
        else:
            k_span, k_valid = span, key_valid
        mask = allowed(span, k_span, self.causal)[None, None] & k_valid[:, None, None, :]  # (B, 1, Lq, Lk)
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, mask, cache, i, append)
        if cache is not None and append:
            head = Span(span.role[:append], span.block[:append], span.pos[:append])
            cache.span = head if cache.span is None else cache.span.cat(head)
            new_valid = key_valid[:, :append]
            cache.key_valid = new_valid if cache.key_valid is None else torch.cat([cache.key_valid, new_valid], 1)
        return self.norm(x)

    def logits(self, hidden: torch.Tensor, lo: int = 0, hi: int | None = None) -> torch.Tensor:
        """Logits restricted to the vocabulary range [lo, hi)."""
        w = self.head.weight[lo:hi]
        return hidden @ w.T

    @contextlib.contextmanager
    def capture_attention(self):
        """``with model.capture_attention() as maps:`` -- maps[layer] holds that layer's (B, h, Lq, Lk) weights."""
        maps: list[list] = [[] for _ in self.layers]
        for layer, store in zip(self.layers, maps):
            layer.attn.capture = store
        try:
            yield maps
        finally:
            for layer in self.layers:
                layer.attn.capture = None

    # -- training ---------------------------------------------------------------------------------
    def training_inputs(self, targets: dict[str, torch.Tensor], steered: torch.Tensor | None,
                        generator: torch.Generator | None = None, unreasoned: torch.Tensor | None = None):
        """Build the generated part of the sequence for a batch.

        targets: block -> (B, L_block) token ids. ``steered``: (B,) bool, samples whose trace was given, or
        (B, L_trace) bool, which of its tokens were (the rest are learnt as for any sample).
        ``unreasoned`` (B,) bool: samples whose later blocks see an
        empty rationale (rationale dropout; the diffusion decoder still learns to write theirs, the causal one
        learns nothing from a rationale it did not see). Returns (input ids (B, Lg), span, list of
        (block, logit positions (Lb,), target ids (B, Lb), loss mask (B, Lb))).
        """
        s, v = self.cfg.sequence, self.vocab
        diffusion = not self.causal
        lengths = self.block_lengths()
        device = next(iter(targets.values())).device
        B = next(iter(targets.values())).shape[0]
        span, slices, markers = training_span(self.n_prefix, lengths, diffusion, device)
        ids = torch.full((B, len(span)), v.pad, dtype=torch.long, device=device)
        losses = []
        for b, block in enumerate(s.blocks):
            tgt = targets[block]
            ids[:, markers[b]] = v.marker(block)
            valid = torch.ones_like(tgt, dtype=torch.bool)
            if block == "think" and not diffusion:  # nothing to learn after <eot>
                after_eot = (tgt == v.eot).long().cumsum(1) - (tgt == v.eot).long()
                valid = after_eot == 0
            if block == "trace" and steered is not None:  # the trace was given: no loss on it
                valid = valid & ~(steered if steered.dim() == 2 else steered[:, None])
            shown = tgt  # what the later blocks see of this one
            if block == "think" and unreasoned is not None:
                empty = torch.full_like(tgt, v.pad)
                empty[:, 0] = v.eot
                shown = torch.where(unreasoned[:, None], empty, tgt)
                if not diffusion:
                    valid = valid & ~unreasoned[:, None]
            if not diffusion:
                ids[:, slices[b]] = shown
                pos = torch.arange(markers[b], markers[b] + tgt.shape[1], device=device)
                losses.append((block, pos, tgt, valid))
                continue
            if b < len(s.blocks) - 1:  # the clean context copy
                ids[:, markers[b] + 1: markers[b] + 1 + tgt.shape[1]] = shown
            # Noisy copy: mask a cosine-scheduled share of positions (at least one) in each sample.
            u = torch.rand(B, 1, device=device, generator=generator)
            ratio = torch.cos(math.pi / 2 * u)
            L = tgt.shape[1]
            n_mask = (ratio * L).round().clamp(min=1)
            scores = torch.rand(B, L, device=device, generator=generator)
            rank = scores.argsort(1).argsort(1)
            masked = (rank < n_mask) & valid
            ids[:, slices[b]] = torch.where(masked, torch.full_like(tgt, v.mask), tgt)
            pos = torch.arange(slices[b].start, slices[b].stop, device=device)
            losses.append((block, pos, tgt, masked))
        return ids, span, losses

    def forward(self, images, instr, state, targets: dict[str, torch.Tensor], steered=None, generator=None,
                lambda_reason: float = 1.0, action_label_sigma: float = 0.0, points: torch.Tensor | None = None,
                points_weight: float = 0.0, unreasoned: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        """Training loss: cross-entropy per block (masked positions for diffusion, next token for ar);
        loss = L_act + lambda_reason * mean(L_reasoning blocks) [+ points_weight * L_points, the pointing
        head's error against ``points`` (B, K, 2), image coordinates as shares of the width and height].
        ``unreasoned``: rationale dropout, see :meth:`training_inputs`."""
        ids, span, plan = self.training_inputs(targets, steered, generator, unreasoned)
        px, pvalid = self.prefix(images, instr, state)
        x = torch.cat([px, self.embed(ids)], 1)
        full = prefix_span(px.shape[1], ids.device).cat(span)
        valid = torch.cat([pvalid, torch.ones_like(ids, dtype=torch.bool)], 1)
        hidden = self.run(x, full, valid)
        h = hidden[:, px.shape[1]:]
        metrics: dict[str, float] = {}
        reason_losses, act_loss = [], None
        for block, pos, tgt, mask in plan:
            lo, hi = self.vocab.block_range(block)
            logits = self.logits(h[:, pos], lo, hi).float()  # (B, Lb, V_block)
            local = (tgt - lo).clamp(0, hi - lo - 1)
            if block == "act" and action_label_sigma > 0:
                ce = _soft_bin_ce(logits, local, action_label_sigma)
            else:
                ce = F.cross_entropy(logits.transpose(1, 2), local, reduction="none")
            n = mask.sum().clamp(min=1)
            loss = (ce * mask).sum() / n
            acc = ((logits.argmax(-1) == local) & mask).sum() / n
            metrics[f"loss_{block}"] = float(loss.detach())
            metrics[f"acc_{block}"] = float(acc)
            if block == "act":
                act_loss = loss
            else:
                reason_losses.append(loss)
        total = act_loss if act_loss is not None else torch.zeros((), device=h.device)
        if reason_losses:
            total = total + lambda_reason * torch.stack(reason_losses).mean()
        if points is not None and points_weight > 0:
            loss_points = self.pointing_loss(hidden[:, px.shape[1] - 1], points)
            metrics["loss_points"] = float(loss_points.detach())
            total = total + points_weight * loss_points
        metrics["loss"] = float(total.detach())
        return total, metrics

    def point(self, state_hidden: torch.Tensor) -> torch.Tensor:
        """The state token's hidden state (B, d) -> (B, K, 2) object points, shares of the image size."""
        if self.points_head is None:
            raise ValueError("this model was trained without pointing (--points-weight 0)")
        return self.points_head(state_hidden).float().unflatten(-1, (-1, 2)) + 0.5

    def pointing_loss(self, state_hidden: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Smooth-L1 distance of the pointed to the true points, in units of the image size (x 10)."""
        return F.smooth_l1_loss(self.point(state_hidden) * 10, points.float() * 10, beta=0.1)


class CoordinateFeatures(nn.Module):
    """Fourier features of a coordinate bin's value in [0, 1], projected to the model width; zero for
    every other token. The projection starts at zero, so it adds nothing until training uses it."""

    def __init__(self, first: int, bins: int, d: int, n_freq: int = 8):
        super().__init__()
        self.first, self.bins = first, bins
        self.register_buffer("freq", math.pi * 2.0 ** torch.arange(n_freq, dtype=torch.float32), persistent=False)
        self.proj = nn.Linear(2 * n_freq, d, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        k = ids - self.first
        inside = ((k >= 0) & (k < self.bins)).unsqueeze(-1)
        u = (k.clamp(0, self.bins - 1).float() + 0.5) / self.bins
        ang = u.unsqueeze(-1) * self.freq
        f = torch.cat([ang.sin(), ang.cos()], -1).to(self.proj.weight.dtype)
        return self.proj(f) * inside


def _soft_bin_ce(logits: torch.Tensor, target: torch.Tensor, sigma: float) -> torch.Tensor:
    """Cross-entropy against a Gaussian over neighbouring bins (ordinal smoothing), (B, L)."""
    bins = torch.arange(logits.shape[-1], device=logits.device, dtype=torch.float32)
    w = torch.exp(-0.5 * ((bins[None, None] - target[..., None].float()) / sigma) ** 2)
    w = w / w.sum(-1, keepdim=True)
    return -(w * F.log_softmax(logits, -1)).sum(-1)


def noisy_span(block: int, first_pos: int, length: int, device=None) -> Span:
    return Span.make([NOISY] * length, [block] * length, list(range(first_pos, first_pos + length)), device)
