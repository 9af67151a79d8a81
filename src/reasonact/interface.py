"""The policy contract: what evaluation, the policy server and the steering console ask of a policy.

Numpy only (no torch), so that a client on a robot can implement or use it without the model:
:class:`reasonact.policy.Policy` (a trained run, in this process) and
:class:`reasonact.client.PolicyClient` (the same policy behind ``reasonact serve``) both satisfy it.

    info: PolicyInfo                          facts about the policy (resolution, blocks, tasks, ...)
    predict(obs, instruction=None, *, trace=None, diffusion_steps=None, seed=0) -> Prediction
    predict_batch(observations, instructions=None, *, traces=None, diffusion_steps=None, seed=0)
        -> list[Prediction]

An observation is a dict with ``rgb`` (H, W, 3) uint8 at ``info.resolution`` and ``state``
(``info.state_dim``,) float; ``instruction`` may ride in it too. A ``trace`` (M, 2) in pixels of that image
steers the policy (``info.blocks`` must hold ``trace``); when ``info.trace_depth``, a trace (M, 3) also gives
each point's depth along the camera's optical axis in metres (given (M, 2), the policy writes the depth).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

DEFAULT_DIFFUSION_STEPS = 12  # refinement rounds T per block when a caller does not say


@dataclass
class Prediction:
    actions: np.ndarray  # (H, D) float32, the environment's units
    trace: np.ndarray | None  # (N, 2) float32 pixels of the observed image, or None
    depth_tokens: np.ndarray | None  # (K,) int64 depth codes, or None
    rationale: str | None  # the written reasoning, or None
    nfe: int  # transformer forward passes spent on this chunk
    latency_ms: float  # wall time of the whole call (per observation when batched)
    trace_given: bool = False
    points: np.ndarray | None = None  # (K, 2) float32 pixels: the task's object and goal, as written
    trace_depth: np.ndarray | None = None  # (N,) float32 metres along the camera's axis, when the trace carries depth
    tokens: dict | None = field(default=None, repr=False)  # block -> (L,) token ids, as decoded


@dataclass(frozen=True)
class PolicyInfo:
    """What a caller needs to know to feed a policy and to read its predictions."""

    checkpoint: str
    resolution: int  # square image size the policy takes, in pixels
    decoder: str  # "ar" | "diffusion"
    reasoning: str  # act, trace, depth+trace, full, ...
    blocks: tuple[str, ...]  # blocks written per chunk, in order, ending with "act"
    horizon: int  # actions per chunk
    action_dim: int
    state_dim: int
    tasks: tuple[str, ...]  # the tasks it was trained on
    env: str = "metaworld"
    camera: str = "corner2"
    state_mode: str = "goal"
    steer_trained: bool = False  # trained with given traces (--steer-prob): steered calls hide the task state
    trace_points: int = 5
    trace_depth: bool = False  # each trace point carries its depth (a given trace may be (M, 3): pixels, metres)
    trace_span: float | None = None  # metres of the path ahead a trace covers (None: to the episode's end)
    fast_render: bool = False  # LIBERO: trained on frames collected with --fast-render (evaluated the same way)
    training_seeds: dict = field(default_factory=dict)  # task -> layouts used for training: never evaluate on them
    default_diffusion_steps: int = DEFAULT_DIFFUSION_STEPS
    default_execute: int | None = None  # actions a caller runs per chunk when it does not say (None: the whole chunk)

    @property
    def execute(self) -> int:
        """Actions run from each chunk before the policy is asked again, unless the caller says otherwise."""
        return self.default_execute or self.horizon

    @property
    def views(self) -> tuple[str, ...]:
        """Camera views per observation: ``obs["rgb"]`` is the first; ``obs["images"][view]`` holds the others."""
        return tuple(self.camera.split(","))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["blocks"], d["tasks"] = list(self.blocks), list(self.tasks)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PolicyInfo":
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        return cls(**{**d, "blocks": tuple(d.get("blocks", ())), "tasks": tuple(d.get("tasks", ()))})


@runtime_checkable
class PolicyLike(Protocol):
    info: PolicyInfo

    def predict(self, obs: dict, instruction: str | None = None, *, trace: np.ndarray | None = None,
                diffusion_steps: int | None = None, seed: int = 0) -> Prediction: ...

    def predict_batch(self, observations: Sequence[dict], instructions: Sequence[str] | None = None, *,
                      traces: Sequence[np.ndarray] | None = None, diffusion_steps: int | None = None,
                      seed: int = 0) -> list[Prediction]: ...
