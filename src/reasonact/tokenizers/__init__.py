"""Tokenizers for every block of the sequence; each is saved inside the run directory."""

from .action import ActionTokenizer
from .text import TextTokenizer
from .trace import TraceTokenizer, resample_trace
from .vocab import BLOCKS, SPECIALS, Vocab

__all__ = ["ActionTokenizer", "TextTokenizer", "TraceTokenizer", "resample_trace", "Vocab", "BLOCKS", "SPECIALS"]
