"""Ranking: reciprocal rank fusion, maximal marginal relevance, near-duplicate removal.

All three work on whole arrays: the candidate-by-candidate similarity matrix is one
matrix product, and the only Python loops run over *selected items* (at most ``k``
steps), never over candidate pairs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from ctxkit.errors import InvalidInputError

__all__ = ["mmr", "near_duplicates", "rrf_fuse"]

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


def rrf_fuse(
    rankings: Sequence[Sequence[str]], *, k: int = 60, weights: Sequence[float] | None = None
) -> list[tuple[str, float]]:
    """Reciprocal rank fusion: ``score(d) = sum_i w_i / (k + rank_i(d))`` with ranks from 1.

    Each ranking is a list of ids, best first. Returns ``(id, score)`` best first; ties
    keep the order in which ids first appear.
    """
    if k < 0:
        raise InvalidInputError(f"the RRF constant k must be >= 0, got {k}")
    if weights is None:
        weights = [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise InvalidInputError(f"got {len(rankings)} rankings but {len(weights)} weights")
    index: dict[str, int] = {}
    cols: list[IntArray] = []
    for ranking in rankings:
        cols.append(np.fromiter((index.setdefault(i, len(index)) for i in ranking), np.int64, len(ranking)))
    if not index:
        return []
    scores = np.zeros(len(index), dtype=np.float64)
    for w, col in zip(weights, cols, strict=True):
        np.add.at(scores, col, w / (k + np.arange(1, len(col) + 1, dtype=np.float64)))
    order = np.argsort(-scores, kind="stable")
    ids = list(index)
    return [(ids[j], float(scores[j])) for j in order.tolist()]


def _unit(x: npt.ArrayLike, name: str) -> FloatArray:
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim != 2:
        raise InvalidInputError(f"{name} must be a 2-D array (n, dim), got shape {arr.shape}")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    out: FloatArray = (arr / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
    return out


def mmr(
    query: npt.ArrayLike,
    candidates: npt.ArrayLike,
    k: int,
    *,
    lambda_: float = 0.7,
    relevance: npt.ArrayLike | None = None,
) -> list[int]:
    """Maximal marginal relevance: pick ``k`` candidate indices, relevant yet unlike each other.

    Each step takes ``argmax(lambda_ * rel - (1 - lambda_) * max_sim_to_picked)``, with
    ``rel`` the cosine to ``query`` unless ``relevance`` gives scores (rescaled to [0, 1]).
    Returns indices into ``candidates`` in pick order.
    """
    if not 0.0 <= lambda_ <= 1.0:
        raise InvalidInputError(f"lambda_ must be in [0, 1], got {lambda_}")
    cand = _unit(candidates, "candidates")
    n = len(cand)
    k = min(k, n)
    if k <= 0:
        return []
    if relevance is None:
        q = _unit(np.asarray(query, dtype=np.float32).reshape(1, -1), "query")[0]
        rel = cand @ q
    else:
        rel = np.asarray(relevance, dtype=np.float32).reshape(-1)
        if len(rel) != n:
            raise InvalidInputError(f"relevance has {len(rel)} scores for {n} candidates")
        span = float(rel.max() - rel.min())
        rel = (rel - rel.min()) / span if span > 0 else np.ones_like(rel)
    sim = cand @ cand.T  # one product: every pair at once
    max_sim = np.full(n, -np.inf, dtype=np.float32)
    picked = np.zeros(n, dtype=bool)
    out: list[int] = []
    for step in range(k):
        score = rel.astype(np.float32) if step == 0 else lambda_ * rel - (1.0 - lambda_) * max_sim
        score = np.where(picked, -np.inf, score)
        j = int(np.argmax(score))
        out.append(j)
        picked[j] = True
        max_sim = np.maximum(max_sim, sim[:, j])
    return out


def near_duplicates(
    vectors: npt.ArrayLike, *, threshold: float = 0.95, order: Sequence[int] | None = None
) -> list[int]:
    """Indices to keep after dropping near-duplicates (cosine >= ``threshold``).

    Items are visited in ``order`` (default: as given, so pass best-first); an item is
    dropped when it is a near-duplicate of an item already kept.
    """
    vecs = _unit(vectors, "vectors")
    n = len(vecs)
    if n == 0:
        return []
    idx = np.arange(n) if order is None else np.asarray(order, dtype=np.int64)
    vecs = vecs[idx]
    dup = (vecs @ vecs.T) >= threshold  # one product for every pair
    np.fill_diagonal(dup, False)
    dup = np.triu(dup)  # only later items can be dropped in favour of earlier ones
    if not dup.any():
        return [int(i) for i in idx]
    dropped = np.zeros(n, dtype=bool)
    for i in np.flatnonzero(dup.any(axis=1)).tolist():  # rows that have any later duplicate
        if not dropped[i]:
            dropped |= dup[i]
    kept: list[int] = [int(i) for i in idx[~dropped]]
    return kept
