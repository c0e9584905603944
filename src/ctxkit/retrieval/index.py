"""Vector indexes: one interface, exact and approximate FAISS, a NumPy fallback, atomic files.

:class:`VectorIndex` is the interface (add, upsert, delete by id; search one or a
batch with an optional metadata filter; read vectors back). :class:`BaseVectorIndex`
keeps the rows (ids, float32 vectors, metadata, a live mask) and everything that is
not the search itself; a subclass implements :meth:`BaseVectorIndex._search_rows`.

* :class:`NumpyIndex` — exact inner product with one matrix product; no extra needed.
* :class:`FaissIndex` — FAISS (extra ``retrieval``). ``kind="auto"`` (default) is exact
  inner product (``IndexFlatIP``) until ``approx_threshold`` vectors, then HNSW
  (``IndexHNSWFlat``, inner product). ``"flat"``, ``"hnsw"``, ``"ivf"`` and ``"ivfpq"`` force a
  kind. ``"ivfpq"`` (IVF with product-quantized codes, trained on a sample of at most
  ``train_sample`` rows) keeps ``pq_m`` bytes per vector in the search structure (plus 8 for its
  id) instead of ``4 * dim``; :meth:`FaissIndex.structure_bytes_per_vector` reports what the
  structure holds. The float32 rows stay in ctxkit's row store (for ``get_vectors``, MMR and exact
  filtered search), so the saving is the search structure's working set, not the whole process.

Vectors are expected L2-normalized (what ctxkit's embedders return), so the inner
product is the cosine similarity. Deleted rows are masked at search time (FAISS ID
selectors) and compacted away when they pile up. Filters are evaluated on metadata:
``{"field": value}`` (equality), or ``{"field": {"$in": [...]}}`` with operators
``$eq $ne $in $nin $gt $gte $lt $lte``; several fields are ANDed.

:meth:`BaseVectorIndex.save` writes one file atomically: everything goes to a temporary
file in the same folder, which is flushed, fsynced and then renamed over the target. A
process killed mid-save leaves the previous file intact and loadable, and its temporary
is removed by the next save or load of that file.

**File format, version 2** (bumped from 1 to add the checksum): the magic line
``CTXKIT-INDEX-2\n``; three ``.npy`` arrays (no pickles) — the JSON header (class, dim,
config, ids, metadata) as bytes, the float32 vectors, and the native search structure
(a serialized FAISS HNSW/IVF index, or empty); then a trailer ``SHA256 <64 hex>\n``, the
SHA-256 of everything before it. :meth:`BaseVectorIndex.load` checks the digest before
parsing anything, so a file with flipped or missing bytes raises
:class:`~ctxkit.errors.ResourceError` instead of loading wrong vectors. Version 1 files
(``CTXKIT-INDEX-1\n``, the same arrays with no trailer) still load, without that check;
save them again to get it.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from ctxkit._inputs import reject_bare_string
from ctxkit._optional import require
from ctxkit.errors import InvalidInputError, ResourceError
from ctxkit.messages import canonical_json
from ctxkit.paths import atomic_write, remove_stale_temporaries

__all__ = [
    "BaseVectorIndex",
    "FaissIndex",
    "Filter",
    "Hit",
    "IndexKind",
    "NumpyIndex",
    "VectorIndex",
    "load_index",
    "matches_filter",
]

Filter = Mapping[str, Any]
IndexKind = Literal["auto", "flat", "hnsw", "ivf", "ivfpq"]
FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

_MAGIC_V1 = b"CTXKIT-INDEX-1\n"
_MAGIC = b"CTXKIT-INDEX-2\n"
_TRAILER = b"SHA256 "
_TRAILER_LEN = len(_TRAILER) + 64 + 1  # "SHA256 " + hex digest + "\n"
_OPS = frozenset({"$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte"})

# Called with the name of each part after it is written during save(); tests use it to
# kill a real process mid-save. Not part of the public API.
_save_hook: Callable[[str], None] | None = None


class Hit(NamedTuple):
    """One search result: the id and its similarity (higher is better)."""

    id: str
    score: float


def _new_hit(id: str, score: float) -> Hit:
    return tuple.__new__(Hit, (id, score))


@runtime_checkable
class VectorIndex(Protocol):
    """What retrievers need from a vector index."""

    @property
    def dim(self) -> int: ...

    def __len__(self) -> int: ...

    def __contains__(self, id: object) -> bool: ...

    def add(
        self, ids: Sequence[str], vectors: npt.ArrayLike, metadata: Sequence[Mapping[str, Any]] | None = None
    ) -> None: ...

    def upsert(
        self, ids: Sequence[str], vectors: npt.ArrayLike, metadata: Sequence[Mapping[str, Any]] | None = None
    ) -> None: ...

    def delete(self, ids: Iterable[str]) -> int: ...

    def search(self, vector: npt.ArrayLike, k: int = 10, *, filter: Filter | None = None) -> list[Hit]: ...

    def search_batch(self, vectors: npt.ArrayLike, k: int = 10, *, filter: Filter | None = None) -> list[list[Hit]]: ...

    def get_vectors(self, ids: Sequence[str]) -> FloatArray: ...

    def get_metadata(self, id: str) -> dict[str, Any]: ...


# --------------------------------------------------------------------------- filters
def _check_filter(flt: Filter) -> None:
    if not isinstance(flt, Mapping):
        raise InvalidInputError(
            f"a filter is a mapping of field -> value or {{'$op': value}}, got {type(flt).__name__}"
        )
    for field, cond in flt.items():
        if isinstance(cond, Mapping):
            bad = set(cond) - _OPS
            if bad or not cond:
                raise InvalidInputError(
                    f"filter on {field!r} uses unknown operators {sorted(bad) or '(none)'}; use {sorted(_OPS)}"
                )
            for op in ("$in", "$nin"):
                if op in cond and not isinstance(cond[op], (list, tuple, set, frozenset)):
                    raise InvalidInputError(f"filter {field!r}: {op} takes a list of values")


def _cmp(value: Any, op: str, arg: Any) -> bool:
    if op == "$eq":
        return bool(value == arg)
    if op == "$ne":
        return bool(value != arg)
    if op == "$in":
        return value in arg
    if op == "$nin":
        return value not in arg
    if value is None:
        return False
    try:
        if op == "$gt":
            return bool(value > arg)
        if op == "$gte":
            return bool(value >= arg)
        if op == "$lt":
            return bool(value < arg)
        return bool(value <= arg)
    except TypeError:
        return False


def matches_filter(metadata: Mapping[str, Any], flt: Filter) -> bool:
    """Whether one metadata mapping passes a filter (see the module docstring for the syntax)."""
    for field, cond in flt.items():
        value = metadata.get(field)
        if isinstance(cond, Mapping):
            if not all(_cmp(value, op, arg) for op, arg in cond.items()):
                return False
        elif value != cond:
            return False
    return True


# --------------------------------------------------------------------------- input checks
def check_ids(ids: Sequence[str]) -> list[str]:
    """``ids`` as a list, after checking each is a non-empty str and none repeats (shared by the indexes)."""
    if isinstance(ids, str):
        raise InvalidInputError("ids must be a sequence of strings, not one string")
    ids = list(ids)
    for i in ids:
        if not isinstance(i, str) or not i:
            raise InvalidInputError(f"every id must be a non-empty str, got {i!r}")
    if len(set(ids)) != len(ids):
        raise InvalidInputError("ids must be unique within one call")
    return ids


def query_matrix(vectors: npt.ArrayLike, k: int, dim: int) -> FloatArray:
    """``vectors`` as an ``(n, dim)`` float32 matrix of queries (one vector is one row), after checking ``k``."""
    if not isinstance(k, int) or k < 1:
        raise InvalidInputError(f"k must be a positive int, got {k!r}")
    q = np.asarray(vectors, dtype=np.float32)
    if q.ndim == 1:
        q = q[None, :]
    if q.ndim != 2 or q.shape[1] != dim:
        raise InvalidInputError(f"query vectors must have shape (n, {dim}), got {np.shape(vectors)}")
    return q


# --------------------------------------------------------------------------- base
class BaseVectorIndex(ABC):
    """Rows, ids, metadata, deletion, filters and atomic persistence; subclasses search."""

    kind_name: ClassVar[str] = "base"

    def __init__(self, dim: int) -> None:
        if not isinstance(dim, int) or dim < 1:
            raise InvalidInputError(f"dim must be a positive int, got {dim!r}")
        self._dim = dim
        self._vecs: FloatArray = np.empty((0, dim), dtype=np.float32)
        self._n = 0
        self._ids: list[str] = []
        self._row: dict[str, int] = {}
        self._meta: list[dict[str, Any]] = []
        self._alive: BoolArray = np.empty(0, dtype=bool)
        self._n_dead = 0
        self._lock = threading.RLock()
        self._columns: dict[str, npt.NDArray[Any]] = {}

    # ------------------------------------------------------------------ basics
    @property
    def dim(self) -> int:
        return self._dim

    def __len__(self) -> int:
        return self._n - self._n_dead

    def __contains__(self, id: object) -> bool:
        return id in self._row

    @property
    def ids(self) -> list[str]:
        """Live ids, in insertion order."""
        return [i for i, a in zip(self._ids, self._alive[: self._n].tolist(), strict=True) if a]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self._dim}, size={len(self)}, kind={self.kind_name!r})"

    def _as_matrix(self, vectors: npt.ArrayLike, what: str = "vectors") -> FloatArray:
        arr = np.asarray(vectors, dtype=np.float32)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != self._dim:
            raise InvalidInputError(f"{what} must have shape (n, {self._dim}), got {np.shape(vectors)}")
        if not np.isfinite(arr).all():
            raise InvalidInputError(f"{what} contain NaN or infinite values")
        return np.ascontiguousarray(arr)

    # ------------------------------------------------------------------ mutation
    def add(
        self, ids: Sequence[str], vectors: npt.ArrayLike, metadata: Sequence[Mapping[str, Any]] | None = None
    ) -> None:
        """Add new rows; an id that already exists raises (use :meth:`upsert` to replace)."""
        with self._lock:
            ids, vecs, metas = self._validate(ids, vectors, metadata)
            dup = [i for i in ids if i in self._row]
            if dup:
                raise InvalidInputError(f"ids already in the index: {dup[:5]}; use upsert() to replace them")
            self._append(ids, vecs, metas)

    def upsert(
        self, ids: Sequence[str], vectors: npt.ArrayLike, metadata: Sequence[Mapping[str, Any]] | None = None
    ) -> None:
        """Add rows, replacing any existing rows with the same ids."""
        with self._lock:
            ids, vecs, metas = self._validate(ids, vectors, metadata)
            self._delete_rows([self._row[i] for i in ids if i in self._row])
            self._append(ids, vecs, metas)
            self._maybe_compact()

    def delete(self, ids: Iterable[str]) -> int:
        """Delete rows by id; returns how many existed. Unknown ids are ignored."""
        reject_bare_string(ids, "delete(ids)", "delete([id])")
        with self._lock:
            rows = [self._row[i] for i in dict.fromkeys(ids) if i in self._row]
            self._delete_rows(rows)
            self._maybe_compact()
            return len(rows)

    def _validate(
        self, ids: Sequence[str], vectors: npt.ArrayLike, metadata: Sequence[Mapping[str, Any]] | None
    ) -> tuple[list[str], FloatArray, list[dict[str, Any]]]:
        ids = check_ids(ids)
        vecs = self._as_matrix(vectors) if ids else np.empty((0, self._dim), dtype=np.float32)
        if len(vecs) != len(ids):
            raise InvalidInputError(f"got {len(ids)} ids but {len(vecs)} vectors")
        if metadata is None:
            metas: list[dict[str, Any]] = [{} for _ in ids]
        else:
            metas = [dict(m) for m in metadata]
            if len(metas) != len(ids):
                raise InvalidInputError(f"got {len(ids)} ids but {len(metas)} metadata entries")
            for i, m in zip(ids, metas, strict=True):
                try:
                    canonical_json(m)
                except (TypeError, ValueError) as exc:
                    raise InvalidInputError(f"metadata of {i!r} is not JSON-serializable: {exc}") from exc
        return ids, vecs, metas

    def _append(self, ids: list[str], vecs: FloatArray, metas: list[dict[str, Any]]) -> None:
        if not ids:
            return
        start, end = self._n, self._n + len(ids)
        if end > len(self._vecs):
            cap = max(end, 2 * len(self._vecs), 64)
            grown = np.empty((cap, self._dim), dtype=np.float32)
            grown[: self._n] = self._vecs[: self._n]
            self._vecs = grown
            alive = np.zeros(cap, dtype=bool)
            alive[: self._n] = self._alive[: self._n]
            self._alive = alive
        self._vecs[start:end] = vecs
        self._alive[start:end] = True
        self._ids.extend(ids)
        self._meta.extend(metas)
        for r, i in enumerate(ids, start):
            self._row[i] = r
        self._n = end
        self._columns.clear()
        self._on_append(start, end)

    def _delete_rows(self, rows: list[int]) -> None:
        if not rows:
            return
        for r in rows:
            del self._row[self._ids[r]]
        self._alive[rows] = False
        self._n_dead += len(rows)
        self._on_delete(rows)

    def _maybe_compact(self) -> None:
        if self._n_dead > 1000 and self._n_dead > 0.25 * self._n:
            self.compact()

    def compact(self) -> None:
        """Drop deleted rows for good and rebuild the search structure."""
        with self._lock:
            keep = np.flatnonzero(self._alive[: self._n])
            self._vecs = np.ascontiguousarray(self._vecs[keep])
            self._ids = [self._ids[r] for r in keep.tolist()]
            self._meta = [self._meta[r] for r in keep.tolist()]
            self._n = len(keep)
            self._alive = np.ones(self._n, dtype=bool)
            self._n_dead = 0
            self._row = {i: r for r, i in enumerate(self._ids)}
            self._columns.clear()
            self._rebuild()

    # ------------------------------------------------------------------ hooks for subclasses
    def _on_append(self, start: int, end: int) -> None:  # noqa: B027 - optional hook
        """Rows ``start:end`` were appended."""

    def _on_delete(self, rows: list[int]) -> None:  # noqa: B027 - optional hook
        """Rows were marked deleted."""

    def _rebuild(self) -> None:  # noqa: B027 - optional hook
        """Rows were renumbered (compaction or load): rebuild any search structure."""

    @abstractmethod
    def _search_rows(self, queries: FloatArray, k: int, mask: BoolArray | None) -> tuple[FloatArray, IntArray]:
        """Top ``k`` rows per query as ``(scores, rows)``; row -1 pads. ``mask`` marks allowed rows."""

    # ------------------------------------------------------------------ search
    def _column(self, field: str) -> npt.NDArray[Any]:
        col = self._columns.get(field)
        if col is None:
            col = np.empty(self._n, dtype=object)
            col[:] = [m.get(field) for m in self._meta]
            self._columns[field] = col
        return col

    def _filter_mask(self, flt: Filter | None) -> BoolArray | None:
        """Allowed rows, or None when every row is allowed."""
        n = self._n
        mask: BoolArray | None = None if self._n_dead == 0 else self._alive[:n].copy()
        if not flt:
            return mask
        _check_filter(flt)
        out = self._alive[:n].copy() if mask is None else mask
        for field, cond in flt.items():
            col = self._column(field)
            conds = cond.items() if isinstance(cond, Mapping) else [("$eq", cond)]
            for op, arg in conds:
                if op == "$eq" and isinstance(arg, str):
                    out &= np.asarray(col == arg, dtype=bool)
                else:
                    out &= np.fromiter((_cmp(v, op, arg) for v in col), bool, n)
        return out

    def search(self, vector: npt.ArrayLike, k: int = 10, *, filter: Filter | None = None) -> list[Hit]:
        """The ``k`` most similar live rows to one vector (fewer if fewer pass the filter)."""
        if (
            filter is None
            and type(vector) is np.ndarray
            and vector.dtype == np.float32
            and vector.shape == (self._dim,)
            and type(k) is int
            and k > 0
            and math.isfinite(float(vector @ vector))
        ):  # the common case, kept thin: one query, no filter
            with self._lock:
                if self._n - self._n_dead == 0:
                    return []
                mask = self._alive[: self._n].copy() if self._n_dead else None
                scores, rows = self._search_rows(np.ascontiguousarray(vector[None, :]), min(k, self._n), mask)
                return self._hits(scores[0].tolist(), rows[0].tolist())
        return self.search_batch(vector, k, filter=filter)[0]

    def _hits(self, scores: list[float], rows: list[int]) -> list[Hit]:
        ids = self._ids
        if rows and rows[-1] >= 0 and min(rows) >= 0:
            return list(map(_new_hit, [ids[r] for r in rows], scores))
        return [_new_hit(ids[r], sc) for sc, r in zip(scores, rows, strict=True) if r >= 0]

    def search_batch(self, vectors: npt.ArrayLike, k: int = 10, *, filter: Filter | None = None) -> list[list[Hit]]:
        """:meth:`search` for each row of ``vectors``, in one call."""
        if not isinstance(k, int) or k < 1:
            raise InvalidInputError(f"k must be a positive int, got {k!r}")
        q = self._as_matrix(vectors, "query vectors")
        with self._lock:
            if len(self) == 0:
                return [[] for _ in range(len(q))]
            mask = self._filter_mask(filter)
            if mask is not None and not mask.any():
                return [[] for _ in range(len(q))]
            scores, rows = self._search_rows(q, min(k, self._n), mask)
            return [self._hits(srow, rrow) for srow, rrow in zip(scores.tolist(), rows.tolist(), strict=True)]

    def get_vectors(self, ids: Sequence[str]) -> FloatArray:
        """Stored vectors of ``ids`` (shape ``(len(ids), dim)``); an unknown id raises."""
        reject_bare_string(ids, "get_vectors(ids)", "get_vectors([id])")
        with self._lock:
            try:
                rows = [self._row[i] for i in ids]
            except KeyError as exc:
                raise InvalidInputError(f"id {exc.args[0]!r} is not in the index") from exc
            return self._vecs[rows].copy()

    def get_metadata(self, id: str) -> dict[str, Any]:
        """Metadata stored with ``id``."""
        try:
            return dict(self._meta[self._row[id]])
        except KeyError as exc:
            raise InvalidInputError(f"id {id!r} is not in the index") from exc

    # ------------------------------------------------------------------ persistence
    def _config(self) -> dict[str, Any]:
        return {}

    def _native_bytes(self) -> bytes:
        """A serialized search structure worth saving (empty when it is cheap to rebuild)."""
        return b""

    def _load_native(self, data: bytes) -> None:
        self._rebuild()

    def _file_parts(self) -> list[tuple[str, bytes]]:
        """The parts of the saved file but its trailer, in order (see the module docstring)."""
        with self._lock:
            if self._n_dead:
                self.compact()
            header = {
                "class": type(self).__name__,
                "dim": self._dim,
                "config": self._config(),
                "ids": self._ids,
                "metadata": self._meta,
            }
            header_bytes = json.dumps(header, ensure_ascii=False).encode()
            native = self._native_bytes()
            return [
                ("magic", _MAGIC),
                ("header", _npy(np.frombuffer(header_bytes, dtype=np.uint8))),
                ("vectors", _npy(self._vecs[: self._n])),
                ("native", _npy(np.frombuffer(native, dtype=np.uint8))),
            ]

    def to_bytes(self) -> bytes:
        """The whole file :meth:`save` writes, as bytes (:meth:`from_bytes` reads it back)."""
        parts = self._file_parts()
        digest = hashlib.sha256()
        for name, data in parts:
            digest.update(data)
            if _save_hook is not None and name != "magic":
                _save_hook(name)
        return b"".join([*(data for _, data in parts), _TRAILER, digest.hexdigest().encode(), b"\n"])

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the index to one file, atomically, with a SHA-256 trailer (see the module docstring)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        parts = self._file_parts()
        digest = hashlib.sha256()
        with atomic_write(target) as f:
            for name, data in parts:
                f.write(data)
                digest.update(data)
                if _save_hook is not None and name != "magic":
                    _save_hook(name)
            f.write(_TRAILER + digest.hexdigest().encode() + b"\n")
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> BaseVectorIndex:
        """Read an index written by :meth:`save` (of this class or, via :func:`load_index`, any).

        The SHA-256 trailer is checked first; a missing, truncated or altered file raises
        :class:`~ctxkit.errors.ResourceError`. Stale temporaries of a killed save of the same
        file are removed.
        """
        src = Path(path)
        remove_stale_temporaries(src)
        try:
            data = src.read_bytes()
        except FileNotFoundError as exc:
            raise ResourceError(f"no index file at {src}; build the index and save() it first") from exc
        except OSError as exc:
            raise ResourceError(f"{src} cannot be read as an index file ({exc}); pass the file save() wrote") from exc
        return cls.from_bytes(data, where=str(src))

    @classmethod
    def from_bytes(cls, data: bytes, *, where: str = "the index bytes") -> BaseVectorIndex:
        """Rebuild an index from what :meth:`to_bytes` (or a saved file) holds; ``where`` names it in errors."""
        header, vecs, native = _parse_file(data, where)
        klass = _INDEX_CLASSES.get(str(header.get("class")))
        if klass is None:
            raise ResourceError(f"{where} holds an index of unknown class {header.get('class')!r}")
        if cls is not BaseVectorIndex and not issubclass(klass, cls):
            raise ResourceError(f"{where} holds a {klass.__name__}, not a {cls.__name__}; use load_index()")
        try:
            obj = klass._from_config(int(header["dim"]), dict(header.get("config") or {}))
            ids = [str(i) for i in header["ids"]]
            metas = [dict(m) for m in header["metadata"]]
        except (KeyError, TypeError, ValueError, InvalidInputError) as exc:
            raise ResourceError(f"{where} has a malformed header ({exc!r}); rebuild the index") from exc
        if len(ids) != len(vecs) or len(metas) != len(ids) or vecs.shape[1:] != (obj.dim,):
            raise ResourceError(f"{where} is inconsistent (ids, metadata and vectors disagree); it cannot be loaded")
        obj._vecs = np.ascontiguousarray(vecs, dtype=np.float32)
        obj._n = len(ids)
        obj._ids = ids
        obj._meta = metas
        obj._alive = np.ones(len(ids), dtype=bool)
        obj._row = {i: r for r, i in enumerate(ids)}
        obj._load_native(native)
        return obj

    @classmethod
    def _from_config(cls, dim: int, config: dict[str, Any]) -> BaseVectorIndex:
        return cls(dim, **config)


def _npy(arr: npt.NDArray[Any]) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def _parse_file(data: bytes, where: str) -> tuple[dict[str, Any], FloatArray, bytes]:
    """Header, vectors and native bytes of a version 2 (checksum verified) or version 1 file."""
    if data.startswith(_MAGIC):
        body, trailer = data[:-_TRAILER_LEN], data[-_TRAILER_LEN:]
        if len(body) < len(_MAGIC) or not trailer.startswith(_TRAILER) or not trailer.endswith(b"\n"):
            raise ResourceError(f"{where} is corrupt or truncated (its SHA-256 trailer is missing); rebuild the index")
        if hashlib.sha256(body).hexdigest().encode() != trailer[len(_TRAILER) : -1]:
            raise ResourceError(
                f"{where} is corrupt or truncated: its SHA-256 does not match the checksum it was saved with "
                "(bytes changed on disk or in transit); rebuild the index or restore a good copy"
            )
        f = io.BytesIO(body)
        f.seek(len(_MAGIC))
    elif data.startswith(_MAGIC_V1):  # version 1: no checksum to verify
        f = io.BytesIO(data)
        f.seek(len(_MAGIC_V1))
    else:
        raise ResourceError(f"{where} is not a ctxkit index file")
    try:
        header = json.loads(np.load(f, allow_pickle=False).tobytes().decode())
        vecs = np.load(f, allow_pickle=False)
        native = np.load(f, allow_pickle=False).tobytes()
    except (ValueError, EOFError, OSError, UnicodeDecodeError) as exc:
        raise ResourceError(f"{where} is corrupt or truncated ({exc}); rebuild the index") from exc
    if not isinstance(header, dict) or vecs.ndim != 2:
        raise ResourceError(f"{where} is corrupt (malformed header or vectors); rebuild the index")
    return header, vecs, native


def load_index(path: str | os.PathLike[str]) -> BaseVectorIndex:
    """Load any index saved by :meth:`BaseVectorIndex.save`."""
    return BaseVectorIndex.load(path)


# --------------------------------------------------------------------------- NumPy
def _exact_rows(base: FloatArray, queries: FloatArray, k: int, mask: BoolArray | None) -> tuple[FloatArray, IntArray]:
    """Exact top-``k`` inner products of ``queries`` against the rows of ``base`` allowed by ``mask``."""
    rows_allowed = None
    if mask is not None:
        rows_allowed = np.flatnonzero(mask)
        base = base[rows_allowed]
    k = min(k, len(base))
    sims = queries @ base.T
    if k < sims.shape[1]:
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(sims.shape[1]), (len(queries), sims.shape[1]))
    top = np.take_along_axis(sims, part, axis=1)
    order = np.argsort(-top, axis=1, kind="stable")
    idx = np.take_along_axis(part, order, axis=1)
    scores = np.take_along_axis(top, order, axis=1).astype(np.float32)
    rows = idx if rows_allowed is None else rows_allowed[idx]
    return scores, rows.astype(np.int64)


class NumpyIndex(BaseVectorIndex):
    """Exact inner-product search with NumPy only (one matrix product per batch)."""

    kind_name = "numpy"

    def _search_rows(self, queries: FloatArray, k: int, mask: BoolArray | None) -> tuple[FloatArray, IntArray]:
        return _exact_rows(self._vecs[: self._n], queries, k, mask)


# --------------------------------------------------------------------------- FAISS
def _faiss() -> Any:
    return require("faiss", feature="FaissIndex", extra="retrieval", package="faiss-cpu")


class FaissIndex(BaseVectorIndex):
    """FAISS inner-product search; exact below ``approx_threshold`` rows, HNSW above (``kind="auto"``).

    ``hnsw_m``, ``ef_construction`` and ``ef_search`` tune HNSW; ``nlist``/``nprobe`` tune
    IVF and IVF-PQ (``nlist`` defaults to about ``4*sqrt(n)``); ``pq_m`` (a divisor of ``dim``,
    bytes per code), ``train_sample`` (rows drawn, with a fixed seed, to train IVF-PQ) and
    ``rerank`` (re-score ``rerank * k`` IVF-PQ candidates exactly on the float rows) tune IVF-PQ.
    Filtered searches that leave fewer than ``exact_below`` rows are answered exactly on those rows.
    """

    kind_name = "faiss"

    def __init__(
        self,
        dim: int,
        *,
        kind: IndexKind = "auto",
        approx_threshold: int = 20_000,
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 128,
        nlist: int | None = None,
        nprobe: int = 32,
        exact_below: int = 4096,
        pq_m: int | None = None,
        train_sample: int = 65_536,
        rerank: int = 1,
    ) -> None:
        if kind not in ("auto", "flat", "hnsw", "ivf", "ivfpq"):
            raise InvalidInputError(f"kind must be 'auto', 'flat', 'hnsw', 'ivf' or 'ivfpq', not {kind!r}")
        if pq_m is not None and (pq_m < 1 or dim % pq_m):
            raise InvalidInputError(f"pq_m must divide dim={dim}, got {pq_m}")
        if train_sample < 1:
            raise InvalidInputError(f"train_sample must be positive, got {train_sample}")
        if rerank < 1:
            raise InvalidInputError(f"rerank must be at least 1, got {rerank}")
        super().__init__(dim)
        self.kind: IndexKind = kind
        self.approx_threshold = approx_threshold
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.nlist = nlist
        self.nprobe = nprobe
        self.exact_below = exact_below
        self.pq_m = pq_m
        self.train_sample = train_sample
        self.rerank = rerank
        self._faiss = _faiss()
        self._index: Any = None
        self._built_kind: str = ""
        self._indexed = 0  # rows [0, _indexed) are in the FAISS structure

    def __repr__(self) -> str:
        return f"FaissIndex(dim={self._dim}, size={len(self)}, kind={self.kind!r}, active={self.active_kind!r})"

    @property
    def active_kind(self) -> str:
        """The FAISS structure in use now: ``"flat"``, ``"hnsw"`` or ``"ivf"``."""
        return self._built_kind or self._want_kind()

    def structure_bytes_per_vector(self) -> float:
        """Bytes the FAISS search structure holds per vector (its serialized size over its rows)."""
        with self._lock:
            self._sync()
            if self._n == 0:
                return 0.0
            return len(self._faiss.serialize_index(self._index)) / self._n

    @property
    def faiss_index(self) -> Any:
        """The underlying FAISS index (row numbers are its labels), built up to date."""
        with self._lock:
            self._sync()
            return self._index

    def _want_kind(self) -> str:
        if self.kind != "auto":
            return self.kind
        return "hnsw" if self._n >= self.approx_threshold else "flat"

    def _config(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "approx_threshold": self.approx_threshold,
            "hnsw_m": self.hnsw_m,
            "ef_construction": self.ef_construction,
            "ef_search": self.ef_search,
            "nlist": self.nlist,
            "nprobe": self.nprobe,
            "exact_below": self.exact_below,
            "pq_m": self.pq_m,
            "train_sample": self.train_sample,
            "rerank": self.rerank,
        }

    def _new_index(self, kind: str) -> Any:
        faiss = self._faiss
        if kind == "flat":
            return faiss.IndexFlatIP(self._dim)
        if kind == "hnsw":
            idx = faiss.IndexHNSWFlat(self._dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            idx.hnsw.efConstruction = self.ef_construction
            idx.hnsw.efSearch = self.ef_search
            return idx
        n_train = min(self._n, self.train_sample)
        nlist = self.nlist or max(1, min(int(4 * math.sqrt(max(self._n, 1))), n_train // 39 or 1))
        quant = faiss.IndexFlatIP(self._dim)
        if kind == "ivfpq":
            if self._n < 256:
                raise InvalidInputError(f"IVF-PQ needs at least 256 rows to train its codebooks, got {self._n}")
            m = self.pq_m or self._dim // 4
            idx = faiss.IndexIVFPQ(quant, self._dim, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
        else:
            idx = faiss.IndexIVFFlat(quant, self._dim, nlist, faiss.METRIC_INNER_PRODUCT)
        if self._n > n_train:
            pick = np.sort(np.random.default_rng(0).choice(self._n, n_train, replace=False))
            idx.train(np.ascontiguousarray(self._vecs[pick]))
        else:
            idx.train(self._vecs[: self._n])
        idx.nprobe = min(self.nprobe, nlist)
        return idx

    def _rebuild(self) -> None:
        self._index = None
        self._built_kind = ""
        self._indexed = 0

    def _sync(self) -> None:
        """Bring the FAISS structure up to date with the rows (lazily, before a search)."""
        want = self._want_kind()
        if self._index is None or want != self._built_kind or (want in ("ivf", "ivfpq") and self._indexed == 0):
            self._index = self._new_index(want)
            self._built_kind = want
            self._indexed = 0
        if self._indexed < self._n:
            self._index.add(self._vecs[self._indexed : self._n])
            self._indexed = self._n

    def _params(self, sel: Any) -> Any:
        faiss = self._faiss
        if self._built_kind == "hnsw":
            return faiss.SearchParametersHNSW(sel=sel, efSearch=self.ef_search)
        if self._built_kind in ("ivf", "ivfpq"):
            return faiss.SearchParametersIVF(sel=sel, nprobe=self._index.nprobe)
        return faiss.SearchParameters(sel=sel)

    def _search_rows(self, queries: FloatArray, k: int, mask: BoolArray | None) -> tuple[FloatArray, IntArray]:
        self._sync()
        if self._built_kind == "ivfpq" and self.rerank > 1:
            return self._reranked(queries, k, mask)
        return self._search_native(queries, k, mask)

    def _reranked(self, queries: FloatArray, k: int, mask: BoolArray | None) -> tuple[FloatArray, IntArray]:
        """IVF-PQ candidates (``rerank * k`` of them) re-scored exactly on the float rows."""
        _, cand = self._search_native(queries, min(self._n, k * self.rerank), mask)
        valid = cand >= 0
        exact = np.einsum("qkd,qd->qk", self._vecs[np.where(valid, cand, 0)], queries)
        exact = np.where(valid, exact, -np.inf).astype(np.float32)
        order = np.argsort(-exact, axis=1, kind="stable")[:, :k]
        scores = np.take_along_axis(exact, order, axis=1)
        rows = np.where(np.isfinite(scores), np.take_along_axis(cand, order, axis=1), -1)
        return scores.astype(np.float32), rows.astype(np.int64)

    def _search_native(self, queries: FloatArray, k: int, mask: BoolArray | None) -> tuple[FloatArray, IntArray]:
        if mask is None:
            scores, rows = self._index.search(queries, k)
            return scores, rows
        allowed = int(mask.sum())
        if self._built_kind != "flat" and (allowed <= self.exact_below or k >= allowed):
            return _exact_rows(self._vecs[: self._n], queries, k, mask)
        bits = np.packbits(mask, bitorder="little")
        sel = self._faiss.IDSelectorBitmap(len(mask), self._faiss.swig_ptr(bits))
        scores, rows = self._index.search(queries, k, params=self._params(sel))
        return scores, rows

    def _native_bytes(self) -> bytes:
        if self._want_kind() == "flat":
            return b""  # cheaper to rebuild from the vectors than to store twice
        self._sync()
        return bytes(self._faiss.serialize_index(self._index).tobytes())

    def _load_native(self, data: bytes) -> None:
        self._rebuild()
        if data:
            idx = self._faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
            if idx.ntotal == self._n and idx.d == self._dim:
                self._index = idx
                self._built_kind = self._want_kind()
                self._indexed = self._n
                if self._built_kind == "hnsw":
                    idx.hnsw.efSearch = self.ef_search


_INDEX_CLASSES: dict[str, type[BaseVectorIndex]] = {"NumpyIndex": NumpyIndex, "FaissIndex": FaissIndex}
