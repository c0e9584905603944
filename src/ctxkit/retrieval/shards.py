"""Several vector indexes searched as one: :class:`ShardedIndex`.

Each shard is any :class:`~ctxkit.retrieval.index.VectorIndex` (a FAISS flat, HNSW or IVF-PQ
index, a LanceDB table, ...). A search asks every shard for its top ``k`` (in parallel threads:
FAISS releases the GIL) and merges them by score, so on exact shards the result equals one exact
index over all the rows. New ids go to the shard chosen by a stable hash of the id; ids that a
shard already holds (shards built elsewhere, e.g. by :func:`ctxkit.retrieval.distributed.ingest`)
are updated and deleted where they are.

:meth:`ShardedIndex.save` writes a folder: one ctxkit index file per shard (each atomic, with its
SHA-256 trailer) and ``shards.json`` naming them, written last and atomically, so a reader sees
either the previous set or the new one.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ctxkit._inputs import reject_bare_string
from ctxkit.errors import InvalidInputError, ResourceError
from ctxkit.paths import atomic_write
from ctxkit.retrieval.index import (
    BaseVectorIndex,
    Filter,
    FloatArray,
    Hit,
    VectorIndex,
    load_index,
    query_matrix,
)

__all__ = ["ShardedIndex", "load_sharded", "merge_hits"]

_MANIFEST = "shards.json"


def merge_hits(per_shard: Sequence[Sequence[Hit]], k: int) -> list[Hit]:
    """The ``k`` best hits of several score-sorted hit lists (higher score first; ties by shard order)."""
    return heapq.nlargest(k, (h for hits in per_shard for h in hits), key=lambda h: h.score)


class ShardedIndex:
    """Many :class:`~ctxkit.retrieval.index.VectorIndex` shards behind the one interface."""

    def __init__(self, shards: Sequence[VectorIndex], *, threads: int | None = None) -> None:
        shards = list(shards)
        if not shards:
            raise InvalidInputError("ShardedIndex needs at least one shard")
        dims = {s.dim for s in shards}
        if len(dims) != 1:
            raise InvalidInputError(f"all shards must have the same dim, got {sorted(dims)}")
        self.shards: list[VectorIndex] = shards
        self._dim = dims.pop()
        self.threads = max(1, threads if threads is not None else min(len(shards), os.cpu_count() or 1))
        self._pool: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        return f"ShardedIndex(dim={self._dim}, shards={len(self.shards)}, size={len(self)})"

    @property
    def dim(self) -> int:
        return self._dim

    def __len__(self) -> int:
        return sum(len(s) for s in self.shards)

    def __contains__(self, id: object) -> bool:
        return any(id in s for s in self.shards)

    def shard_of(self, id: str) -> int:
        """The shard a new ``id`` goes to (a stable hash, the same in every process)."""
        return int.from_bytes(hashlib.blake2b(id.encode(), digest_size=8).digest(), "big") % len(self.shards)

    def _holder(self, id: str) -> VectorIndex | None:
        for s in self.shards:
            if id in s:
                return s
        return None

    def _route(
        self, ids: Sequence[str], vectors: npt.ArrayLike, metadata: Sequence[Mapping[str, Any]] | None
    ) -> dict[int, tuple[list[str], FloatArray, list[Mapping[str, Any]] | None]]:
        if isinstance(ids, str):
            raise InvalidInputError("ids must be a sequence of strings, not one string")
        ids = list(ids)
        vecs = np.asarray(vectors, dtype=np.float32)
        if vecs.ndim == 1:
            vecs = vecs[None, :]
        if len(vecs) != len(ids):
            raise InvalidInputError(f"got {len(ids)} ids but {len(vecs)} vectors")
        if metadata is not None and len(metadata) != len(ids):
            raise InvalidInputError(f"got {len(ids)} ids but {len(metadata)} metadata entries")
        groups: dict[int, list[int]] = {}
        for j, i in enumerate(ids):
            if not isinstance(i, str) or not i:
                raise InvalidInputError(f"every id must be a non-empty str, got {i!r}")
            holder = self._holder(i)
            s = self.shards.index(holder) if holder is not None else self.shard_of(i)
            groups.setdefault(s, []).append(j)
        return {
            s: ([ids[j] for j in rows], vecs[rows], None if metadata is None else [metadata[j] for j in rows])
            for s, rows in groups.items()
        }

    def add(
        self, ids: Sequence[str], vectors: npt.ArrayLike, metadata: Sequence[Mapping[str, Any]] | None = None
    ) -> None:
        """Add new rows, each to the shard its id hashes to; an id already in any shard raises."""
        dup = [i for i in ids if i in self]
        if dup:
            raise InvalidInputError(f"ids already in the index: {dup[:5]}; use upsert() to replace them")
        if len(set(ids)) != len(ids):
            raise InvalidInputError("ids must be unique within one call")
        for s, (part_ids, part_vecs, part_meta) in self._route(ids, vectors, metadata).items():
            self.shards[s].add(part_ids, part_vecs, part_meta)

    def upsert(
        self, ids: Sequence[str], vectors: npt.ArrayLike, metadata: Sequence[Mapping[str, Any]] | None = None
    ) -> None:
        """Add rows, replacing existing rows with the same ids in the shard that holds them."""
        for s, (part_ids, part_vecs, part_meta) in self._route(ids, vectors, metadata).items():
            self.shards[s].upsert(part_ids, part_vecs, part_meta)

    def delete(self, ids: Iterable[str]) -> int:
        """Delete rows by id from whichever shards hold them; returns how many existed."""
        reject_bare_string(ids, "delete(ids)", "delete([id])")
        wanted = list(dict.fromkeys(ids))
        return sum(s.delete([i for i in wanted if i in s]) for s in self.shards)

    def _map(self, fn: Any) -> list[Any]:
        if self.threads == 1 or len(self.shards) == 1:
            return [fn(s) for s in self.shards]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="ctxkit-shard")
        return list(self._pool.map(fn, self.shards))

    def search(self, vector: npt.ArrayLike, k: int = 10, *, filter: Filter | None = None) -> list[Hit]:
        """The ``k`` most similar rows over all shards."""
        return self.search_batch(vector, k, filter=filter)[0]

    def search_batch(self, vectors: npt.ArrayLike, k: int = 10, *, filter: Filter | None = None) -> list[list[Hit]]:
        """Every shard's top ``k`` per query, merged by score."""
        q = query_matrix(vectors, k, self._dim)
        per_shard: list[list[list[Hit]]] = self._map(lambda s: s.search_batch(q, k, filter=filter))
        return [merge_hits([hits[r] for hits in per_shard], k) for r in range(len(q))]

    def get_vectors(self, ids: Sequence[str]) -> FloatArray:
        """Stored vectors of ``ids``, from the shards that hold them; an unknown id raises."""
        reject_bare_string(ids, "get_vectors(ids)", "get_vectors([id])")
        out = np.empty((len(ids), self._dim), dtype=np.float32)
        for j, i in enumerate(ids):
            holder = self._holder(i)
            if holder is None:
                raise InvalidInputError(f"unknown id {i!r}")
            out[j] = holder.get_vectors([i])[0]
        return out

    def get_metadata(self, id: str) -> dict[str, Any]:
        holder = self._holder(id)
        if holder is None:
            raise InvalidInputError(f"unknown id {id!r}")
        return holder.get_metadata(id)

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write every shard (ctxkit index files) and then ``shards.json`` into ``folder``."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        names = []
        for n, s in enumerate(self.shards):
            if not isinstance(s, BaseVectorIndex):
                raise InvalidInputError(f"shard {n} is a {type(s).__name__}; only ctxkit index files can be saved")
            name = f"shard-{n:05d}.ctxidx"
            s.save(out / name)
            names.append(name)
        with atomic_write(out / _MANIFEST) as f:
            f.write(json.dumps({"dim": self._dim, "shards": names}).encode())
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def load_sharded(folder: str | os.PathLike[str], *, threads: int | None = None) -> ShardedIndex:
    """Load a folder written by :meth:`ShardedIndex.save` (or by the distributed ingest)."""
    src = Path(folder)
    try:
        manifest = json.loads((src / _MANIFEST).read_text())
        names = [str(n) for n in manifest["shards"]]
    except FileNotFoundError as exc:
        raise ResourceError(f"no {_MANIFEST} in {src}; pass a folder written by ShardedIndex.save()") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise ResourceError(f"{src / _MANIFEST} is malformed ({exc}); rebuild the shards") from exc
    return ShardedIndex([load_index(src / n) for n in names], threads=threads)
