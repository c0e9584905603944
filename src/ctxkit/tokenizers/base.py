"""The tokenizer interface and the base class every tokenizer derives from."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ctxkit.errors import InvalidInputError

__all__ = ["BaseTokenizer", "TokenCountCache", "Tokenizer"]


@runtime_checkable
class Tokenizer(Protocol):
    """What ctxkit needs from a tokenizer.

    ``exact`` is False for estimators (models with no public tokenizer); their
    ``count`` returns the *upper* end of the stated ``error_margin`` so a budget
    computed from it is never exceeded by the real count.
    """

    @property
    def name(self) -> str: ...

    @property
    def exact(self) -> bool: ...

    @property
    def error_margin(self) -> float: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def count(self, text: str) -> int: ...

    def count_many(self, texts: Sequence[str]) -> list[int]: ...

    def truncate(self, text: str, max_tokens: int) -> str: ...


class TokenCountCache:
    """A bounded map from text to its token count (oldest entries evicted first).

    Keys are the strings themselves: Python caches a string's hash, so a repeat
    lookup of the same chunk object costs one dict probe and no tokenization.
    Safe to share between threads: a lookup is one dict probe (atomic), and inserts
    with their evictions are serialized by a lock, so two threads never evict the
    same entry (the ``hits``/``misses`` counters are statistics and may miss a beat).
    """

    __slots__ = ("_data", "_lock", "generation", "hits", "max_entries", "misses")

    def __init__(self, max_entries: int = 200_000) -> None:
        if max_entries < 1:
            raise InvalidInputError("TokenCountCache.max_entries must be at least 1")
        self.max_entries = max_entries
        self._data: dict[str, int] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        #: bumped by :meth:`clear`, so results memoized over these counts know they are cold again
        self.generation = 0

    def get(self, text: str) -> int | None:
        value = self._data.get(text)
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def put(self, text: str, value: int) -> None:
        with self._lock:
            data = self._data
            if text not in data:
                while len(data) >= self.max_entries:
                    del data[next(iter(data))]
            data[text] = value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.hits = self.misses = 0
            self.generation += 1

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return (
            f"TokenCountCache(entries={len(self._data)}, max_entries={self.max_entries}, "
            f"hits={self.hits}, misses={self.misses})"
        )


class BaseTokenizer(ABC):
    """Derives ``count``, ``count_many`` (cached) and ``truncate`` from ``encode``/``decode``.

    Subclasses implement :meth:`encode` and :meth:`decode`; they may override
    :meth:`_count_uncached` and :meth:`_count_batch_uncached` when the backend
    has a faster way to count than building a token list.
    """

    exact: bool = True
    error_margin: float = 0.0

    def __init__(self, name: str, *, cache_size: int = 200_000) -> None:
        self._name = name
        self.cache = TokenCountCache(cache_size)

    @property
    def name(self) -> str:
        return self._name

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, treating special-token text as ordinary text."""

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``."""

    def _count_uncached(self, text: str) -> int:
        return len(self.encode(text))

    def _count_batch_uncached(self, texts: Sequence[str]) -> list[int]:
        return [self._count_uncached(t) for t in texts]

    def count(self, text: str) -> int:
        """Number of tokens in ``text`` (cached by content)."""
        cache = self.cache
        cached = cache._data.get(text)
        if cached is not None:
            cache.hits += 1
            return cached
        cache.misses += 1
        value = self._count_uncached(text)
        cache.put(text, value)
        return value

    def count_many(self, texts: Sequence[str]) -> list[int]:
        """Token counts of many texts; uncached ones are counted in one batch."""
        if isinstance(texts, str | bytes):
            raise InvalidInputError("count_many() takes a list of texts, not one text; use count(text) for one")
        data = self.cache._data
        out: list[int | None] = [data.get(t) for t in texts]
        missing = [i for i, v in enumerate(out) if v is None]
        self.cache.hits += len(texts) - len(missing)
        self.cache.misses += len(missing)
        if missing:
            counted = self._count_batch_uncached([texts[i] for i in missing])
            for i, value in zip(missing, counted, strict=True):
                out[i] = value
                self.cache.put(texts[i], value)
        return [v if v is not None else 0 for v in out]

    def truncate(self, text: str, max_tokens: int) -> str:
        """The longest prefix of ``text`` (cut at a token boundary) with at most ``max_tokens`` tokens."""
        if max_tokens < 0:
            raise InvalidInputError("truncate(max_tokens=...) must be >= 0")
        if self.count(text) <= max_tokens:
            return text
        if max_tokens == 0:
            return ""
        ids = self.encode(text)
        limit = max_tokens
        while limit > 0:
            candidate = self.decode(ids[:limit]).rstrip("\ufffd")
            if not text.startswith(candidate):
                # Normalizing tokenizers may not round-trip; fall back to a character cut.
                candidate = text[: len(candidate)]
            if self.count(candidate) <= max_tokens:
                return candidate
            limit -= 1
        return ""

    def __repr__(self) -> str:
        kind = "exact" if self.exact else f"estimate ±{self.error_margin:.0%}"
        return f"{type(self).__name__}(name={self.name!r}, {kind})"
