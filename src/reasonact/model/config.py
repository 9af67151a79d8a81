"""Typed configs with named presets: the model (``debug`` .. ``base``) and the token sequence."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..settings import from_preset
from ..tokenizers.vocab import BLOCKS

MODES = {
    "act": (),
    "trace": ("trace",),
    "depth": ("depth",),
    "depth+trace": ("depth", "trace"),
    "points": ("points",),
    "points+trace": ("points", "trace"),
    "think": ("think",),
    "full": ("think", "depth", "trace"),
}


def parse_mode(mode: str) -> tuple[str, ...]:
    """Reasoning mode -> the blocks written before the actions, in sequence order.

    ``act``, ``trace``, ``depth+trace``, ``points+trace``, ``full`` (rationale, depth, trace), or any
    ``+``-joined combination of ``think``, ``depth``, ``points`` (where the task's objects are in the first
    view) and ``trace``.
    """
    if mode in MODES:
        return MODES[mode]
    parts = set(mode.split("+"))
    if not parts or not parts <= {"think", "depth", "points", "trace"}:
        raise ValueError(f"unknown reasoning mode {mode!r}; choose from {', '.join(MODES)} or a '+'-joined "
                         "combination of think, depth, points, trace")
    return tuple(b for b in BLOCKS if b in parts)


@dataclass(frozen=True)
class ModelConfig:
    name: str = "tiny"
    image_size: int = 64  # the model's input resolution (frames are resized to it)
    patch_size: int = 8  # image tokens: (image_size / patch_size)^2
    vision: str = "conv"  # "conv": a strided-conv stem; "patch": a single linear patch embedding (ViT)
    d_model: int = 192
    n_layers: int = 4
    n_heads: int = 4
    mlp_hidden: int = 512  # SwiGLU hidden width
    dropout: float = 0.0
    rope_base: float = 10000.0
    coord_features: bool = True  # coordinate bins also embed Fourier features of their value (see arm.py)
    views: int = 1  # camera views per observation: one shared encoder, a learnt embedding per view
    points: int = 0  # >0: a head points at this many task objects in the first view (an auxiliary loss)

    def __post_init__(self):
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if self.vision not in ("conv", "patch"):
            raise ValueError(f"vision must be 'conv' or 'patch', got {self.vision!r}")
        if not isinstance(self.views, int) or self.views < 1:
            raise ValueError(f"views must be a positive integer, got {self.views!r}")
        if not isinstance(self.points, int) or self.points < 0:
            raise ValueError(f"points must be a non-negative integer, got {self.points!r}")

    @property
    def n_patches(self) -> int:
        """Image tokens per view."""
        return (self.image_size // self.patch_size) ** 2

    @property
    def n_image_tokens(self) -> int:
        return self.n_patches * self.views


MODEL_PRESETS: dict[str, ModelConfig] = {
    # Seconds on a CPU: tests and smoke runs.
    "debug": ModelConfig(name="debug", image_size=32, patch_size=8, d_model=64, n_layers=2, n_heads=2, mlp_hidden=128),
    # Minutes on a CPU: the quickstart (1.1 M parameters; half tiny's cost per sample).
    "nano": ModelConfig(name="nano", image_size=64, patch_size=16, d_model=128, n_layers=4, n_heads=4, mlp_hidden=352),
    # Tens of minutes on a CPU: the shipped MT10 and LIBERO policies.
    "tiny": ModelConfig(name="tiny", image_size=64, patch_size=16, d_model=192, n_layers=4, n_heads=4, mlp_hidden=512),
    # One GPU.
    "small": ModelConfig(name="small", image_size=128, patch_size=16, d_model=384, n_layers=8, n_heads=6, mlp_hidden=1024),
    "base": ModelConfig(name="base", image_size=128, patch_size=8, d_model=768, n_layers=12, n_heads=12, mlp_hidden=2048),
}


def model_config(name: str, **overrides) -> ModelConfig:
    return from_preset(MODEL_PRESETS, name, "model", **overrides)


@dataclass(frozen=True)
class SequenceConfig:
    """What one sample's token sequence holds."""

    reasoning: str = "act"  # the blocks written before the actions (see parse_mode)
    horizon: int = 8  # action chunk length H
    action_dim: int = 4
    state_dim: int = 7
    trace_points: int = 5
    trace_depth: bool = False  # each trace point also carries its depth: 3 tokens a point
    object_points: int = 2  # points block: the task's object and goal in the first view
    depth_tokens: int = 16
    think_tokens: int = 56  # rationale block length (text, <eot>, then padding)
    instruction_tokens: int = 16
    decoder: str = "diffusion"  # "ar" | "diffusion": the training objective and the decoder

    def __post_init__(self):
        parse_mode(self.reasoning)
        if self.decoder not in ("ar", "diffusion"):
            raise ValueError(f"decoder must be 'ar' or 'diffusion', got {self.decoder!r}")

    @property
    def blocks(self) -> tuple[str, ...]:
        return (*parse_mode(self.reasoning), "act")

    def block_length(self, block: str) -> int:
        trace = (3 if self.trace_depth else 2) * self.trace_points
        return {"think": self.think_tokens, "depth": self.depth_tokens, "trace": trace,
                "points": 2 * self.object_points, "act": self.horizon * self.action_dim}[block]


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    sequence: SequenceConfig = field(default_factory=SequenceConfig)

    def to_dict(self) -> dict:
        return {"model": asdict(self.model), "sequence": asdict(self.sequence)}

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        seq = dict(d["sequence"])
        if "mode" in seq:  # run directories written before the field was named ``reasoning``
            seq["reasoning"] = seq.pop("mode")
        return cls(ModelConfig(**d["model"]), SequenceConfig(**seq))
