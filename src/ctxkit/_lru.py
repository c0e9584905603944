"""A small thread-safe least-recently-used map (size 0 keeps nothing)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Generic, TypeVar

from ctxkit.errors import InvalidInputError

K = TypeVar("K")
V = TypeVar("V")


class LRUCache(Generic[K, V]):
    """At most ``size`` entries; a hit makes its entry the newest, a put past the limit drops the oldest."""

    def __init__(self, size: int) -> None:
        if not isinstance(size, int) or size < 0:
            raise InvalidInputError(f"a cache size must be an int >= 0, got {size!r}")
        self.size = size
        self._data: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        if not self.size:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)
