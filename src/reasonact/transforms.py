"""Observation -> model inputs: the one path shared by training batches, the policy, attention maps and
the server.

    images        (B, H, W, 3) uint8 -> (B, V, 3, S, S) float in [0, 1] at the model's resolution, per view:
                  obs["rgb"] is the first view, obs["images"][name] any view
    instructions  list of str        -> (B, L) token ids, right-padded with <pad>
    state         (B, D) float       -> (B, D) normalised; for steered samples everything after the
                                        proprioception is hidden (where to go comes from the trace)
    trace         (M, 2) pixels      -> (N * 2,) coordinate tokens, resampled to the policy's N points;
                  (M, 3) with depth     (N * 3,) for a policy whose trace carries depth (given (M, 2), the
                                        depth tokens are left for the policy to write)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint import RunSpec, StateNorm, Tokenizers
from .envs.base import PROPRIO_DIMS
from .envs.camera import depth_of
from .steering import cut_to_span
from .tokenizers import TextTokenizer, Vocab


def resize_images(imgs: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 3, H, W) uint8 -> (B, 3, size, size) uint8."""
    if imgs.shape[-1] == size and imgs.shape[-2] == size:
        return imgs
    x = F.interpolate(imgs.float(), size=(size, size), mode="area" if imgs.shape[-1] > size else "bilinear")
    return x.round().clamp(0, 255).to(torch.uint8)


def encode_instructions(texts: list[str], text_tok: TextTokenizer, vocab: Vocab, length: int) -> torch.Tensor:
    """list of str -> (N, length) ids (text range), right-padded with <pad>, truncated to length."""
    out = torch.full((len(texts), length), vocab.pad, dtype=torch.long)
    off = vocab.offset("text")
    for i, t in enumerate(texts):
        ids = text_tok.encode(t)[:length]
        out[i, : len(ids)] = torch.tensor(ids, dtype=torch.long) + off
    return out


def encode_rationale(text: str, text_tok: TextTokenizer, vocab: Vocab, length: int) -> torch.Tensor:
    """Rationale text -> (length,) ids: text, <eot>, then <pad> (truncated to leave room for <eot>)."""
    ids = [i + vocab.offset("text") for i in text_tok.encode(text)][: length - 1] + [vocab.eot]
    out = torch.full((length,), vocab.pad, dtype=torch.long)
    out[: len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


def hide_task_state(state: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
    """Zero (the normalised mean) everything after the proprioception in the given rows (all if None):
    steered samples and steered predictions learn and take where to go from the trace."""
    keep = torch.arange(state.shape[-1], device=state.device) < PROPRIO_DIMS
    if rows is not None:
        keep = keep | ~rows[:, None]
    return state * keep


@dataclass
class ModelInputs:
    images: torch.Tensor  # (B, V, 3, S, S) float in [0, 1]
    instr: torch.Tensor  # (B, Li) token ids
    state: torch.Tensor  # (B, D) normalised (task state hidden when steered by a steer-trained policy)
    given: dict[str, torch.Tensor]  # block -> (B, L) ids given rather than generated (a steering trace); < 0: generated


class ObservationTransform:
    """Checks observations against what a run was trained on and turns them into :class:`ModelInputs`."""

    def __init__(self, spec: RunSpec, tok: Tokenizers):
        self.resolution = spec.data.resolution
        self.views = spec.data.views
        self.image_size = spec.model.image_size
        self.state_dim = spec.sequence.state_dim
        self.instruction_tokens = spec.sequence.instruction_tokens
        self.blocks = spec.sequence.blocks
        self.reasoning = spec.sequence.reasoning
        self.steer_trained = spec.steer_trained
        self.norm: StateNorm = spec.state_norm
        self.tok = tok

    def rgb(self, obs: dict) -> np.ndarray:
        """Every view's image of one observation, (V, r, r, 3) uint8."""
        images = obs.get("images") or {}
        out = []
        for k, view in enumerate(self.views):
            img = obs.get("rgb") if k == 0 and "rgb" in obs else images.get(view)  # rgb is the first view
            if img is None:
                need = "obs['rgb']" if k == 0 else f"obs['images'][{view!r}]"
                raise ValueError(f"observation has no {view!r} image ({need}); this policy reads the views "
                                 f"{', '.join(self.views)}")
            img = np.asarray(img)
            r = self.resolution
            if img.shape != (r, r, 3) or img.dtype != np.uint8:
                raise ValueError(f"expected the {view!r} image as ({r}, {r}, 3) uint8 (the resolution this policy "
                                 f"was trained on), got {img.shape} {img.dtype}")
            out.append(img)
        return np.stack(out)

    def state(self, obs: dict) -> np.ndarray:
        d = self.state_dim
        if "state" not in obs:
            raise ValueError(f"observation has no 'state' (expected {d} numbers)")
        state = np.asarray(obs["state"], np.float32).reshape(-1)
        if state.shape != (d,):
            raise ValueError(f"expected a state of {d} numbers, got shape {np.asarray(obs['state']).shape}")
        return state

    def trace_tokens(self, trace: np.ndarray, obs: dict | None = None) -> np.ndarray:
        """A given trace (M, 2) pixels, or (M, 3) pixels and depth in metres, resampled to the policy's N points
        -> its coordinate bins (a depth column is ignored by a policy whose trace has no depth); depth not
        given -> UNKNOWN (negative), which the policy writes itself. A policy trained on traces of a span
        (``info.trace_span``) first cuts the given one to it, measured with the observation's camera; an
        observation without the camera matrices (a served request) is taken to carry a trace already cut."""
        tr, obs = self.tok.trace, obs or {}
        trace = np.asarray(trace, np.float32)
        if trace.ndim != 2 or trace.shape[1] not in (2, 3) or len(trace) == 0:
            raise ValueError(f"a trace must be (M, 2) pixels or (M, 3) pixels and depth in metres, got shape {trace.shape}")
        trace = trace[:, : tr.dims]
        flat = trace.shape[1] == 2
        if tr.span is not None and all(k in obs for k in ("camera_intrinsics", "camera_extrinsics", "ee_pos")):
            depth = float(depth_of(obs["ee_pos"], obs["camera_extrinsics"])) if flat else None
            return tr.encode(cut_to_span(trace, tr.span, tr.points, obs["camera_intrinsics"], depth))
        return tr.encode(tr.resample(trace))

    def __call__(self, observations: Sequence[dict], instructions: Sequence[str] | None = None,
                 traces: Sequence[np.ndarray] | None = None, device: torch.device | str = "cpu") -> ModelInputs:
        rgb = np.stack([self.rgb(o) for o in observations])
        state = np.stack([self.state(o) for o in observations])
        if instructions is None:
            instructions = [o.get("instruction") for o in observations]
        if len(instructions) != len(observations) or any(not isinstance(t, str) or not t.strip() for t in instructions):
            raise ValueError("an instruction is required: pass instruction=... or give obs['instruction']")
        B, V = rgb.shape[:2]
        images = resize_images(torch.from_numpy(rgb).flatten(0, 1).permute(0, 3, 1, 2), self.image_size)
        images = images.unflatten(0, (B, V)).to(device).float() / 255.0
        instr = encode_instructions(list(instructions), self.tok.text, self.tok.vocab, self.instruction_tokens).to(device)
        st = torch.from_numpy(self.norm(state)).to(device)
        given = {}
        if traces is not None:
            if "trace" not in self.blocks:
                raise ValueError(f"this policy was trained without a trace (reasoning {self.reasoning!r}); "
                                 "steering needs --reasoning trace or depth+trace")
            toks = np.stack([self.trace_tokens(t, o) for t, o in zip(traces, observations)])
            given["trace"] = torch.from_numpy(np.where(toks >= 0, toks + self.tok.vocab.offset("coord"), toks)).to(device)
            if self.steer_trained:  # as in its steered samples: where to go comes from the trace
                st = hide_task_state(st)
        return ModelInputs(images, instr, st, given)
