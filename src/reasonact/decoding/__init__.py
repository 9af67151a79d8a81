"""Decoders for every generated block: ``ar`` (left to right, KV cache) and ``diffusion`` (masked
discrete diffusion: parallel refinement, easy-first commits, secondary remasking)."""

from .generate import GenerationResult, generate
from .schedule import DecodeOptions, diffusion_step

__all__ = ["generate", "GenerationResult", "diffusion_step", "DecodeOptions"]
