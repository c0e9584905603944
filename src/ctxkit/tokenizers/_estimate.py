"""Token estimates for models whose tokenizer is not public (Anthropic Claude)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from ctxkit.errors import InvalidInputError
from ctxkit.tokenizers.base import BaseTokenizer, Tokenizer

__all__ = ["EstimatingTokenizer"]


class EstimatingTokenizer(BaseTokenizer):
    """Estimates a count from a reference tokenizer, scaled, with a stated error margin.

    ``count`` returns the conservative upper bound ``ceil(ratio * ref * (1 + margin))``
    so budgets computed from it hold when the true count is within the margin;
    :meth:`estimate` returns the central value and its bounds.
    ``encode``/``decode`` use the reference tokenizer (ids are *not* the model's ids).

    The Claude default (cl100k x 1.10, ±15%) follows Anthropic's statement that its
    newer tokenizer yields more tokens than older ones for the same text and public
    side-by-side measurements of English prose and code against cl100k; use the
    provider's count-tokens endpoint when an exact figure matters.
    """

    exact = False

    def __init__(self, reference: Tokenizer, *, name: str, ratio: float = 1.10, margin: float = 0.15) -> None:
        if ratio <= 0 or not 0 <= margin < 1:
            raise InvalidInputError("EstimatingTokenizer needs ratio > 0 and 0 <= margin < 1")
        super().__init__(name)
        self.reference = reference
        self.ratio = ratio
        self.error_margin = margin

    def estimate(self, text: str) -> tuple[int, int, int]:
        """``(low, central, high)`` token estimates for ``text``."""
        ref = self.reference.count(text)
        central = ref * self.ratio
        return (
            math.floor(central * (1 - self.error_margin)),
            round(central),
            math.ceil(central * (1 + self.error_margin)),
        )

    def encode(self, text: str) -> list[int]:
        return self.reference.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self.reference.decode(ids)

    def _count_uncached(self, text: str) -> int:
        return math.ceil(self.reference.count(text) * self.ratio * (1 + self.error_margin))

    def truncate(self, text: str, max_tokens: int) -> str:
        if max_tokens < 0:
            raise InvalidInputError("truncate(max_tokens=...) must be >= 0")
        if self.count(text) <= max_tokens:
            return text
        ref_limit = int(max_tokens / (self.ratio * (1 + self.error_margin)))
        while ref_limit >= 0:
            candidate = self.reference.truncate(text, ref_limit)
            if self.count(candidate) <= max_tokens:
                return candidate
            ref_limit -= 1
        return ""
