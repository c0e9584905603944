"""Data residency: content marked sensitive only ever goes to local backends.

A request is sensitive when it says so (``sensitive=True``), carries one of the
policy's tags (default ``"sensitive"``), or — when detectors are given — a detector
fires on its text. The dispatcher filters candidate backends through the policy
*before* anything is sent; if no local backend remains it raises
:class:`~ctxkit.dispatch.errors.ResidencyError` and sends nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from ctxkit.dispatch.backends.base import Backend, Request

__all__ = ["ResidencyPolicy", "pii_detectors"]

Detector = Callable[[str], bool]


def pii_detectors() -> list[Detector]:
    """Conservative detectors: e-mail addresses, US SSNs, card numbers (Luhn-checked), API-key shapes."""
    email = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
    ssn = re.compile(r"\b\d{3}-\d{2}-\d{4}\b")
    card = re.compile(r"\b(?:\d[ -]?){13,19}\b")
    key = re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_-]{16,}\b|\bAKIA[0-9A-Z]{16}\b")

    def luhn(text: str) -> bool:
        for m in card.finditer(text):
            digits = [int(c) for c in m.group() if c.isdigit()]
            total = 0
            for i, d in enumerate(reversed(digits)):
                if i % 2:
                    d = d * 2 - 9 if d * 2 > 9 else d * 2
                total += d
            if total % 10 == 0:
                return True
        return False

    return [
        lambda t: bool(email.search(t)),
        lambda t: bool(ssn.search(t)),
        luhn,
        lambda t: bool(key.search(t)),
    ]


class ResidencyPolicy:
    """Decides whether a request is sensitive and which backends may receive it."""

    def __init__(self, *, tags: Sequence[str] = ("sensitive",), detectors: Sequence[Detector] = ()) -> None:
        self.tags = frozenset(tags)
        self.detectors = list(detectors)

    def __repr__(self) -> str:
        return f"ResidencyPolicy(tags={sorted(self.tags)}, detectors={len(self.detectors)})"

    def is_sensitive(self, request: Request) -> bool:
        if request.sensitive or (self.tags & request.tags):
            return True
        if self.detectors:
            for m in request.messages:
                if any(d(m.content) for d in self.detectors):
                    return True
        return False

    def allowed(self, request: Request, backend: Backend) -> bool:
        """May ``backend`` receive ``request``? Remote backends never get sensitive content."""
        return backend.local or not self.is_sensitive(request)
