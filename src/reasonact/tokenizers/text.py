"""Text tokenizer: a small byte-level BPE (Hugging Face ``tokenizers``) trained on the dataset's
instructions (and rationales), or plain bytes. Byte-level BPE encodes any text, new words included."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable


class TextTokenizer:
    def __init__(self, tokenizer=None):
        self._tok = tokenizer  # tokenizers.Tokenizer, or None for plain bytes

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 512) -> "TextTokenizer":
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=max(vocab_size, 260), initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
        )
        tok.train_from_iterator([t.lower() for t in texts], trainer)
        return cls(tok)

    @classmethod
    def bytes(cls) -> "TextTokenizer":
        return cls(None)

    @property
    def vocab_size(self) -> int:
        return 256 if self._tok is None else self._tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        text = text.lower().strip()
        if self._tok is None:
            return list(text.encode("utf-8"))
        return self._tok.encode(text).ids

    def decode(self, ids: Iterable[int]) -> str:
        ids = [int(i) for i in ids]
        if self._tok is None:
            return bytes(ids).decode("utf-8", errors="replace")
        return self._tok.decode(ids).strip()

    def save(self, path: str | Path) -> None:
        path = Path(path)
        if self._tok is None:
            path.write_text(json.dumps({"type": "bytes"}))
        else:
            path.write_text(self._tok.to_str())

    @classmethod
    def load(cls, path: str | Path) -> "TextTokenizer":
        text = Path(path).read_text()
        if json.loads(text).get("type") == "bytes":
            return cls(None)
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_str(text))
