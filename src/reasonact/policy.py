"""``reasonact.load_policy(RUN).predict(obs, instruction)``: a trained run as a callable policy."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .io import read_json
from .model.config import Config


@dataclass
class Prediction:
    actions: np.ndarray  # (H, D) float32, the environment's units
    trace: np.ndarray | None  # (N, 2) float32 pixels of the observed image, or None
    depth_tokens: np.ndarray | None  # (K,) int64 depth codes, or None
    rationale: str | None  # the written reasoning, or None
    nfe: int  # transformer forward passes spent on this chunk
    latency_ms: float  # wall time of the whole call (per observation when batched)
    trace_given: bool = False
    tokens: dict | None = field(default=None, repr=False)  # block -> (L,) token ids, as decoded


def load_weights(model: torch.nn.Module, path: str | Path) -> None:
    from safetensors.torch import load_file

    missing, unexpected = model.load_state_dict(load_file(str(path)), strict=False)
    # head.weight is tied to the embedding; weights saved before coordinate features existed load with
    # those features off (their projection is set to zero).
    if unexpected or set(missing) - {"head.weight", "coord_emb.proj.weight"}:
        raise ValueError(f"weights at {path} do not fit the model (missing {missing}, unexpected {unexpected})")
    if "coord_emb.proj.weight" in missing and model.coord_emb is not None:
        torch.nn.init.zeros_(model.coord_emb.proj.weight)


class Policy:
    def __init__(self, run: str | Path, device: str | torch.device | None = None):
        from .model.arm import ActionReasoningModel
        from .training import load_tokenizers

        run = Path(run)
        if not (run / "config.json").exists() or not (run / "model.safetensors").exists():
            raise FileNotFoundError(
                f"no trained policy at {run} (config.json or model.safetensors missing); "
                "train one with `reasonact train --data DIR --out RUN`"
            )
        self.run = run
        self.meta: dict[str, Any] = read_json(run / "config.json")
        self.config = Config.from_dict(self.meta)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.tok = load_tokenizers(run)
        self.model = ActionReasoningModel(self.config, self.tok.vocab)
        load_weights(self.model, run / "model.safetensors")
        self.model.to(self.device).eval()
        norm = self.meta["state_norm"]
        self.state_mean = np.asarray(norm["mean"], np.float32)
        self.state_std = np.asarray(norm["std"], np.float32)
        self._depth_vae = None

    # -- facts about the policy ---------------------------------------------------------------------
    @property
    def resolution(self) -> int:
        return int(self.meta["data"]["resolution"])

    @property
    def steer_trained(self) -> bool:
        """Trained with steered samples (``--steer-prob``), whose state keeps only proprioception."""
        return float(self.meta["train"].get("steer_prob", 0.0)) > 0

    @property
    def tasks(self) -> list[str]:
        return list(self.meta["data"]["tasks"])

    @property
    def decoder(self) -> str:
        return self.config.sequence.decoder

    @property
    def blocks(self) -> tuple[str, ...]:
        return self.config.sequence.blocks

    @property
    def horizon(self) -> int:
        return self.config.sequence.horizon

    @property
    def default_steps(self) -> int:
        return 12

    # -- prediction ---------------------------------------------------------------------------------
    def predict(self, obs: dict, instruction: str | None = None, *, trace: np.ndarray | None = None,
                decoder: str | None = None, steps: int | None = None, seed: int = 0) -> Prediction:
        """One observation -> one action chunk (plus the reasoning the model writes)."""
        return self.predict_batch([obs], None if instruction is None else [instruction],
                                  traces=None if trace is None else [trace], decoder=decoder, steps=steps, seed=seed)[0]

    def predict_batch(self, observations: Sequence[dict], instructions: Sequence[str] | None = None, *,
                      traces: Sequence[np.ndarray] | None = None, decoder: str | None = None,
                      steps: int | None = None, seed: int = 0) -> list[Prediction]:
        from .data.pipeline import encode_instructions, hide_task_state, resize_images
        from .decoding import generate
        from .tokenizers import resample_trace

        t0 = time.perf_counter()
        if decoder is not None and decoder != self.decoder:
            raise ValueError(f"this policy was trained for {self.decoder} decoding; {decoder!r} is not available "
                             f"(train with --decoder {decoder})")
        steps = self.default_steps if steps is None else int(steps)
        if self.decoder == "diffusion" and steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        B = len(observations)
        if B == 0:
            return []
        rgb = np.stack([self._check_rgb(o) for o in observations])
        state = np.stack([self._check_state(o) for o in observations])
        if instructions is None:
            instructions = [o.get("instruction") for o in observations]
        if any(not isinstance(t, str) or not t.strip() for t in instructions):
            raise ValueError("an instruction is required: pass instruction=... or give obs['instruction']")
        dev = self.device
        images = torch.from_numpy(rgb).permute(0, 3, 1, 2)
        images = resize_images(images, self.config.model.image_size).to(dev).float() / 255.0
        instr = encode_instructions(list(instructions), self.tok.text, self.tok.vocab,
                                    self.config.sequence.instruction_tokens).to(dev)
        st = torch.from_numpy((state - self.state_mean) / self.state_std).float().to(dev)
        given = {}
        if traces is not None:
            if "trace" not in self.blocks:
                raise ValueError(f"this policy was trained without a trace (reasoning "
                                 f"{self.config.sequence.mode!r}); steering needs --reasoning trace or depth+trace")
            pts = [resample_trace(np.asarray(t, np.float32), self.tok.trace.points) for t in traces]
            toks = self.tok.trace.encode(np.stack(pts)) + self.tok.vocab.offset("coord")
            given["trace"] = torch.from_numpy(toks).to(dev)
            if self.steer_trained:  # as in its steered samples: where to go comes from the trace
                st = hide_task_state(st)
        gen = torch.Generator(device=dev).manual_seed(seed)
        with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            res = generate(self.model, images, instr, st, steps=steps, given=given, generator=gen)
        toks = {k: v.cpu().numpy() for k, v in res.tokens.items()}
        v = self.tok.vocab
        s = self.config.sequence
        actions = self.tok.action.decode((toks["act"] - v.offset("action")).reshape(B, s.horizon, s.action_dim))
        trace_px = self.tok.trace.decode(toks["trace"] - v.offset("coord")) if "trace" in toks else None
        depth = toks["depth"] - v.offset("depth") if "depth" in toks else None
        rationale = [self._rationale_text(r) for r in toks["think"]] if "think" in toks else None
        latency = (time.perf_counter() - t0) * 1000
        return [
            Prediction(
                actions=actions[i],
                trace=None if trace_px is None else trace_px[i],
                depth_tokens=None if depth is None else depth[i],
                rationale=None if rationale is None else rationale[i],
                nfe=res.nfe,
                latency_ms=latency / B,
                trace_given=traces is not None,
                tokens={k: v[i] for k, v in toks.items()},
            )
            for i in range(B)
        ]

    def attention(self, obs: dict, instruction: str | None = None, *, prediction: Prediction | None = None,
                  trace: np.ndarray | None = None, top_layers: int | None = None):
        """Attention from the action tokens to the image patches; see :func:`reasonact.viz.attention.action_attention`."""
        from .viz.attention import action_attention

        return action_attention(self, obs, instruction, prediction=prediction, trace=trace, top_layers=top_layers)

    def depth_image(self, depth_tokens: np.ndarray) -> np.ndarray:
        """Depth codes (K,) -> the decoded depth image (S, S) in metres."""
        from .tokenizers.depth_vae import DepthVAE

        if self._depth_vae is None:
            self._depth_vae = DepthVAE.load(self.run / "tokenizers" / "depth", self.device)
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

    def _check_rgb(self, obs: dict) -> np.ndarray:
        if "rgb" not in obs:
            raise ValueError("observation has no 'rgb' image")
        rgb = np.asarray(obs["rgb"])
        r = self.resolution
        if rgb.shape != (r, r, 3) or rgb.dtype != np.uint8:
            raise ValueError(f"expected an rgb image of shape ({r}, {r}, 3) uint8 (the resolution this policy was "
                             f"trained on), got {rgb.shape} {rgb.dtype}")
        return rgb

    def _check_state(self, obs: dict) -> np.ndarray:
        d = self.config.sequence.state_dim
        if "state" not in obs:
            raise ValueError(f"observation has no 'state' (expected {d} numbers)")
        state = np.asarray(obs["state"], np.float32).reshape(-1)
        if state.shape != (d,):
            raise ValueError(f"expected a state of {d} numbers, got shape {np.asarray(obs['state']).shape}")
        return state


def load_policy(run: str | Path, device: str | torch.device | None = None) -> Policy:
    """Load a run directory written by ``reasonact train``."""
    return Policy(run, device)
