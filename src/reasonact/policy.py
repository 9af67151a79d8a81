"""``reasonact.load_policy(RUN).predict(obs, instruction)``: a trained run as a callable policy.

:class:`Policy` implements the contract in :mod:`reasonact.interface`; its inputs come from
:class:`reasonact.transforms.ObservationTransform`, the same path training batches and attention maps use.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from . import checkpoint as ckpt
from .interface import PolicyInfo, Prediction
from .transforms import ModelInputs, ObservationTransform

__all__ = ["Policy", "Prediction", "load_policy"]


class Policy:
    def __init__(self, run: str | Path, device: str | torch.device | None = None):
        from .model.arm import ActionReasoningModel

        loaded = ckpt.load_run(run)
        self.run = loaded.root
        self.spec = loaded.spec
        self.tok = loaded.tokenizers
        self.info: PolicyInfo = self.spec.policy_info(self.run)
        self.config = self.spec.config
        from .machine import resolve_device

        self.device = resolve_device(device)
        self.transform = ObservationTransform(self.spec, self.tok)
        self.model = ActionReasoningModel(self.config, self.tok.vocab)
        ckpt.load_weights(self.model, loaded.weights)
        self.model.to(self.device).eval()
        self._depth_vae = None
        self.n_action_steps = self.info.execute  # actions select_action serves from each chunk
        self._queue: deque = deque()
        from .decoding import DecodeOptions

        self.decode_options = DecodeOptions()  # how diffusion blocks are refined (ablations change it)

    # -- LeRobot's policy face ----------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device | None = None) -> "Policy":
        """Load a run directory (or one written by :meth:`save_pretrained`)."""
        return cls(path, device)

    def save_pretrained(self, path: str | Path) -> Path:
        """Write what :meth:`from_pretrained` needs -- weights, config, stats, tokenizers -- to ``path``."""
        return ckpt.export_run(self.run, path, self.model)

    def select_action(self, obs: dict, instruction: str | None = None, *, trace: np.ndarray | None = None,
                      diffusion_steps: int | None = None) -> np.ndarray:
        """One action (D,) per call: a chunk is predicted when the last one's first ``n_action_steps`` actions
        have been served. Call :meth:`reset` at the start of every episode."""
        if not self._queue:
            pred = self.predict(obs, instruction, trace=trace, diffusion_steps=diffusion_steps)
            self._queue.extend(pred.actions[: self.n_action_steps])
        return self._queue.popleft()

    def reset(self) -> None:
        """Forget the queued actions (a new episode)."""
        self._queue.clear()

    # -- facts about the policy (see ``info`` for all of them) ----------------------------------------
    @property
    def resolution(self) -> int:
        return self.info.resolution

    @property
    def decoder(self) -> str:
        return self.info.decoder

    @property
    def blocks(self) -> tuple[str, ...]:
        return self.info.blocks

    @property
    def horizon(self) -> int:
        return self.info.horizon

    # -- prediction ---------------------------------------------------------------------------------
    def inputs(self, observations: Sequence[dict], instructions: Sequence[str] | None = None,
               traces: Sequence[np.ndarray] | None = None) -> ModelInputs:
        """The model's inputs for these observations, exactly as :meth:`predict_batch` builds them."""
        return self.transform(observations, instructions, traces, self.device)

    def predict(self, obs: dict, instruction: str | None = None, *, trace: np.ndarray | None = None,
                decoder: str | None = None, diffusion_steps: int | None = None, seed: int = 0) -> Prediction:
        """One observation -> one action chunk (plus the reasoning the model writes)."""
        return self.predict_batch([obs], None if instruction is None else [instruction],
                                  traces=None if trace is None else [trace], decoder=decoder,
                                  diffusion_steps=diffusion_steps, seed=seed)[0]

    def predict_batch(self, observations: Sequence[dict], instructions: Sequence[str] | None = None, *,
                      traces: Sequence[np.ndarray] | None = None, decoder: str | None = None,
                      diffusion_steps: int | None = None, seed: int = 0) -> list[Prediction]:
        from .decoding import generate

        t0 = time.perf_counter()
        if decoder is not None and decoder != self.decoder:
            raise ValueError(f"this policy was trained for {self.decoder} decoding; {decoder!r} is not available "
                             f"(train with --decoder {decoder})")
        T = self.info.default_diffusion_steps if diffusion_steps is None else int(diffusion_steps)
        if self.decoder == "diffusion" and T < 1:
            raise ValueError(f"diffusion_steps must be >= 1, got {T}")
        B = len(observations)
        if B == 0:
            return []
        x = self.inputs(observations, instructions, traces)
        dev = self.device
        gen = torch.Generator(device=dev).manual_seed(seed)
        with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            res = generate(self.model, x.images, x.instr, x.state, diffusion_steps=T, given=x.given, generator=gen,
                           **asdict(self.decode_options))
        toks = {k: v.cpu().numpy() for k, v in res.tokens.items()}
        v, s = self.tok.vocab, self.config.sequence
        act = res.means["act"].cpu().numpy() if "act" in res.means else toks["act"]  # values="mean": float ids
        actions = self.tok.action.decode((act - v.offset("action")).reshape(B, s.horizon, s.action_dim))
        trace = self.tok.trace.decode(toks["trace"] - v.offset("coord")) if "trace" in toks else None  # (B, N, dims)
        points_px = self.tok.trace.decode_points(toks["points"] - v.offset("coord")) if "points" in toks else None
        depth = toks["depth"] - v.offset("depth") if "depth" in toks else None
        rationale = [self._rationale_text(r) for r in toks["think"]] if "think" in toks else None
        latency = (time.perf_counter() - t0) * 1000
        return [
            Prediction(
                actions=actions[i],
                trace=None if trace is None else trace[i, :, :2],
                trace_depth=None if trace is None or trace.shape[-1] < 3 else trace[i, :, 2],
                depth_tokens=None if depth is None else depth[i],
                rationale=None if rationale is None else rationale[i],
                nfe=res.nfe,
                latency_ms=latency / B,
                trace_given=traces is not None,
                points=None if points_px is None else points_px[i],
                tokens={k: t[i] for k, t in toks.items()},
            )
            for i in range(B)
        ]

    def attention(self, obs: dict, instruction: str | None = None, *, prediction: Prediction | None = None,
                  trace: np.ndarray | None = None, top_layers: int | None = None):
        """Attention from the action tokens to the image patches; see :func:`reasonact.viz.attention.action_attention`."""
        from .viz.attention import action_attention

        pred = prediction or self.predict(obs, instruction, trace=trace)
        inputs = self.inputs([obs], None if instruction is None else [instruction], None if trace is None else [trace])
        return action_attention(self.model, inputs, pred, top_layers=top_layers)

    def depth_image(self, depth_tokens: np.ndarray) -> np.ndarray:
        """Depth codes (K,) -> the decoded depth image (S, S) in metres."""
        if self._depth_vae is None:
            self._depth_vae = ckpt.load_depth_tokenizer(self.run, self.device)
        return self._depth_vae.decode(torch.as_tensor(np.asarray(depth_tokens)[None]))[0].cpu().numpy()

    def _rationale_text(self, ids: np.ndarray) -> str:
        v = self.tok.vocab
        out = []
        for i in ids:
            if i == v.eot:
                break
            if i >= v.offset("text"):
                out.append(int(i) - v.offset("text"))
        return self.tok.text.decode(out)


def load_policy(run: str | Path, device: str | torch.device | None = None) -> Policy:
    """Load a run directory written by ``reasonact train``."""
    return Policy(run, device)
