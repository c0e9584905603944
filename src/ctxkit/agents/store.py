"""Content-addressed stores for offloaded tool results.

An offloaded tool result is kept byte-exact under the sha256 of its UTF-8 text, so the
same text always gets the same id, a stored text can be verified on the way out, and
writing it twice is harmless. :class:`FileOffloadStore` (the default) keeps one file per
result under a directory, written atomically (a temporary file in the same directory,
then ``os.replace``), so a crash never leaves a half-written result behind and several
processes may share the directory. :class:`MemoryOffloadStore` keeps them in a dict.

Both implement :class:`OffloadStore`: ``put(text) -> id``, ``get(id_or_prefix) -> text``
and ``ids()``. :func:`search_offloaded` searches the stored texts line by line.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Protocol, runtime_checkable

from pydantic import ConfigDict

from ctxkit._model import CtxkitModel
from ctxkit.errors import InvalidInputError, ResourceError

__all__ = [
    "FileOffloadStore",
    "MemoryOffloadStore",
    "OffloadStore",
    "SearchHit",
    "content_id",
    "resolve_id",
    "search_offloaded",
]

_HEX = re.compile(r"^[0-9a-f]{6,64}$")
MIN_PREFIX = 6


def content_id(text: str) -> str:
    """The content address of ``text``: the hex sha256 of its UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@runtime_checkable
class OffloadStore(Protocol):
    """Where offloaded tool results live: content-addressed, exact."""

    def put(self, text: str) -> str:
        """Store ``text``; return its id (:func:`content_id`)."""
        ...

    def get(self, id: str) -> str:
        """The exact text stored under ``id`` (the full id or a unique prefix of at least 6 hex digits)."""
        ...

    def ids(self) -> list[str]:
        """Every stored id, sorted."""
        ...


def _clean_id(id: object) -> str:
    if not isinstance(id, str):
        raise InvalidInputError(f"an offload id is a hex string, not {type(id).__name__}")
    key = id.strip().lower().removeprefix("sha256:")
    if not _HEX.match(key):
        raise InvalidInputError(
            f"{id!r} is not an offload id; pass the hex id shown in the stub (at least {MIN_PREFIX} hex digits)"
        )
    return key


def resolve_id(id: str, known: list[str]) -> str:
    """The one id in ``known`` that ``id`` names (in full or as a unique prefix)."""
    key = _clean_id(id)
    hits = [k for k in known if k.startswith(key)]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise InvalidInputError(
            f"no offloaded tool result has id {id!r}; use an id shown in a '[ctxkit offloaded ...]' stub"
        )
    raise InvalidInputError(f"id prefix {id!r} names {len(hits)} offloaded results; pass more of the id")


class MemoryOffloadStore:
    """Offloaded results in a dict (one process, gone when it ends)."""

    def __init__(self) -> None:
        self._texts: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"MemoryOffloadStore({len(self._texts)} results)"

    def put(self, text: str) -> str:
        if not isinstance(text, str):
            raise InvalidInputError(f"only text can be offloaded, not {type(text).__name__}")
        key = content_id(text)
        self._texts.setdefault(key, text)
        return key

    def get(self, id: str) -> str:
        return self._texts[resolve_id(id, list(self._texts))]

    def ids(self) -> list[str]:
        return sorted(self._texts)


class FileOffloadStore:
    """Offloaded results as files ``<root>/<id[:2]>/<id>.txt``, written atomically, verified when read.

    ``root`` defaults to a new temporary directory; pass a directory to keep results
    across processes (a session resumed later can still expand its stubs).
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="ctxkit-offload-"))
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidInputError(
                f"cannot create the offload directory {self.root}: {exc}; pass a writable root"
            ) from exc

    def __repr__(self) -> str:
        return f"FileOffloadStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.txt"

    def put(self, text: str) -> str:
        if not isinstance(text, str):
            raise InvalidInputError(f"only text can be offloaded, not {type(text).__name__}")
        key = content_id(text)
        path = self._path(key)
        if path.exists():
            return key  # content-addressed: the same bytes are already there
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".txt")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(text.encode("utf-8"))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return key

    def ids(self) -> list[str]:
        return sorted(p.stem for p in self.root.glob("??/*.txt") if not p.name.startswith("."))

    def get(self, id: str) -> str:
        key = _clean_id(id)
        path = self._path(key) if len(key) == 64 else None
        if path is None or not path.exists():
            key = resolve_id(key, self.ids())
            path = self._path(key)
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != key:
            raise ResourceError(
                f"offloaded result {path} does not match its sha256 id (the file was changed or corrupted); "
                "delete it and re-run the tool"
            )
        return data.decode("utf-8")


class SearchHit(CtxkitModel):
    """One matching line of an offloaded result."""

    model_config = ConfigDict(frozen=True)

    id: str
    line: int
    text: str


def search_offloaded(store: OffloadStore, query: str, *, max_hits: int = 20) -> list[SearchHit]:
    """Lines of offloaded results holding every word of ``query`` (case-insensitive), oldest id order."""
    if not isinstance(query, str) or not query.strip():
        raise InvalidInputError("search needs a non-empty query string")
    if isinstance(max_hits, bool) or not isinstance(max_hits, int) or max_hits < 1:
        raise InvalidInputError(f"max_hits needs an int >= 1, got {max_hits!r}")
    words = [w.lower() for w in query.split()]
    hits: list[SearchHit] = []
    for key in store.ids():
        for n, line in enumerate(store.get(key).splitlines(), start=1):
            low = line.lower()
            if all(w in low for w in words):
                hits.append(SearchHit(id=key, line=n, text=line.strip()))
                if len(hits) >= max_hits:
                    return hits
    return hits
