"""Fit a router's threshold on labelled outcomes to hit a target quality or a target cost.

Convention: a router's score estimates P(the weak model is enough); a request goes to
the strong model when ``score < threshold``. :func:`operating_curve` sweeps every
distinct threshold and gives quality and cost at each; :func:`calibrate` picks the
cheapest point that meets ``target_quality`` or the best point within ``target_cost``.
:func:`apgr` is the average performance gap recovered over the cost range (RouteLLM's
metric; random routing scores 0.5).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from pydantic import ConfigDict

from ctxkit._model import CtxkitModel
from ctxkit.errors import InvalidInputError

__all__ = ["Calibration", "OperatingPoint", "apgr", "calibrate", "operating_curve"]

ArrayLike = Sequence[float] | npt.NDArray[np.float64]


class OperatingPoint(CtxkitModel):
    """Quality and cost at one threshold. ``cost`` is in the units of the per-prompt costs given."""

    model_config = ConfigDict(frozen=True)

    threshold: float
    strong_share: float
    quality: float
    cost: float
    cost_ratio: float  # cost / cost of always-strong


class Calibration(CtxkitModel):
    """The chosen threshold, the point it gives on the calibration sample, and the whole curve."""

    model_config = ConfigDict(frozen=True)

    threshold: float
    point: OperatingPoint
    target: str
    met: bool
    weak_quality: float
    strong_quality: float
    curve: tuple[OperatingPoint, ...]


def operating_curve(
    scores: ArrayLike,
    weak_ok: Sequence[bool] | npt.NDArray[np.bool_],
    strong_ok: Sequence[bool] | npt.NDArray[np.bool_],
    *,
    weak_cost: float | ArrayLike = 0.0,
    strong_cost: float | ArrayLike = 1.0,
) -> list[OperatingPoint]:
    """Quality and cost at every distinct threshold, from all-weak to all-strong.

    Per-prompt costs may be arrays (priced from each prompt's tokens) or constants.
    Ties in score move together, as a threshold cannot split them.
    """
    s = np.asarray(scores, dtype=np.float64)
    w = np.asarray(weak_ok, dtype=np.float64)
    g = np.asarray(strong_ok, dtype=np.float64)
    n = len(s)
    if n == 0 or len(w) != n or len(g) != n:
        raise InvalidInputError("scores, weak_ok and strong_ok must be non-empty and of equal length")
    cw = np.broadcast_to(np.asarray(weak_cost, dtype=np.float64), (n,))
    cs = np.broadcast_to(np.asarray(strong_cost, dtype=np.float64), (n,))
    order = np.argsort(s, kind="stable")
    s, w, g, cw, cs = s[order], w[order], g[order], cw[order], cs[order]
    # escalate the j lowest-scoring prompts, j = 0..n
    gain_q = np.concatenate([[0.0], np.cumsum(g - w)])
    gain_c = np.concatenate([[0.0], np.cumsum(cs - cw)])
    base_q, base_c = w.sum(), cw.sum()
    all_strong = float(cs.sum()) or 1.0
    valid = [0] + [j for j in range(1, n) if s[j] > s[j - 1]] + [n]
    points = []
    for j in valid:
        thr = float(s[j]) if j < n else float(s[-1]) + 1e-9
        cost = float(base_c + gain_c[j])
        points.append(
            OperatingPoint(
                threshold=thr,
                strong_share=j / n,
                quality=float((base_q + gain_q[j]) / n),
                cost=cost,
                cost_ratio=cost / all_strong,
            )
        )
    return points


def calibrate(
    scores: ArrayLike,
    weak_ok: Sequence[bool] | npt.NDArray[np.bool_],
    strong_ok: Sequence[bool] | npt.NDArray[np.bool_],
    *,
    target_quality: float | None = None,
    target_quality_ratio: float | None = None,
    target_cost_ratio: float | None = None,
    weak_cost: float | ArrayLike = 0.0,
    strong_cost: float | ArrayLike = 1.0,
) -> Calibration:
    """Choose a threshold on a labelled sample. Give exactly one target:

    * ``target_quality`` — an accuracy to reach, cheapest threshold that does;
    * ``target_quality_ratio`` — a share of the strong model's accuracy (0.95 = 95%);
    * ``target_cost_ratio`` — a cost cap as a share of always-strong; best quality under it.

    When the target cannot be met, the closest point is returned with ``met=False``.
    """
    given = [t for t in (target_quality, target_quality_ratio, target_cost_ratio) if t is not None]
    if len(given) != 1:
        raise InvalidInputError("give exactly one of target_quality, target_quality_ratio, target_cost_ratio")
    curve = operating_curve(scores, weak_ok, strong_ok, weak_cost=weak_cost, strong_cost=strong_cost)
    weak_q = float(np.mean(np.asarray(weak_ok, dtype=np.float64)))
    strong_q = float(np.mean(np.asarray(strong_ok, dtype=np.float64)))
    if target_cost_ratio is not None:
        within = [p for p in curve if p.cost_ratio <= target_cost_ratio + 1e-12]
        met = bool(within)
        point = max(within, key=lambda p: (p.quality, -p.cost)) if within else min(curve, key=lambda p: p.cost)
        target = f"cost <= {target_cost_ratio:.3f} x always-strong"
    else:
        goal = target_quality if target_quality is not None else strong_q * float(target_quality_ratio or 0)
        ok = [p for p in curve if p.quality >= goal - 1e-12]
        met = bool(ok)
        point = min(ok, key=lambda p: (p.cost, -p.quality)) if ok else max(curve, key=lambda p: p.quality)
        target = f"quality >= {goal:.4f}"
    return Calibration(
        threshold=point.threshold,
        point=point,
        target=target,
        met=met,
        weak_quality=weak_q,
        strong_quality=strong_q,
        curve=tuple(curve),
    )


def apgr(
    curve: Sequence[OperatingPoint], weak_quality: float, strong_quality: float, *, x: str = "strong_share"
) -> float:
    """Average performance gap recovered: area under PGR over the cost axis ``x`` in [0, 1] (trapezoids).

    PGR = (quality - weak) / (strong - weak). With ``x="strong_share"`` (RouteLLM's
    definition, share of calls to the strong model) random routing scores 0.5.
    """
    gap = strong_quality - weak_quality
    if gap <= 0:
        raise InvalidInputError("the strong model must beat the weak one on this sample for a gap to recover")
    xs = np.array([getattr(p, x) for p in curve], dtype=np.float64)
    ys = np.array([(p.quality - weak_quality) / gap for p in curve], dtype=np.float64)
    order = np.argsort(xs, kind="stable")
    xs, ys = xs[order], ys[order]
    span = xs[-1] - xs[0]
    if span <= 0:
        return float(ys.mean())
    return float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2) / span)
