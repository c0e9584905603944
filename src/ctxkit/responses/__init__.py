"""Response cache in front of the dispatcher: exact keys, guarded semantic hits, provenance, TTL, tags, limits.

* :class:`ResponseCache` — lookup / store (and async faces), invalidation by tag, stats;
* :class:`ExactKey` — canonical request keys (secrets never enter them);
* :class:`SemanticGuard` — vetoes paraphrase hits that differ in numbers, dates, units, negation,
  polarity or named entities;
* backends with one interface: :class:`MemoryBackend`, :class:`SQLiteBackend`, :class:`RedisBackend`.

See ``docs/howto/response-cache.md``.
"""

from ctxkit.responses.backends import CacheBackend, MemoryBackend, RedisBackend, SQLiteBackend
from ctxkit.responses.cache import CacheStats, ResponseCache
from ctxkit.responses.entry import CacheEntry, CacheHit, Provenance
from ctxkit.responses.guard import QueryFeatures, SemanticGuard
from ctxkit.responses.keys import ExactKey, canonical_request, exact_key

__all__ = [
    "CacheBackend",
    "CacheEntry",
    "CacheHit",
    "CacheStats",
    "ExactKey",
    "MemoryBackend",
    "Provenance",
    "QueryFeatures",
    "RedisBackend",
    "ResponseCache",
    "SQLiteBackend",
    "SemanticGuard",
    "canonical_request",
    "exact_key",
]
