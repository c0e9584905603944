"""Where cached answers live: :class:`MemoryBackend`, :class:`SQLiteBackend`, :class:`RedisBackend`.

All three have the same interface (:class:`CacheBackend`) and behaviour, and are thread-safe:

* ``get(key, now)`` — the live entry (expired ones are dropped), marked as recently used;
* ``put(entry, now)`` — insert or replace, then evict least-recently-used entries until the
  size limits hold (``max_entries``, ``max_bytes`` of serialized entries); an entry larger than
  ``max_bytes`` on its own is refused with :class:`~ctxkit.errors.InvalidInputError`;
* ``partition(partition, now)`` — the live entries that share a semantic partition;
* ``invalidate_tag(tag)`` — delete every entry carrying ``tag``; returns how many;
* ``delete(key)``, ``clear()``, ``__len__``, ``nbytes()``, ``close()``.

Time is passed in (``now``, POSIX seconds) so TTLs follow the cache's clock.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ctxkit._optional import require
from ctxkit.errors import InvalidInputError
from ctxkit.responses.entry import CacheEntry

__all__ = ["CacheBackend", "MemoryBackend", "RedisBackend", "SQLiteBackend"]


@runtime_checkable
class CacheBackend(Protocol):
    """The storage interface of :class:`~ctxkit.responses.ResponseCache` (see the module docstring)."""

    max_entries: int | None
    max_bytes: int | None

    def get(self, key: str, now: float) -> CacheEntry | None: ...

    def put(self, entry: CacheEntry, now: float) -> None: ...

    def partition(self, partition: str, now: float) -> list[CacheEntry]: ...

    def invalidate_tag(self, tag: str) -> int: ...

    def delete(self, key: str) -> bool: ...

    def clear(self) -> None: ...

    def __len__(self) -> int: ...

    def nbytes(self) -> int: ...

    def close(self) -> None: ...


def _limits(max_entries: int | None, max_bytes: int | None) -> tuple[int | None, int | None]:
    for name, v in (("max_entries", max_entries), ("max_bytes", max_bytes)):
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise InvalidInputError(f"{name} must be a positive int or None (no limit), got {v!r}")
    return max_entries, max_bytes


def _check_size(size: int, max_bytes: int | None) -> None:
    if max_bytes is not None and size > max_bytes:
        raise InvalidInputError(
            f"a cache entry of {size} bytes exceeds max_bytes={max_bytes}; raise max_bytes or cache shorter answers"
        )


class MemoryBackend:
    """In-process storage: an LRU ordered dict with partition and tag indexes, under one lock."""

    def __init__(self, *, max_entries: int | None = 10_000, max_bytes: int | None = None) -> None:
        self.max_entries, self.max_bytes = _limits(max_entries, max_bytes)
        self._lock = threading.RLock()
        self._entries: OrderedDict[str, tuple[CacheEntry, int]] = OrderedDict()
        self._parts: dict[str, dict[str, None]] = {}
        self._tags: dict[str, set[str]] = {}
        self._bytes = 0

    def __repr__(self) -> str:
        return f"MemoryBackend(entries={len(self)}, max_entries={self.max_entries}, max_bytes={self.max_bytes})"

    def _drop(self, key: str) -> bool:
        item = self._entries.pop(key, None)
        if item is None:
            return False
        entry, size = item
        self._bytes -= size
        part = self._parts.get(entry.partition)
        if part is not None:
            part.pop(key, None)
            if not part:
                del self._parts[entry.partition]
        for t in entry.tags:
            keys = self._tags.get(t)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._tags[t]
        return True

    def get(self, key: str, now: float) -> CacheEntry | None:
        with self._lock:
            item = self._entries.get(key)
            if item is None:
                return None
            if item[0].expired(now):
                self._drop(key)
                return None
            self._entries.move_to_end(key)
            return item[0]

    def put(self, entry: CacheEntry, now: float) -> None:
        size = len(entry.to_bytes())
        _check_size(size, self.max_bytes)
        with self._lock:
            self._drop(entry.key)
            self._entries[entry.key] = (entry, size)
            self._bytes += size
            self._parts.setdefault(entry.partition, {})[entry.key] = None
            for t in entry.tags:
                self._tags.setdefault(t, set()).add(entry.key)
            while (self.max_entries is not None and len(self._entries) > self.max_entries) or (
                self.max_bytes is not None and self._bytes > self.max_bytes
            ):
                self._drop(next(iter(self._entries)))

    def partition(self, partition: str, now: float) -> list[CacheEntry]:
        with self._lock:
            out: list[CacheEntry] = []
            for key in list(self._parts.get(partition, ())):
                entry = self._entries[key][0]
                if entry.expired(now):
                    self._drop(key)
                else:
                    out.append(entry)
            return out

    def invalidate_tag(self, tag: str) -> int:
        with self._lock:
            return sum(self._drop(k) for k in list(self._tags.get(tag, ())))

    def delete(self, key: str) -> bool:
        with self._lock:
            return self._drop(key)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._parts.clear()
            self._tags.clear()
            self._bytes = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def nbytes(self) -> int:
        with self._lock:
            return self._bytes

    def close(self) -> None:
        return None


class SQLiteBackend:
    """A SQLite file (or ``":memory:"``): survives restarts and is shared by the processes that open the file.

    One connection per backend, serialized by a lock (SQLite in WAL mode for files). ``last_used``
    orders the LRU eviction.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = ":memory:",
        *,
        max_entries: int | None = 100_000,
        max_bytes: int | None = None,
    ) -> None:
        self.max_entries, self.max_bytes = _limits(max_entries, max_bytes)
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._tick = 0
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS response_cache (
                key TEXT PRIMARY KEY, partition TEXT NOT NULL, expires_at REAL, last_used REAL NOT NULL,
                nbytes INTEGER NOT NULL, data BLOB NOT NULL);
            CREATE INDEX IF NOT EXISTS response_cache_partition ON response_cache(partition);
            CREATE INDEX IF NOT EXISTS response_cache_lru ON response_cache(last_used);
            CREATE TABLE IF NOT EXISTS response_cache_tags (tag TEXT NOT NULL, key TEXT NOT NULL,
                PRIMARY KEY (tag, key));
            CREATE INDEX IF NOT EXISTS response_cache_tags_key ON response_cache_tags(key);
            """
        )

    def __repr__(self) -> str:
        return f"SQLiteBackend(path={self.path!r}, max_entries={self.max_entries}, max_bytes={self.max_bytes})"

    def _used(self, now: float) -> float:
        # strictly increasing within this process: equal clocks still give an LRU order
        self._tick += 1
        return now + self._tick * 1e-9

    def _drop(self, key: str) -> bool:
        cur = self._db.execute("DELETE FROM response_cache WHERE key = ?", (key,))
        self._db.execute("DELETE FROM response_cache_tags WHERE key = ?", (key,))
        return cur.rowcount > 0

    def get(self, key: str, now: float) -> CacheEntry | None:
        with self._lock:
            row = self._db.execute("SELECT expires_at, data FROM response_cache WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None
            if row[0] is not None and now >= row[0]:
                self._drop(key)
                return None
            self._db.execute("UPDATE response_cache SET last_used = ? WHERE key = ?", (self._used(now), key))
            return CacheEntry.from_bytes(row[1])

    def put(self, entry: CacheEntry, now: float) -> None:
        data = entry.to_bytes()
        _check_size(len(data), self.max_bytes)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._drop(entry.key)
                self._db.execute(
                    "INSERT INTO response_cache VALUES (?, ?, ?, ?, ?, ?)",
                    (entry.key, entry.partition, entry.expires_at, self._used(now), len(data), data),
                )
                self._db.executemany(
                    "INSERT OR IGNORE INTO response_cache_tags VALUES (?, ?)", [(t, entry.key) for t in entry.tags]
                )
                self._evict()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _evict(self) -> None:
        while True:
            n, size = self._db.execute("SELECT COUNT(*), COALESCE(SUM(nbytes), 0) FROM response_cache").fetchone()
            over = (self.max_entries is not None and n > self.max_entries) or (
                self.max_bytes is not None and size > self.max_bytes
            )
            if not over:
                return
            (key,) = self._db.execute("SELECT key FROM response_cache ORDER BY last_used LIMIT 1").fetchone()
            self._drop(key)

    def partition(self, partition: str, now: float) -> list[CacheEntry]:
        with self._lock:
            rows = self._db.execute(
                "SELECT data FROM response_cache WHERE partition = ? AND (expires_at IS NULL OR expires_at > ?)",
                (partition, now),
            ).fetchall()
            return [CacheEntry.from_bytes(r[0]) for r in rows]

    def invalidate_tag(self, tag: str) -> int:
        with self._lock:
            keys = [r[0] for r in self._db.execute("SELECT key FROM response_cache_tags WHERE tag = ?", (tag,))]
            return sum(self._drop(k) for k in keys)

    def delete(self, key: str) -> bool:
        with self._lock:
            return self._drop(key)

    def clear(self) -> None:
        with self._lock:
            self._db.execute("DELETE FROM response_cache")
            self._db.execute("DELETE FROM response_cache_tags")

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM response_cache").fetchone()[0])

    def nbytes(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COALESCE(SUM(nbytes), 0) FROM response_cache").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


class RedisBackend:
    """A Redis server: shared by every process and machine that reaches it (``redis://host:port/db``).

    Keys live under ``prefix``: ``e:<key>`` the entry (with Redis' own expiry for TTLs),
    ``p:<partition>`` and ``t:<tag>`` sets of keys, ``lru`` a sorted set by last use, ``sz`` a hash
    of entry sizes. Writes and evictions run in MULTI/EXEC transactions. The URL (which may hold a
    password) is never shown in reprs.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        prefix: str = "ctxkit:rc:",
        max_entries: int | None = 100_000,
        max_bytes: int | None = None,
    ) -> None:
        self.max_entries, self.max_bytes = _limits(max_entries, max_bytes)
        if client is None:
            if not url:
                raise InvalidInputError("RedisBackend needs url='redis://host:port/db' or client=redis.Redis(...)")

            redis = require("redis", feature="RedisBackend", extra="state", package="redis")
            client = redis.Redis.from_url(url)
        self._r = client
        self.prefix = prefix
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"RedisBackend(prefix={self.prefix!r}, max_entries={self.max_entries}, max_bytes={self.max_bytes})"

    def _k(self, kind: str, name: str = "") -> str:
        return f"{self.prefix}{kind}:{name}" if name else f"{self.prefix}{kind}"

    def _drop(self, key: str, entry: CacheEntry | None = None) -> bool:
        if entry is None:
            raw = self._r.get(self._k("e", key))
            entry = CacheEntry.from_bytes(raw) if raw is not None else None
        pipe = self._r.pipeline(transaction=True)
        pipe.delete(self._k("e", key))
        pipe.zrem(self._k("lru"), key)
        pipe.hdel(self._k("sz"), key)
        if entry is not None:
            pipe.srem(self._k("p", entry.partition), key)
            for t in entry.tags:
                pipe.srem(self._k("t", t), key)
        removed = pipe.execute()
        return bool(removed[1])

    def get(self, key: str, now: float) -> CacheEntry | None:
        with self._lock:
            raw = self._r.get(self._k("e", key))
            if raw is None:
                if self._r.zscore(self._k("lru"), key) is not None:  # expired inside Redis: tidy the indexes
                    self._drop(key)
                return None
            entry = CacheEntry.from_bytes(raw)
            if entry.expired(now):
                self._drop(key, entry)
                return None
            self._r.zadd(self._k("lru"), {key: now})
            return entry

    def put(self, entry: CacheEntry, now: float) -> None:
        data = entry.to_bytes()
        _check_size(len(data), self.max_bytes)
        with self._lock:
            self._drop(entry.key)
            pipe = self._r.pipeline(transaction=True)
            ttl_ms = None if entry.expires_at is None else max(1, int((entry.expires_at - now) * 1000))
            pipe.set(self._k("e", entry.key), data, px=ttl_ms)
            pipe.sadd(self._k("p", entry.partition), entry.key)
            for t in entry.tags:
                pipe.sadd(self._k("t", t), entry.key)
            pipe.zadd(self._k("lru"), {entry.key: now})
            pipe.hset(self._k("sz"), entry.key, len(data))
            pipe.execute()
            self._evict()

    def _evict(self) -> None:
        while True:
            n = int(self._r.zcard(self._k("lru")))
            over = self.max_entries is not None and n > self.max_entries
            if not over and self.max_bytes is not None:
                over = self.nbytes() > self.max_bytes
            if not over:
                return
            oldest = self._r.zrange(self._k("lru"), 0, 0)
            if not oldest:
                return
            self._drop(oldest[0].decode())

    def partition(self, partition: str, now: float) -> list[CacheEntry]:
        with self._lock:
            keys = sorted(k.decode() for k in self._r.smembers(self._k("p", partition)))
            if not keys:
                return []
            raws = self._r.mget([self._k("e", k) for k in keys])
            out: list[CacheEntry] = []
            for key, raw in zip(keys, raws, strict=True):
                entry = CacheEntry.from_bytes(raw) if raw is not None else None
                if entry is None:  # expired inside Redis: its indexes still name it
                    self._r.srem(self._k("p", partition), key)
                    self._drop(key)
                elif entry.expired(now):
                    self._drop(key, entry)
                else:
                    out.append(entry)
            return out

    def invalidate_tag(self, tag: str) -> int:
        with self._lock:
            keys = [k.decode() for k in self._r.smembers(self._k("t", tag))]
            n = sum(self._drop(k) for k in keys)
            self._r.delete(self._k("t", tag))
            return n

    def delete(self, key: str) -> bool:
        with self._lock:
            return self._drop(key)

    def clear(self) -> None:
        with self._lock:
            batch = list(self._r.scan_iter(match=f"{self.prefix}*", count=500))
            for i in range(0, len(batch), 500):
                self._r.delete(*batch[i : i + 500])

    def __len__(self) -> int:
        with self._lock:
            return int(self._r.zcard(self._k("lru")))

    def nbytes(self) -> int:
        with self._lock:
            return sum(int(v) for v in self._r.hvals(self._k("sz")))

    def close(self) -> None:
        close = getattr(self._r, "close", None)
        if callable(close):
            close()
