"""What the response cache stores: :class:`CacheEntry` with its :class:`Provenance`."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import ConfigDict, Field

from ctxkit._model import CtxkitModel
from ctxkit.dispatch.result import Result
from ctxkit.usage import Usage

__all__ = ["CacheEntry", "CacheHit", "Provenance"]


class Provenance(CtxkitModel):
    """Which request filled an entry, when, on which model and at what cost (``None``: price unknown)."""

    model_config = ConfigDict(frozen=True)

    request_id: str
    created_at: datetime
    model: str = ""
    backend: str = ""
    cost: Decimal | None = None
    usage: Usage = Field(default_factory=Usage)
    latency_s: float = 0.0


class CacheEntry(CtxkitModel):
    """One cached answer: its keys, the question text and vector (for semantic hits), the result and provenance.

    ``expires_at`` is a POSIX time (``None``: never). ``tags`` are the invalidation tags.
    ``vector`` holds float32 bytes of the question's unit embedding (``None`` when the entry is exact-only).
    """

    model_config = ConfigDict(frozen=True, ser_json_bytes="base64", val_json_bytes="base64")

    key: str
    partition: str
    query: str | None = Field(default=None, repr=False)
    vector: bytes | None = Field(default=None, repr=False)
    embedder: str = ""
    result: Result = Field(repr=False)
    provenance: Provenance
    tags: frozenset[str] = frozenset()
    expires_at: float | None = None

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, data: bytes | str) -> CacheEntry:
        return cls.model_validate_json(data)


class CacheHit(CtxkitModel):
    """A lookup that found an answer: ``kind`` exact or semantic, the ``similarity`` (1.0 for exact), the entry,
    and ``result``: the cached answer marked as cached (zero cost, ``saved_cost`` = what the filling call cost)."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["exact", "semantic"]
    similarity: float
    entry: CacheEntry = Field(repr=False)
    result: Result

    def __repr_args__(self) -> Any:
        yield "kind", self.kind
        yield "similarity", round(self.similarity, 4)
        yield "request_id", self.entry.provenance.request_id
