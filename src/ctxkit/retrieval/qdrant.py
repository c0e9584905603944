"""A :class:`~ctxkit.retrieval.VectorIndex` on Qdrant, through ``qdrant-client`` (extra ``retrieval``).

Pass ``location=":memory:"`` or a folder ``path`` for qdrant-client's in-process local
mode (same client API as a server, nothing to run), ``url=...`` for a Qdrant server, or
an existing ``client=QdrantClient(...)``. Point ids are UUIDv5 of ctxkit's string ids
(Qdrant accepts only integers and UUIDs); the string id and the metadata live in the
payload. ctxkit filters (``{"field": value}``, ``$eq $ne $in $nin $gt $gte $lt $lte``)
are translated into Qdrant filters, so filtering happens inside Qdrant.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ctxkit._inputs import reject_bare_string
from ctxkit._optional import require
from ctxkit.errors import BackendError, InvalidInputError
from ctxkit.retrieval.index import Filter, FloatArray, Hit, _check_filter

__all__ = ["QdrantIndex"]

_NS = uuid.UUID("6f1c3c1e-8a51-4d0e-9b7a-2f6a1d3c4b5e")
_ID_KEY = "_ctxkit_id"


def _point_id(id: str) -> str:
    return str(uuid.uuid5(_NS, id))


class QdrantIndex:
    """Cosine search in a Qdrant collection (created on first use with ``dim`` dimensions)."""

    def __init__(
        self,
        dim: int,
        *,
        collection: str = "ctxkit",
        location: str | None = None,
        path: str | os.PathLike[str] | None = None,
        url: str | None = None,
        client: Any = None,
        batch_size: int = 256,
    ) -> None:
        if not isinstance(dim, int) or dim < 1:
            raise InvalidInputError(f"dim must be a positive int, got {dim!r}")
        qc = require("qdrant_client", feature="QdrantIndex", extra="retrieval", package="qdrant-client")
        self._models = require(
            "qdrant_client.models", feature="QdrantIndex", extra="retrieval", package="qdrant-client"
        )
        self._dim = dim
        self.collection = collection
        self.batch_size = batch_size
        if client is None:
            if path is not None:
                client = qc.QdrantClient(path=str(path))
            elif url is not None:
                client = qc.QdrantClient(url=url)
            else:
                client = qc.QdrantClient(location or ":memory:")
        self.client = client
        m = self._models
        try:
            if not client.collection_exists(collection):
                client.create_collection(
                    collection, vectors_config=m.VectorParams(size=dim, distance=m.Distance.COSINE)
                )
            else:
                size = client.get_collection(collection).config.params.vectors.size
                if size != dim:
                    raise InvalidInputError(f"Qdrant collection {collection!r} has {size}-d vectors, not {dim}")
        except InvalidInputError:
            raise
        except Exception as exc:
            raise BackendError(f"could not open the Qdrant collection {collection!r}: {exc}", backend="qdrant") from exc

    def __repr__(self) -> str:
        return f"QdrantIndex(dim={self._dim}, collection={self.collection!r}, size={len(self)})"

    @property
    def dim(self) -> int:
        return self._dim

    def __len__(self) -> int:
        return int(self.client.count(self.collection, exact=True).count)

    def __contains__(self, id: object) -> bool:
        if not isinstance(id, str):
            return False
        return bool(self.client.retrieve(self.collection, [_point_id(id)], with_payload=False))

    def _matrix(self, vectors: npt.ArrayLike, n: int | None = None) -> FloatArray:
        arr = np.asarray(vectors, dtype=np.float32)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != self._dim or (n is not None and len(arr) != n):
            raise InvalidInputError(
                f"vectors must have shape ({n if n is not None else 'n'}, {self._dim}), got {arr.shape}"
            )
        if not np.isfinite(arr).all():
            raise InvalidInputError("vectors contain NaN or infinite values")
        return arr

    def upsert(
        self, ids: Sequence[str], vectors: npt.ArrayLike, metadata: Sequence[Mapping[str, Any]] | None = None
    ) -> None:
        """Add points, replacing points with the same ids."""
        if isinstance(ids, str):
            raise InvalidInputError("ids must be a sequence of strings, not one string")
        ids = list(ids)
        if any(not isinstance(i, str) or not i for i in ids) or len(set(ids)) != len(ids):
            raise InvalidInputError("ids must be unique non-empty strings")
        vecs = self._matrix(vectors, len(ids))
        metas = [dict(m) for m in metadata] if metadata is not None else [{} for _ in ids]
        if len(metas) != len(ids):
            raise InvalidInputError(f"got {len(ids)} ids but {len(metas)} metadata entries")
        bad = [i for i, m in zip(ids, metas, strict=True) if _ID_KEY in m]
        if bad:
            raise InvalidInputError(f"metadata key {_ID_KEY!r} is reserved (ids {bad[:3]})")
        m = self._models
        for s in range(0, len(ids), self.batch_size):
            points = [
                m.PointStruct(id=_point_id(i), vector=vecs[j].tolist(), payload={**metas[j], _ID_KEY: i})
                for j, i in enumerate(ids[s : s + self.batch_size], start=s)
            ]
            self.client.upsert(self.collection, points=points, wait=True)

    def add(
        self, ids: Sequence[str], vectors: npt.ArrayLike, metadata: Sequence[Mapping[str, Any]] | None = None
    ) -> None:
        """Add new points; ids that already exist raise (use :meth:`upsert` to replace)."""
        ids = list(ids)
        found = self.client.retrieve(self.collection, [_point_id(i) for i in ids], with_payload=True)
        if found:
            raise InvalidInputError(
                f"ids already in the index: {[p.payload.get(_ID_KEY) for p in found][:5]}; use upsert() to replace them"
            )
        self.upsert(ids, vectors, metadata)

    def delete(self, ids: Iterable[str]) -> int:
        """Delete points by id; returns how many existed."""
        reject_bare_string(ids, "delete(ids)", "delete([id])")
        pids = [_point_id(i) for i in dict.fromkeys(ids)]
        if not pids:
            return 0
        found = self.client.retrieve(self.collection, pids, with_payload=False)
        if found:
            self.client.delete(
                self.collection, points_selector=self._models.PointIdsList(points=[p.id for p in found]), wait=True
            )
        return len(found)

    def _filter(self, flt: Filter | None) -> Any:
        if not flt:
            return None
        _check_filter(flt)
        m = self._models
        must: list[Any] = []
        must_not: list[Any] = []
        for field, cond in flt.items():
            conds = cond.items() if isinstance(cond, Mapping) else [("$eq", cond)]
            for op, arg in conds:
                if op == "$eq":
                    must.append(m.FieldCondition(key=field, match=m.MatchValue(value=arg)))
                elif op == "$ne":
                    must_not.append(m.FieldCondition(key=field, match=m.MatchValue(value=arg)))
                elif op == "$in":
                    must.append(m.FieldCondition(key=field, match=m.MatchAny(any=list(arg))))
                elif op == "$nin":
                    must_not.append(m.FieldCondition(key=field, match=m.MatchAny(any=list(arg))))
                else:
                    must.append(m.FieldCondition(key=field, range=m.Range(**{op[1:]: arg})))
        return m.Filter(must=must or None, must_not=must_not or None)

    def search(self, vector: npt.ArrayLike, k: int = 10, *, filter: Filter | None = None) -> list[Hit]:
        """The ``k`` most similar points to one vector."""
        return self.search_batch(vector, k, filter=filter)[0]

    def search_batch(self, vectors: npt.ArrayLike, k: int = 10, *, filter: Filter | None = None) -> list[list[Hit]]:
        """:meth:`search` for each row of ``vectors`` (one batched request)."""
        if not isinstance(k, int) or k < 1:
            raise InvalidInputError(f"k must be a positive int, got {k!r}")
        q = self._matrix(vectors)
        qf = self._filter(filter)
        m = self._models
        reqs = [m.QueryRequest(query=row.tolist(), filter=qf, limit=k, with_payload=[_ID_KEY]) for row in q]
        resp = self.client.query_batch_points(self.collection, requests=reqs)
        return [[Hit(str(p.payload[_ID_KEY]), float(p.score)) for p in r.points] for r in resp]

    def get_vectors(self, ids: Sequence[str]) -> FloatArray:
        """Stored vectors of ``ids``; an unknown id raises."""
        reject_bare_string(ids, "get_vectors(ids)", "get_vectors([id])")
        pids = [_point_id(i) for i in ids]
        got = {str(p.id): p.vector for p in self.client.retrieve(self.collection, pids, with_vectors=True)}
        missing = [i for i, p in zip(ids, pids, strict=True) if p not in got]
        if missing:
            raise InvalidInputError(f"ids not in the index: {missing[:5]}")
        out = np.asarray([got[p] for p in pids], dtype=np.float32).reshape(len(pids), self._dim)
        return out

    def get_metadata(self, id: str) -> dict[str, Any]:
        """Metadata stored with ``id``."""
        got = self.client.retrieve(self.collection, [_point_id(id)], with_payload=True)
        if not got:
            raise InvalidInputError(f"id {id!r} is not in the index")
        payload = dict(got[0].payload or {})
        payload.pop(_ID_KEY, None)
        return payload

    def close(self) -> None:
        """Close the client (a local-mode ``path`` is flushed and unlocked)."""
        self.client.close()
