"""A LanceDB table behind :class:`~ctxkit.retrieval.index.VectorIndex` (extra ``scale``).

LanceDB is an embedded, file-based vector store (Lance columnar format) that serves tables on
local disk or object storage (``s3://...``, ``gs://...``) with the same client, and builds
IVF-PQ / HNSW vector indexes inside the table for millions of rows
(:meth:`LanceIndex.create_vector_index`). Until such an index exists a search is exact.

Rows are ``id`` (string), ``vector`` (float32 x dim), ``meta`` (the metadata as JSON) and one
column per declared filter field (``fields={"lang": "str", "year": "int"}``). Filters use ctxkit's
syntax (``{"lang": "en"}``, ``{"year": {"$gte": 2020}}``, ``$eq $ne $in $nin $gt $gte $lt $lte``) and
run inside LanceDB as a SQL pre-filter on the declared columns; a filter on an undeclared field
raises (declare it). Deletes and upserts are LanceDB deletes and merge-inserts, durable on disk.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ctxkit._inputs import reject_bare_string
from ctxkit._optional import require
from ctxkit.errors import InvalidInputError
from ctxkit.messages import canonical_json
from ctxkit.retrieval.index import Filter, FloatArray, Hit, check_ids, query_matrix

__all__ = ["FieldType", "LanceIndex"]

FieldType = Literal["str", "int", "float", "bool"]
_OPS = {"$eq": "=", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


def _sql_value(value: Any, kind: FieldType, field: str) -> str:
    if kind == "str":
        if not isinstance(value, str):
            raise InvalidInputError(f"filter on {field!r} (a str field) compares with {value!r}; pass a str")
        return "'" + value.replace("'", "''") + "'"
    if kind == "bool":
        if not isinstance(value, bool):
            raise InvalidInputError(f"filter on {field!r} (a bool field) compares with {value!r}; pass a bool")
        return "true" if value else "false"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputError(f"filter on {field!r} (a {kind} field) compares with {value!r}; pass a number")
    return repr(int(value) if kind == "int" else float(value))


class LanceIndex:
    """Vectors, metadata, filters and deletes in a LanceDB table (local folder or object store URI)."""

    def __init__(
        self,
        dim: int,
        uri: str | os.PathLike[str],
        *,
        table: str = "ctxkit",
        fields: Mapping[str, FieldType] | None = None,
    ) -> None:
        if not isinstance(dim, int) or dim < 1:
            raise InvalidInputError(f"dim must be a positive int, got {dim!r}")
        fields = dict(fields or {})
        for name, kind in fields.items():
            if name in ("id", "vector", "meta", "_distance") or not name.isidentifier():
                raise InvalidInputError(f"{name!r} cannot be a filter field name (reserved or not an identifier)")
            if kind not in ("str", "int", "float", "bool"):
                raise InvalidInputError(f"field {name!r}: type must be 'str', 'int', 'float' or 'bool', not {kind!r}")
        self._lancedb = require("lancedb", feature="LanceIndex", extra="scale", package="lancedb")
        self._pa = require("pyarrow", feature="LanceIndex", extra="scale", package="pyarrow")
        pa = self._pa
        self._dim = dim
        self.fields: dict[str, FieldType] = fields
        self.uri = str(uri)
        types = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}
        self._schema = pa.schema(
            [
                pa.field("id", pa.string(), nullable=False),
                pa.field("vector", pa.list_(pa.float32(), dim)),
                pa.field("meta", pa.string()),
                *(pa.field(n, types[k]) for n, k in fields.items()),
            ]
        )
        if "://" not in self.uri:
            Path(self.uri).mkdir(parents=True, exist_ok=True)
        self._db = self._lancedb.connect(self.uri)
        self._table = self._db.create_table(table, schema=self._schema, exist_ok=True)
        have = self._table.schema
        if have.field("vector").type != self._schema.field("vector").type:
            raise InvalidInputError(f"table {table!r} at {self.uri} holds {have.field('vector').type}, not dim={dim}")

    def __repr__(self) -> str:
        return f"LanceIndex(dim={self._dim}, uri={self.uri!r}, size={len(self)}, fields={sorted(self.fields)})"

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def table(self) -> Any:
        """The LanceDB table (for its own API: versions, compaction, full-text indexes)."""
        return self._table

    def __len__(self) -> int:
        return int(self._table.count_rows())

    def _id_list(self, ids: Sequence[str]) -> str:
        return ", ".join("'" + i.replace("'", "''") + "'" for i in ids)

    def __contains__(self, id: object) -> bool:
        return isinstance(id, str) and int(self._table.count_rows(f"id IN ({self._id_list([id])})")) > 0

    def _existing(self, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for s in range(0, len(ids), 1000):
            part = ids[s : s + 1000]
            rows = self._table.search().where(f"id IN ({self._id_list(part)})").select(["id"]).limit(len(part))
            found.update(str(r["id"]) for r in rows.to_list())
        return found

    def _rows(self, ids: Sequence[str], vectors: npt.ArrayLike, metadata: Sequence[Mapping[str, Any]] | None) -> Any:
        ids = check_ids(ids)
        vecs = np.asarray(vectors, dtype=np.float32)
        if vecs.ndim == 1:
            vecs = vecs[None, :]
        if vecs.ndim != 2 or vecs.shape[1] != self._dim or len(vecs) != len(ids):
            raise InvalidInputError(f"vectors must have shape ({len(ids)}, {self._dim}), got {np.shape(vectors)}")
        if not np.isfinite(vecs).all():
            raise InvalidInputError("vectors contain NaN or infinite values")
        metas = [dict(m) for m in metadata] if metadata is not None else [{} for _ in ids]
        if len(metas) != len(ids):
            raise InvalidInputError(f"got {len(ids)} ids but {len(metas)} metadata entries")
        try:
            meta_json = [canonical_json(m) for m in metas]
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"metadata is not JSON-serializable: {exc}") from exc
        pa = self._pa
        cols: dict[str, Any] = {
            "id": pa.array(ids, pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(vecs).ravel()), self._dim),
            "meta": pa.array(meta_json, pa.string()),
        }
        for name in self.fields:
            cols[name] = pa.array([m.get(name) for m in metas], self._schema.field(name).type)
        return pa.table(cols, schema=self._schema)

    def add(
        self, ids: Sequence[str], vectors: npt.ArrayLike, metadata: Sequence[Mapping[str, Any]] | None = None
    ) -> None:
        """Add new rows; an id already in the table raises (use :meth:`upsert`)."""
        data = self._rows(ids, vectors, metadata)
        dup = self._existing(list(ids))
        if dup:
            raise InvalidInputError(f"ids already in the index: {sorted(dup)[:5]}; use upsert() to replace them")
        if len(data):
            self._table.add(data)

    def upsert(
        self, ids: Sequence[str], vectors: npt.ArrayLike, metadata: Sequence[Mapping[str, Any]] | None = None
    ) -> None:
        """Add rows, replacing rows with the same ids (a LanceDB merge-insert on ``id``)."""
        data = self._rows(ids, vectors, metadata)
        if len(data):
            self._table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all().execute(data)

    def delete(self, ids: Iterable[str]) -> int:
        """Delete rows by id; returns how many existed."""
        reject_bare_string(ids, "delete(ids)", "delete([id])")
        wanted = list(dict.fromkeys(ids))
        gone = self._existing(wanted)
        for s in range(0, len(wanted), 1000):
            self._table.delete(f"id IN ({self._id_list(wanted[s : s + 1000])})")
        return len(gone)

    def _where(self, flt: Filter | None) -> str | None:
        if not flt:
            return None
        if not isinstance(flt, Mapping):
            raise InvalidInputError(f"a filter is a mapping of field -> value or {{'$op': value}}, got {type(flt)}")
        parts = []
        for field, cond in flt.items():
            kind = self.fields.get(field)
            if kind is None:
                raise InvalidInputError(
                    f"filter on {field!r}, which this LanceIndex does not store as a column; declare it: "
                    f"LanceIndex(..., fields={{{field!r}: 'str'}}) (declared: {sorted(self.fields)})"
                )
            conds = cond.items() if isinstance(cond, Mapping) else [("$eq", cond)]
            for op, arg in conds:
                if op in ("$in", "$nin"):
                    if not isinstance(arg, (list, tuple, set, frozenset)):
                        raise InvalidInputError(f"filter {field!r}: {op} takes a list of values")
                    if not arg:
                        parts.append("false" if op == "$in" else "true")
                        continue
                    vals = ", ".join(_sql_value(a, kind, field) for a in arg)
                    parts.append(f"{field} {'IN' if op == '$in' else 'NOT IN'} ({vals})")
                elif op in _OPS:
                    parts.append(f"{field} {_OPS[op]} {_sql_value(arg, kind, field)}")
                else:
                    raise InvalidInputError(f"filter on {field!r} uses unknown operator {op!r}; use {sorted(_OPS)}")
        return " AND ".join(f"({p})" for p in parts)

    def search(self, vector: npt.ArrayLike, k: int = 10, *, filter: Filter | None = None) -> list[Hit]:
        """The ``k`` rows with the highest inner product to ``vector`` that pass the filter."""
        return self.search_batch(vector, k, filter=filter)[0]

    def search_batch(self, vectors: npt.ArrayLike, k: int = 10, *, filter: Filter | None = None) -> list[list[Hit]]:
        """:meth:`search` for each row of ``vectors``."""
        q = query_matrix(vectors, k, self._dim)
        where = self._where(filter)
        out = []
        for row in q:
            query = self._table.search(row).metric("dot").select(["id"]).limit(k)
            if where is not None:
                query = query.where(where, prefilter=True)
            out.append([Hit(str(r["id"]), 1.0 - float(r["_distance"])) for r in query.to_list()])
        return out

    def get_vectors(self, ids: Sequence[str]) -> FloatArray:
        """Stored vectors of ``ids``; an unknown id raises."""
        reject_bare_string(ids, "get_vectors(ids)", "get_vectors([id])")
        ids = list(ids)
        found: dict[str, Any] = {}
        for s in range(0, len(ids), 1000):
            part = ids[s : s + 1000]
            q = self._table.search().where(f"id IN ({self._id_list(part)})").select(["id", "vector"]).limit(len(part))
            found.update((str(r["id"]), r["vector"]) for r in q.to_list())
        missing = [i for i in ids if i not in found]
        if missing:
            raise InvalidInputError(f"unknown ids: {missing[:5]}")
        return np.asarray([found[i] for i in ids], dtype=np.float32).reshape(len(ids), self._dim)

    def get_metadata(self, id: str) -> dict[str, Any]:
        rows = self._table.search().where(f"id IN ({self._id_list([id])})").select(["meta"]).limit(1).to_list()
        if not rows:
            raise InvalidInputError(f"unknown id {id!r}")
        meta: dict[str, Any] = json.loads(rows[0]["meta"])
        return meta

    def create_vector_index(self, *, index_type: str = "IVF_PQ", **options: Any) -> None:
        """Build LanceDB's own ANN index in the table (``"IVF_PQ"``, ``"IVF_HNSW_SQ"``...; see LanceDB)."""
        self._table.create_index(metric="dot", index_type=index_type, **options)
