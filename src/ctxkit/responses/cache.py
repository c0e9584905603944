"""The response cache: exact hits on the canonical request, guarded semantic hits on paraphrases.

.. code-block:: python

    cache = ResponseCache(MemoryBackend(max_entries=10_000), ttl_s=86_400)
    dispatcher = Dispatcher({"api": backend}, response_cache=cache)
    dispatcher.run("What is the capital of France?")           # calls the model, stores the answer
    dispatcher.run("Can you tell me the capital of France?")   # semantic hit: cost 0, saved_cost = first call's
    dispatcher.run("What is not the capital of France?")       # negation: the guard vetoes, the model answers

A lookup tries the exact key first (:class:`~ctxkit.responses.keys.ExactKey`), then, when
``semantic`` is on and the request ends with a plain user message, the entries of the same
partition (identical system prompt, tools, tool results, history and sampling): the question is
embedded, cosine similarities to all of them are computed at once (NumPy), and the best candidate
at or above ``threshold`` that no :class:`~ctxkit.responses.guard.SemanticGuard` check vetoes is
the hit. Every method is thread-safe; the ``a*`` methods run the same work in a worker thread.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal
from uuid import uuid4

import numpy as np

from ctxkit.dispatch.backends.base import PromptLike, as_request
from ctxkit.dispatch.decision import RouteDecision
from ctxkit.dispatch.result import Result
from ctxkit.errors import InvalidInputError
from ctxkit.responses.backends import CacheBackend, MemoryBackend
from ctxkit.responses.entry import CacheEntry, CacheHit, Provenance
from ctxkit.responses.guard import QueryFeatures, SemanticGuard
from ctxkit.responses.keys import ExactKey
from ctxkit.retrieval.embeddings import SentenceTransformerEmbedder
from ctxkit.usage import Usage

__all__ = ["CacheStats", "ResponseCache"]

_UNCACHEABLE = frozenset({"error", "content_filter"})


class CacheStats:
    """Counters of one cache object (this process): lookups, hits by kind, vetoes by guard, stores, skips."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.lookups = 0
        self.exact_hits = 0
        self.semantic_hits = 0
        self.stores = 0
        self.skipped = 0
        self.vetoes: dict[str, int] = {}
        self.saved_cost = Decimal(0)

    def _add(self, **counts: int) -> None:
        with self._lock:
            for k, v in counts.items():
                setattr(self, k, getattr(self, k) + v)

    @property
    def hit_rate(self) -> float | None:
        return None if self.lookups == 0 else (self.exact_hits + self.semantic_hits) / self.lookups

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "lookups": self.lookups,
                "exact_hits": self.exact_hits,
                "semantic_hits": self.semantic_hits,
                "stores": self.stores,
                "skipped": self.skipped,
                "vetoes": dict(self.vetoes),
                "saved_cost": self.saved_cost,
            }

    def __repr__(self) -> str:
        return f"CacheStats({self.as_dict()})"


class ResponseCache:
    """Exact and guarded semantic response cache over a :class:`CacheBackend` (default in-memory).

    ``threshold`` is the cosine similarity a semantic candidate needs (0.84 by default: chosen with the
    guards on HotpotQA dev paraphrases and hard negatives, see ``docs/howto/response-cache.md``; it is
    for all-MiniLM-L6-v2 — choose again for another embedder); ``semantic=False`` keeps exact
    hits only. ``embedder`` defaults to ctxkit's all-MiniLM-L6-v2, loaded on first semantic use.
    ``ttl_s`` is the default lifetime of an entry (``None``: until evicted or invalidated);
    ``tags`` given to :meth:`store` (and the request's own ``tags``) can be invalidated with
    :meth:`invalidate`. ``namespace`` separates caches that share one backend.
    """

    def __init__(
        self,
        backend: CacheBackend | None = None,
        *,
        semantic: bool = True,
        threshold: float = 0.84,
        embedder: Any = None,
        guard: SemanticGuard | None = None,
        ttl_s: float | None = None,
        namespace: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        backend = MemoryBackend() if backend is None else backend
        if not isinstance(backend, CacheBackend):
            raise InvalidInputError(
                f"backend must be a cache backend (MemoryBackend, SQLiteBackend, RedisBackend), "
                f"not {type(backend).__name__}"
            )
        if not isinstance(threshold, int | float) or not -1.0 <= float(threshold) <= 1.0:
            raise InvalidInputError(f"threshold is a cosine similarity in [-1, 1], got {threshold!r}")
        if ttl_s is not None and (not isinstance(ttl_s, int | float) or ttl_s <= 0):
            raise InvalidInputError(f"ttl_s must be a positive number of seconds or None, got {ttl_s!r}")
        if guard is not None and not isinstance(guard, SemanticGuard):
            raise InvalidInputError(f"guard must be a SemanticGuard, not {type(guard).__name__}")
        if not isinstance(namespace, str):
            raise InvalidInputError(f"namespace must be a str, not {type(namespace).__name__}")
        self.backend = backend
        self.semantic = bool(semantic)
        self.threshold = float(threshold)
        self.guard = guard or SemanticGuard()
        self.ttl_s = ttl_s
        self.namespace = namespace
        self.clock = clock
        self.stats = CacheStats()
        self._embedder = embedder
        self._embedder_lock = threading.Lock()
        self._features: dict[str, QueryFeatures] = {}

    def __repr__(self) -> str:
        mode = f"semantic>={self.threshold}" if self.semantic else "exact"
        return f"ResponseCache({self.backend!r}, {mode}, ttl_s={self.ttl_s})"

    # ------------------------------------------------------------------ parts
    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            with self._embedder_lock:
                if self._embedder is None:
                    self._embedder = SentenceTransformerEmbedder()
        return self._embedder

    def key(self, prompt: PromptLike, **options: Any) -> ExactKey:
        """The keys of a request (no secret ever enters them)."""
        return ExactKey.of(as_request(prompt, **options), namespace=self.namespace)

    def _feat(self, text: str) -> QueryFeatures:
        f = self._features.get(text)
        if f is None:
            f = self.guard.features(text)
            if len(self._features) > 100_000:
                self._features.clear()
            self._features[text] = f
        return f

    def _vector(self, text: str) -> np.ndarray[Any, np.dtype[np.float32]]:
        vec = np.asarray(self.embedder.embed_query(text), dtype=np.float32)
        return vec

    # ------------------------------------------------------------------ lookup
    def lookup(self, prompt: PromptLike, **options: Any) -> CacheHit | None:
        """The cached answer for a request, or None. Exact first, then guarded semantic."""
        started = time.perf_counter()
        request = as_request(prompt, **options)
        key = ExactKey.of(request, namespace=self.namespace)
        now = self.clock()
        self.stats._add(lookups=1)
        entry = self.backend.get(key.exact, now)
        if entry is not None:
            return self._hit("exact", 1.0, entry, started)
        if not self.semantic or key.query is None:
            return None
        candidates = [e for e in self.backend.partition(key.partition, now) if e.vector is not None and e.query]
        candidates = [e for e in candidates if e.embedder == self._embedder_name()]
        if not candidates:
            return None
        q = self._vector(key.query)
        matrix = np.frombuffer(b"".join(e.vector or b"" for e in candidates), dtype=np.float32).reshape(
            len(candidates), -1
        )
        sims = matrix @ q
        above = np.flatnonzero(sims >= self.threshold)
        if above.size == 0:
            return None
        qf = self._feat(key.query)
        feats = [self._feat(candidates[int(i)].query or "") for i in above]
        allowed = self.guard.allowed(qf, feats)
        if not allowed.any():
            for f in feats:
                reason = qf.mismatch(f) or "entities"
                with self.stats._lock:
                    self.stats.vetoes[reason] = self.stats.vetoes.get(reason, 0) + 1
            return None
        ok = above[allowed]
        best = int(ok[np.argmax(sims[ok])])
        chosen = candidates[best]
        got = self.backend.get(chosen.key, now)  # marks it used for the LRU; None if it just went away
        if got is None:
            return None
        return self._hit("semantic", float(sims[best]), got, started)

    def _embedder_name(self) -> str:
        return str(getattr(self.embedder, "name", type(self.embedder).__name__))

    def _hit(self, kind: str, similarity: float, entry: CacheEntry, started: float) -> CacheHit:
        saved = entry.provenance.cost
        with self.stats._lock:
            if kind == "exact":
                self.stats.exact_hits += 1
            else:
                self.stats.semantic_hits += 1
            if saved is not None:
                self.stats.saved_cost += saved
        reason = "response cache: exact hit"
        if kind != "exact":
            reason = f"response cache: semantic hit (cosine {similarity:.3f})"
        decision = RouteDecision(route="response_cache", reason=reason, router="response_cache", score=similarity)
        result = entry.result.model_copy(
            update={
                "usage": Usage(),
                "cost": Decimal(0),
                "saved_cost": saved,
                "cached": kind,
                "cache_source": entry.provenance.request_id,
                "latency_s": time.perf_counter() - started,
                "ttft_s": None,
                "attempts": 1,
                "decision": decision,
                "raw": None,
            }
        )
        label: Literal["exact", "semantic"] = "exact" if kind == "exact" else "semantic"
        return CacheHit(kind=label, similarity=similarity, entry=entry, result=result)

    # ------------------------------------------------------------------ store
    def store(
        self,
        prompt: PromptLike,
        result: Result,
        *,
        tags: Iterable[str] = (),
        ttl_s: float | None = None,
        request_id: str | None = None,
        **options: Any,
    ) -> CacheEntry | None:
        """Cache ``result`` as the answer to the request; returns the entry, or None when not cacheable.

        Not cached: results that are themselves cache hits, and failed or filtered answers
        (``finish_reason`` ``"error"`` / ``"content_filter"``). ``tags`` add to the request's tags for
        :meth:`invalidate`; ``ttl_s`` overrides the cache's default.
        """
        if not isinstance(result, Result):
            raise InvalidInputError(f"store() takes a ctxkit Result, not {type(result).__name__}")
        if isinstance(tags, str):
            tags = (tags,)
        if ttl_s is not None and (not isinstance(ttl_s, int | float) or ttl_s <= 0):
            raise InvalidInputError(f"ttl_s must be a positive number of seconds, got {ttl_s!r}")
        if result.cached is not None or result.finish_reason in _UNCACHEABLE:
            self.stats._add(skipped=1)
            return None
        request = as_request(prompt, **options)
        key = ExactKey.of(request, namespace=self.namespace)
        now = self.clock()
        life = ttl_s if ttl_s is not None else self.ttl_s
        vector: bytes | None = None
        embedder = ""
        if self.semantic and key.query is not None:
            vector = self._vector(key.query).tobytes()
            embedder = self._embedder_name()
        entry = CacheEntry(
            key=key.exact,
            partition=key.partition,
            query=key.query,
            vector=vector,
            embedder=embedder,
            result=result.model_copy(update={"raw": None}),
            provenance=Provenance(
                request_id=request_id or str(uuid4()),
                created_at=datetime.fromtimestamp(now, UTC),
                model=result.model,
                backend=result.backend,
                cost=result.cost,
                usage=result.usage,
                latency_s=result.latency_s,
            ),
            tags=frozenset(str(t) for t in (*request.tags, *tags)),
            expires_at=None if life is None else now + float(life),
        )
        self.backend.put(entry, now)
        self.stats._add(stores=1)
        return entry

    def invalidate(self, tag: str) -> int:
        """Delete every entry tagged ``tag``; returns how many were deleted."""
        if not isinstance(tag, str) or not tag:
            raise InvalidInputError(f"invalidate() takes a non-empty tag string, got {tag!r}")
        return self.backend.invalidate_tag(tag)

    def delete(self, prompt: PromptLike, **options: Any) -> bool:
        """Delete the exact entry of a request."""
        return self.backend.delete(self.key(prompt, **options).exact)

    def clear(self) -> None:
        self.backend.clear()

    def __len__(self) -> int:
        return len(self.backend)

    def close(self) -> None:
        self.backend.close()

    # ------------------------------------------------------------------ async
    async def alookup(self, prompt: PromptLike, **options: Any) -> CacheHit | None:
        """:meth:`lookup` in a worker thread (embedding and storage I/O stay off the event loop)."""
        return await asyncio.to_thread(self.lookup, prompt, **options)

    async def astore(self, prompt: PromptLike, result: Result, **kwargs: Any) -> CacheEntry | None:
        """:meth:`store` in a worker thread."""
        return await asyncio.to_thread(self.store, prompt, result, **kwargs)

    async def ainvalidate(self, tag: str) -> int:
        return await asyncio.to_thread(self.invalidate, tag)
