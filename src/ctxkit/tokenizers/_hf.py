"""Tokenizers from a Hugging Face ``tokenizer.json`` (the ``tokenizers`` library)."""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

from ctxkit._optional import require
from ctxkit.errors import ResourceError
from ctxkit.tokenizers.base import BaseTokenizer

__all__ = ["HFTokenizer"]


class HFTokenizer(BaseTokenizer):
    """An exact tokenizer loaded from a ``tokenizer.json`` file (no download).

    Pass a ``tokenizers.Tokenizer`` you built yourself, or use :meth:`from_file`,
    which turns off any padding or truncation saved in the file.
    """

    def __init__(self, tokenizer: Any, *, name: str = "hf", cache_size: int = 200_000) -> None:
        super().__init__(name, cache_size=cache_size)
        self.tokenizer = tokenizer

    @classmethod
    def from_file(cls, path: str | PathLike[str], *, name: str | None = None) -> HFTokenizer:
        tokenizers = require("tokenizers", feature="HF tokenizer.json loading", extra="hf")
        p = Path(path)
        if p.is_dir():
            p = p / "tokenizer.json"
        if not p.is_file():
            raise ResourceError(f"no tokenizer.json at {str(p)!r}; pass the file or its folder.")
        tokenizer = tokenizers.Tokenizer.from_file(str(p))
        # A tokenizer.json saved for training may pad or truncate; counting must do neither.
        tokenizer.no_padding()
        tokenizer.no_truncation()
        return cls(tokenizer, name=name or f"hf:{p.parent.name}")

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=False))

    def _count_batch_uncached(self, texts: Sequence[str]) -> list[int]:
        encs = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [len(e.ids) for e in encs]
