"""Choose which items fit a token capacity, maximizing their total value.

Two packers, both vectorized with NumPy:

* :func:`greedy_pack` — by value per token (ties: higher value, then input order),
  then a fill pass; O(n log n).
* :func:`knapsack_pack` — the exact 0/1 knapsack by dynamic programming over
  capacity, one vectorized row per item; used when ``n * capacity`` is small.

:func:`pack` runs both where the exact one is affordable and keeps the better.

The exact packer's table has one byte per (item, capacity) cell. Forced with
``exact=True``, it refuses a table over ``max_cells`` (default
:data:`EXACT_MAX_CELLS`, 64 million cells, about 64 MB) with
:class:`~ctxkit.errors.InvalidInputError` instead of taking that memory; raise the limit
when the memory is there, or leave ``exact=None`` to get the exact packer only where it
is cheap.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from ctxkit.errors import InvalidInputError

__all__ = ["EXACT_MAX_CELLS", "KNAPSACK_MAX_CELLS", "greedy_pack", "knapsack_pack", "pack"]

#: with ``exact=None`` the exact packer runs when n_items * (capacity + 1) is at most this many cells
KNAPSACK_MAX_CELLS = 4_000_000
#: the largest table (cells, one byte each) the exact packer builds when forced; a bigger one raises
EXACT_MAX_CELLS = 64_000_000


def _check_cells(n: int, capacity: int, max_cells: int) -> None:
    cells = n * (max(capacity, 0) + 1)
    if cells > max_cells:
        raise InvalidInputError(
            f"exact packing of {n} items into {capacity} tokens needs a table of {cells:,} cells "
            f"(about {cells / 1e6:,.0f} MB), over the limit of {max_cells:,}: raise the limit "
            "(Assembler(exact_packing_max_cells=...) or pack(max_cells=...)) if that memory is there, pass "
            "fewer items, or use exact_packing=None (exact only where it is cheap, else greedy)"
        )


def _arrays(values: Sequence[float], costs: Sequence[int]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    v = np.asarray(values, dtype=np.float64)
    c = np.asarray(costs, dtype=np.int64)
    if v.shape != c.shape or v.ndim != 1:
        raise ValueError("values and costs must be 1-d sequences of the same length")
    if (c < 0).any():
        raise ValueError("costs must be non-negative")
    return v, c


def greedy_pack(values: Sequence[float], costs: Sequence[int], capacity: int) -> list[int]:
    """Indices chosen greedily by value density; every item that still fits is taken."""
    v, c = _arrays(values, costs)
    if v.size == 0 or capacity <= 0:
        return [int(i) for i in np.flatnonzero((c == 0) & (v > 0))] if v.size else []
    density = v / np.maximum(c, 1)
    order = np.lexsort((np.arange(v.size), -v, -density))
    sorted_costs = c[order]
    chosen = np.zeros(v.size, dtype=bool)
    room = capacity
    # Fast path: the prefix of the density order that fits as a whole.
    cum = np.cumsum(sorted_costs)
    k = int(np.searchsorted(cum, capacity, side="right"))
    chosen[order[:k]] = True
    room -= int(cum[k - 1]) if k else 0
    for idx in order[k:]:  # fill the remaining room with whatever still fits
        cost = int(c[idx])
        if cost <= room:
            chosen[idx] = True
            room -= cost
    chosen &= v > 0
    return [int(i) for i in np.flatnonzero(chosen)]


def knapsack_pack(
    values: Sequence[float], costs: Sequence[int], capacity: int, *, max_cells: int = EXACT_MAX_CELLS
) -> list[int]:
    """Indices of the exact best subset (0/1 knapsack over integer token costs).

    Raises :class:`~ctxkit.errors.InvalidInputError` when the table would exceed ``max_cells``.
    """
    v, c = _arrays(values, costs)
    n = v.size
    if n == 0 or capacity < 0:
        return []
    cap = int(capacity)
    _check_cells(n, cap, max_cells)
    best = np.zeros(cap + 1, dtype=np.float64)
    take = np.zeros((n, cap + 1), dtype=bool)
    for i in range(n):
        w, val = int(c[i]), float(v[i])
        if val <= 0 or w > cap:
            continue
        candidate = best[: cap + 1 - w] + val
        tail = best[w:]
        np.greater(candidate, tail, out=take[i, w:])
        np.maximum(tail, candidate, out=tail)
    chosen: list[int] = []
    room = cap
    for i in range(n - 1, -1, -1):
        if take[i, room]:
            chosen.append(i)
            room -= int(c[i])
    chosen.reverse()
    return chosen


def pack(
    values: Sequence[float],
    costs: Sequence[int],
    capacity: int,
    *,
    exact: bool | None = None,
    max_cells: int = EXACT_MAX_CELLS,
) -> list[int]:
    """The better of greedy and (when affordable, or forced with ``exact``) the exact knapsack.

    Forced exact packing whose table would exceed ``max_cells`` raises
    :class:`~ctxkit.errors.InvalidInputError` (see the module docstring).
    """
    greedy = greedy_pack(values, costs, capacity)
    use_exact = exact if exact is not None else len(values) * (max(capacity, 0) + 1) <= KNAPSACK_MAX_CELLS
    if not use_exact or len(values) == 0:
        return greedy
    v, c = _arrays(values, costs)
    if int(c[(v > 0) & (c <= capacity)].sum()) <= capacity:  # all worth taking fits: greedy took it all
        return greedy
    optimal = knapsack_pack(values, costs, capacity, max_cells=max_cells)
    return optimal if v[optimal].sum() > v[greedy].sum() + 1e-12 else greedy
