"""BM25 lexical search with ``bm25s`` (extra ``retrieval``), with add/delete by id and filters.

``bm25s`` builds a static sparse index; :class:`BM25Index` keeps the texts and rebuilds
it lazily on the first search after a change, so many adds cost one build. Texts are
tokenized by ``bm25s.tokenize`` (lower-cased words, English stop words removed).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ctxkit._inputs import reject_bare_string
from ctxkit._optional import require
from ctxkit.errors import InvalidInputError
from ctxkit.retrieval.index import Filter, Hit, _check_filter, matches_filter

__all__ = ["BM25Index"]


_NO_TERMS = object()  # the model of texts with no indexable term; an empty vocabulary means it is never called


def _bm25s() -> Any:
    return require("bm25s", feature="BM25Index", extra="retrieval")


class BM25Index:
    """Okapi BM25 over chunk texts (``k1``, ``b`` as in Lucene's variant)."""

    def __init__(self, *, k1: float = 1.5, b: float = 0.75, stopwords: str | list[str] | None = "en") -> None:
        self.k1 = k1
        self.b = b
        self.stopwords = stopwords
        self._bm25s = _bm25s()
        self._texts: dict[str, str] = {}
        self._meta: dict[str, dict[str, Any]] = {}
        self._order: list[str] = []
        self._model: Any = None
        self._vocab: dict[str, int] = {}
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._texts)

    def __contains__(self, id: object) -> bool:
        return id in self._texts

    def __repr__(self) -> str:
        return f"BM25Index(size={len(self)}, k1={self.k1}, b={self.b})"

    def upsert(
        self, ids: Sequence[str], texts: Sequence[str], metadata: Sequence[Mapping[str, Any]] | None = None
    ) -> None:
        """Add or replace texts by id."""
        if isinstance(ids, str) or isinstance(texts, str):
            raise InvalidInputError("ids and texts must be sequences, not single strings")
        if len(ids) != len(texts) or (metadata is not None and len(metadata) != len(ids)):
            raise InvalidInputError("ids, texts and metadata must have the same length")
        with self._lock:
            for n, (i, t) in enumerate(zip(ids, texts, strict=True)):
                if not isinstance(i, str) or not i or not isinstance(t, str):
                    raise InvalidInputError(f"item {n}: ids must be non-empty str and texts str")
                self._texts[i] = t
                self._meta[i] = dict(metadata[n]) if metadata is not None else {}
            self._model = None

    add = upsert

    def delete(self, ids: Iterable[str]) -> int:
        """Delete texts by id; returns how many existed."""
        reject_bare_string(ids, "delete(ids)", "delete([id])")
        with self._lock:
            n = 0
            for i in ids:
                if self._texts.pop(i, None) is not None:
                    self._meta.pop(i, None)
                    n += 1
            if n:
                self._model = None
            return n

    def _tokenize(self, texts: list[str]) -> list[list[str]]:
        out = self._bm25s.tokenize(texts, stopwords=self.stopwords, return_ids=False, show_progress=False)
        return [list(t) for t in out]

    def _build(self) -> None:
        self._order = list(self._texts)
        tokens = self._tokenize([self._texts[i] for i in self._order])
        if not any(tokens):  # nothing but stop words and punctuation: no term can match (bm25s divides by 0)
            self._model = _NO_TERMS
            self._vocab = {}
            return
        model = self._bm25s.BM25(k1=self.k1, b=self.b)
        with np.errstate(divide="ignore", invalid="ignore"):  # every text all stop words: average length 0
            model.index(tokens, show_progress=False)
        self._model = model
        self._vocab = dict(model.vocab_dict)

    def scores(self, query: str) -> tuple[list[str], np.ndarray[Any, np.dtype[np.float32]]]:
        """Every id (index order) and its BM25 score for ``query``."""
        with self._lock:
            if self._model is None and self._texts:
                self._build()
            if not self._texts:
                return [], np.zeros(0, dtype=np.float32)
            terms = [t for t in self._tokenize([query])[0] if t in self._vocab]
            if not terms:
                return self._order, np.zeros(len(self._order), dtype=np.float32)
            with np.errstate(divide="ignore", invalid="ignore"):
                got = np.asarray(self._model.get_scores(terms), dtype=np.float32)
            return self._order, np.nan_to_num(got, nan=0.0, posinf=0.0, neginf=0.0)

    def search(self, query: str, k: int = 10, *, filter: Filter | None = None) -> list[Hit]:
        """The ``k`` best-scoring texts with a positive score (fewer when fewer match)."""
        if not isinstance(k, int) or k < 1:
            raise InvalidInputError(f"k must be a positive int, got {k!r}")
        if not isinstance(query, str):
            raise InvalidInputError(f"query must be a str, got {type(query).__name__}")
        if filter:
            _check_filter(filter)
        with self._lock:
            order, sc = self.scores(query)
            if not order:
                return []
            if filter:
                ok = np.fromiter((matches_filter(self._meta[i], filter) for i in order), bool, len(order))
                sc = np.where(ok, sc, 0.0)
            k = min(k, len(order))
            top = np.argpartition(-sc, k - 1)[:k] if k < len(sc) else np.arange(len(sc))
            top = top[np.argsort(-sc[top], kind="stable")]
            return [Hit(order[r], float(sc[r])) for r in top.tolist() if sc[r] > 0]
