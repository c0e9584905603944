"""The compressor interface shared by the built-in pruner, the sentence filter and the LLMLingua adapter."""

from __future__ import annotations

import asyncio
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from pydantic import ConfigDict, Field

from ctxkit._model import CtxkitModel
from ctxkit.compress.fidelity import FidelityReport, fidelity_report
from ctxkit.errors import InvalidInputError
from ctxkit.messages import Chunk

__all__ = ["BaseCompressor", "CompressionResult", "TextCompressor", "check_rate", "compress_chunks"]


class CompressionResult(CtxkitModel):
    """One compression: the text out and what it cost.

    ``original_tokens``/``compressed_tokens`` are counted with ``tokenizer`` (the
    compressor's own scorer tokenizer unless a ctxkit tokenizer was given);
    ``rate`` is the achieved ``compressed / original`` and ``requested_rate`` what was asked.
    """

    model_config = ConfigDict(frozen=True)

    text: str
    original: str = Field(repr=False)
    original_tokens: int
    compressed_tokens: int
    requested_rate: float
    method: str
    tokenizer: str = ""
    forced_tokens: int = 0
    seconds: float = 0.0
    recut: bool = Field(default=False, description="the method overshot the rate and its output was re-cut")
    uncut_tokens: int | None = Field(default=None, description="tokens of the method's output before the re-cut")

    @property
    def rate(self) -> float:
        """Achieved rate: compressed tokens / original tokens (1.0 for empty input)."""
        return self.compressed_tokens / self.original_tokens if self.original_tokens else 1.0

    @property
    def rate_error(self) -> float:
        """``|achieved - requested| / requested``."""
        return abs(self.rate - self.requested_rate) / self.requested_rate

    @property
    def within_rate(self) -> bool:
        """The rate contract: achieved rate at most the asked rate and within 0.02 of it."""
        return self.rate <= self.requested_rate + 1e-12 and self.requested_rate - self.rate <= 0.02 + 1e-12

    def fidelity(self, *, answers: list[str] | None = None, facts: list[str] | None = None) -> FidelityReport:
        """A :class:`~ctxkit.compress.fidelity.FidelityReport` of this compression."""

        return fidelity_report(
            self.original,
            self.text,
            tokens_before=self.original_tokens,
            tokens_after=self.compressed_tokens,
            requested_rate=self.requested_rate,
            answers=answers,
            facts=facts,
            method=self.method,
        )

    def __str__(self) -> str:
        return self.text


@runtime_checkable
class TextCompressor(Protocol):
    """Shrinks a text to about ``rate`` of its tokens, optionally guided by a question."""

    def compress(self, text: str, *, rate: float = 0.5, question: str | None = None) -> CompressionResult: ...


class BaseCompressor(ABC):
    """Base class: implement :meth:`compress`; the async face runs it in a worker thread."""

    method: str = "compressor"

    @abstractmethod
    def compress(self, text: str, *, rate: float = 0.5, question: str | None = None) -> CompressionResult:
        """Compress ``text`` to about ``rate`` of its tokens."""

    async def acompress(self, text: str, *, rate: float = 0.5, question: str | None = None) -> CompressionResult:
        """Async face of :meth:`compress` (the model work runs in a thread)."""
        return await asyncio.to_thread(self.compress, text, rate=rate, question=question)

    def compress_many(
        self, texts: list[str], *, rate: float = 0.5, question: str | None = None
    ) -> list[CompressionResult]:
        """Compress several texts (e.g. retrieved chunks) to the same rate."""
        return [self.compress(t, rate=rate, question=question) for t in texts]


def check_rate(rate: float) -> float:
    """Validate a target rate (the share of tokens to keep)."""
    if not isinstance(rate, int | float) or not math.isfinite(rate) or not 0.0 < rate <= 1.0:
        raise InvalidInputError(f"rate is the share of tokens to keep and must be in (0, 1], got {rate!r}")
    return float(rate)


def compress_chunks(
    compressor: BaseCompressor, chunks: Sequence[Chunk], *, question: str | None = None, rate: float = 0.5
) -> list[Chunk]:
    """Compress each chunk's text with ``compressor``; ids and scores are kept, and the rate reached and
    the original token count are recorded under the chunk's ``metadata["compression"]``."""
    out: list[Chunk] = []
    for c in chunks:
        r = compressor.compress(c.text, rate=rate, question=question)
        meta = {**c.metadata, "compression": {"rate": r.rate, "original_tokens": r.original_tokens}}
        out.append(c.model_copy(update={"text": r.text, "metadata": meta}))
    return out


CompressionResult.model_rebuild()
