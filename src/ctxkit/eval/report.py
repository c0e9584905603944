"""Statistics of a run: accuracy with a bootstrap 95% interval, paired tests, tokens, latency, list-price cost.

* :func:`bootstrap_ci` — percentile bootstrap (numpy, seeded) of a mean;
* :func:`paired_bootstrap_diff` — the accuracy difference of two pipelines on the same tasks
  with a paired bootstrap interval (tasks resampled together);
* :func:`mcnemar` — McNemar's test on the discordant pairs: exact binomial (scipy's
  ``binomtest`` when installed, else the same sum with :func:`math.comb`), or the
  continuity-corrected chi-square (1 degree of freedom: ``p = erfc(sqrt(x / 2))``);
* :class:`Report` — one :class:`PipelineReport` per (pipeline, model), comparisons against a
  baseline, :meth:`Report.table`, :meth:`Report._repr_html_` and :meth:`Report.pareto` (matplotlib,
  extra ``viz``).

Costs are :class:`~decimal.Decimal` list prices; when any call's price is unknown the pipeline's
cost is ``None``, never 0. Cost per successful task is total cost / successes.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import ConfigDict

from ctxkit._model import CtxkitModel
from ctxkit._optional import require
from ctxkit.errors import InvalidInputError

__all__ = [
    "Comparison",
    "McNemarResult",
    "PipelineReport",
    "Report",
    "bootstrap_ci",
    "build_report",
    "mcnemar",
    "paired_bootstrap_diff",
]


def bootstrap_ci(
    values: Sequence[float] | npt.NDArray[Any], *, n_boot: int = 10_000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap ``(low, high)`` interval of the mean of ``values`` (``1 - alpha`` coverage)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise InvalidInputError("bootstrap_ci needs at least one value")
    if not 0 < alpha < 1:
        raise InvalidInputError(f"alpha must be in (0, 1), got {alpha}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    means = x[idx].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def paired_bootstrap_diff(
    a: Sequence[float] | npt.NDArray[Any],
    b: Sequence[float] | npt.NDArray[Any],
    *,
    n_boot: int = 10_000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``mean(a) - mean(b)`` on paired samples, with its paired percentile-bootstrap interval."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.size == 0:
        raise InvalidInputError("paired_bootstrap_diff needs two non-empty samples of the same length")
    lo, hi = bootstrap_ci(x - y, n_boot=n_boot, alpha=alpha, seed=seed)
    return float((x - y).mean()), lo, hi


class McNemarResult(CtxkitModel):
    """McNemar's test: ``b`` = only A right, ``c`` = only B right."""

    model_config = ConfigDict(frozen=True)

    b: int
    c: int
    statistic: float
    p_value: float
    method: Literal["exact", "chi2"]


def _binom_two_sided(k: int, n: int) -> float:
    try:
        from scipy.stats import binomtest  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        tail = sum(math.comb(n, i) for i in range(k + 1)) / (1 << n)
        return min(1.0, 2 * tail)
    p: float = float(binomtest(k, n, 0.5).pvalue)
    return p


def mcnemar(
    a: Sequence[bool] | npt.NDArray[Any], b: Sequence[bool] | npt.NDArray[Any], *, exact: bool = True
) -> McNemarResult:
    """McNemar's test of paired successes ``a`` and ``b`` (same tasks, same order)."""
    x, y = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if x.shape != y.shape:
        raise InvalidInputError("mcnemar needs two samples of the same length (the same tasks)")
    only_a = int((x & ~y).sum())
    only_b = int((~x & y).sum())
    n = only_a + only_b
    if n == 0:
        return McNemarResult(b=0, c=0, statistic=0.0, p_value=1.0, method="exact" if exact else "chi2")
    if exact:
        return McNemarResult(
            b=only_a,
            c=only_b,
            statistic=float(min(only_a, only_b)),
            p_value=_binom_two_sided(min(only_a, only_b), n),
            method="exact",
        )
    stat = (abs(only_a - only_b) - 1) ** 2 / n
    return McNemarResult(b=only_a, c=only_b, statistic=stat, p_value=math.erfc(math.sqrt(stat / 2)), method="chi2")


class PipelineReport(CtxkitModel):
    """One pipeline on one model over the run's tasks."""

    model_config = ConfigDict(frozen=True)

    pipeline: str
    model: str
    tasks: int
    successes: int
    accuracy: float
    accuracy_ci: tuple[float, float]
    exact_match: float | None
    token_f1: float | None
    contains_gold: float | None
    errors: int
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    mean_input_tokens: float
    priced_input_tokens: int | None
    price_as: str | None
    total_cost: Decimal | None
    cost_per_task: Decimal | None
    cost_per_success: Decimal | None
    p50_latency_s: float
    p95_latency_s: float
    p50_model_s: float
    compute_s: float
    escalation_rate: float
    evidence_in_context: float | None
    answer_in_context: float | None


class Comparison(CtxkitModel):
    """Pipeline ``a`` against ``b`` on the same tasks and model."""

    model_config = ConfigDict(frozen=True)

    a: str
    b: str
    model: str
    tasks: int
    accuracy_diff: float
    diff_ci: tuple[float, float]
    mcnemar: McNemarResult
    input_tokens_ratio: float | None
    cost_ratio: float | None
    cost_per_success_ratio: float | None


def _ratio(x: Decimal | float | int | None, y: Decimal | float | int | None) -> float | None:
    if x is None or y is None or not y:
        return None
    return float(Decimal(str(x)) / Decimal(str(y)))


def _mean(vals: list[float]) -> float | None:
    return float(np.mean(vals)) if vals else None


def _pipeline_report(recs: list[Any], seed: int) -> PipelineReport:
    ok = np.array([r.success for r in recs], dtype=np.float64)
    costs = [r.cost for r in recs]
    total = None if any(c is None for c in costs) else sum((c for c in costs if c is not None), Decimal(0))
    succ = int(ok.sum())
    lat = np.array([r.total_s for r in recs])
    model_lat = np.array([r.latency_s for r in recs])
    ev = [float(r.evidence_in_context) for r in recs if r.evidence_in_context is not None]
    ans = [float(r.answer_in_context) for r in recs if r.answer_in_context is not None]
    priced = [r.priced_input_tokens for r in recs]
    prices = {r.price_as for r in recs}
    lo, hi = bootstrap_ci(ok, seed=seed)
    return PipelineReport(
        pipeline=recs[0].pipeline,
        model=recs[0].model,
        tasks=len(recs),
        successes=succ,
        accuracy=float(ok.mean()),
        accuracy_ci=(lo, hi),
        exact_match=_mean([r.scores["exact_match"] for r in recs if "exact_match" in r.scores]),
        token_f1=_mean([r.scores["token_f1"] for r in recs if "token_f1" in r.scores]),
        contains_gold=_mean([r.scores["contains_gold"] for r in recs if "contains_gold" in r.scores]),
        errors=sum(r.error is not None for r in recs),
        input_tokens=sum(r.input_tokens for r in recs),
        cached_tokens=sum(r.cached_tokens for r in recs),
        output_tokens=sum(r.output_tokens for r in recs),
        mean_input_tokens=float(np.mean([r.input_tokens for r in recs])),
        priced_input_tokens=None if any(p is None for p in priced) else sum(p for p in priced if p is not None),
        price_as=next(iter(prices)) if len(prices) == 1 else None,
        total_cost=total,
        cost_per_task=None if total is None else total / len(recs),
        cost_per_success=None if total is None or succ == 0 else total / succ,
        p50_latency_s=float(np.percentile(lat, 50)),
        p95_latency_s=float(np.percentile(lat, 95)),
        p50_model_s=float(np.percentile(model_lat, 50)),
        compute_s=float(lat.sum()),
        escalation_rate=float(np.mean([r.escalated for r in recs])),
        evidence_in_context=_mean(ev),
        answer_in_context=_mean(ans),
    )


def build_report(records: Sequence[Any], *, baseline: str | None = None, seed: int = 0, exact: bool = True) -> Report:
    """Per (pipeline, model) statistics over the tasks every pipeline of that model answered, and comparisons.

    Comparisons pair each pipeline with ``baseline`` (default: the first pipeline) on the
    same model, over their common tasks.
    """
    if not records:
        raise InvalidInputError("no records to report on")
    by: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        by.setdefault((r.pipeline, r.model), {})[r.task_id] = r
    reports = [_pipeline_report(list(v.values()), seed) for v in by.values()]
    comps: list[Comparison] = []
    models = list(dict.fromkeys(m for _, m in by))
    for model in models:
        names = [p for p, m in by if m == model]
        base = baseline if baseline in names else names[0]
        for name in names:
            if name == base:
                continue
            a, b = by[(name, model)], by[(base, model)]
            common = [t for t in a if t in b]
            if not common:
                continue
            xa = np.array([a[t].success for t in common])
            xb = np.array([b[t].success for t in common])
            diff, lo, hi = paired_bootstrap_diff(xa.astype(float), xb.astype(float), seed=seed)
            ra = _pipeline_report([a[t] for t in common], seed)
            rb = _pipeline_report([b[t] for t in common], seed)
            comps.append(
                Comparison(
                    a=name,
                    b=base,
                    model=model,
                    tasks=len(common),
                    accuracy_diff=diff,
                    diff_ci=(lo, hi),
                    mcnemar=mcnemar(xa, xb, exact=exact),
                    input_tokens_ratio=_ratio(ra.input_tokens, rb.input_tokens),
                    cost_ratio=_ratio(ra.total_cost, rb.total_cost),
                    cost_per_success_ratio=_ratio(ra.cost_per_success, rb.cost_per_success),
                )
            )
    return Report(pipelines=tuple(reports), comparisons=tuple(comps))


def _money(d: Decimal | None) -> str:
    return "unknown" if d is None else f"${d:.6f}"


class Report(CtxkitModel):
    """Every pipeline's figures and the comparisons; ``str()`` is a text table, notebooks render HTML."""

    model_config = ConfigDict(frozen=True)

    pipelines: tuple[PipelineReport, ...]
    comparisons: tuple[Comparison, ...] = ()

    def get(self, pipeline: str, model: str | None = None) -> PipelineReport:
        for p in self.pipelines:
            if p.pipeline == pipeline and (model is None or p.model == model):
                return p
        raise InvalidInputError(f"no pipeline {pipeline!r} in this report; have {[p.pipeline for p in self.pipelines]}")

    def comparison(self, a: str, b: str | None = None) -> Comparison:
        for c in self.comparisons:
            if c.a == a and (b is None or c.b == b):
                return c
        raise InvalidInputError(f"no comparison of {a!r} in this report")

    def _rows(self) -> list[list[str]]:
        rows = [
            [
                "pipeline",
                "model",
                "n",
                "accuracy [95% CI]",
                "EM",
                "F1",
                "in tokens/task",
                "cost/task",
                "cost/success",
                "p50 s",
                "p95 s",
                "evidence in ctx",
            ]
        ]
        for p in self.pipelines:
            rows.append(
                [
                    p.pipeline,
                    p.model,
                    str(p.tasks),
                    f"{p.accuracy:.3f} [{p.accuracy_ci[0]:.3f}, {p.accuracy_ci[1]:.3f}]",
                    "-" if p.exact_match is None else f"{p.exact_match:.3f}",
                    "-" if p.token_f1 is None else f"{p.token_f1:.3f}",
                    f"{p.mean_input_tokens:.0f}",
                    _money(p.cost_per_task),
                    _money(p.cost_per_success),
                    f"{p.p50_latency_s:.2f}",
                    f"{p.p95_latency_s:.2f}",
                    "-" if p.evidence_in_context is None else f"{p.evidence_in_context:.3f}",
                ]
            )
        return rows

    def _comparison_rows(self) -> list[list[str]]:
        rows = [["pipeline", "vs", "n", "Δ accuracy [95% CI]", "McNemar p", "input tokens ×", "cost/success ×"]]
        for c in self.comparisons:
            rows.append(
                [
                    c.a,
                    c.b,
                    str(c.tasks),
                    f"{c.accuracy_diff:+.3f} [{c.diff_ci[0]:+.3f}, {c.diff_ci[1]:+.3f}]",
                    f"{c.mcnemar.p_value:.3g}",
                    "-" if c.input_tokens_ratio is None else f"{c.input_tokens_ratio:.3f}",
                    "-" if c.cost_per_success_ratio is None else f"{c.cost_per_success_ratio:.3f}",
                ]
            )
        return rows

    def table(self) -> str:
        out = []
        for rows in (self._rows(), self._comparison_rows()):
            if len(rows) == 1:
                continue
            widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
            out.append("\n".join("  ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)) for r in rows))
        return "\n\n".join(out)

    def markdown(self) -> str:
        """The two tables as GitHub markdown."""
        out = []
        for rows in (self._rows(), self._comparison_rows()):
            if len(rows) == 1:
                continue
            lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
            lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
            out.append("\n".join(lines))
        return "\n\n".join(out)

    def __str__(self) -> str:
        return self.table()

    def _repr_html_(self) -> str:
        parts = []
        for rows in (self._rows(), self._comparison_rows()):
            if len(rows) == 1:
                continue
            head = "".join(f"<th>{html.escape(h)}</th>" for h in rows[0])
            body = "".join("<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in r) + "</tr>" for r in rows[1:])
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        return "<div class='ctxkit-eval-report'>" + "".join(parts) + "</div>"

    def pareto_front(self) -> list[PipelineReport]:
        """Pipelines no other beats on both accuracy and cost per task (known costs only), cheapest first."""
        known = [p for p in self.pipelines if p.cost_per_task is not None]
        front = [
            p
            for p in known
            if not any(
                q is not p
                and q.accuracy >= p.accuracy
                and q.cost_per_task is not None
                and p.cost_per_task is not None
                and q.cost_per_task <= p.cost_per_task
                and (q.accuracy > p.accuracy or q.cost_per_task < p.cost_per_task)
                for q in known
            )
        ]
        return sorted(front, key=lambda p: (p.cost_per_task or Decimal(0), -p.accuracy))

    def pareto(self, path: str | Path, *, title: str = "accuracy vs cost per task") -> Path:
        """Save the accuracy-vs-cost scatter (95% intervals as error bars, the Pareto front as a line)."""

        matplotlib = require("matplotlib", feature="the Pareto plot", extra="viz")
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        known = [p for p in self.pipelines if p.cost_per_task is not None]
        if not known:
            raise InvalidInputError("no pipeline has a known cost; price the run (price_as=...) to plot it")
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for p in known:
            x = float(p.cost_per_task or 0) * 1000
            err = [[p.accuracy - p.accuracy_ci[0]], [p.accuracy_ci[1] - p.accuracy]]
            ax.errorbar([x], [p.accuracy], yerr=err, fmt="o", capsize=3)
            ax.annotate(
                (f"{p.pipeline} ({p.model})" if len({q.model for q in known}) > 1 else p.pipeline) + f", n={p.tasks}",
                (x, p.accuracy),
                textcoords="offset points",
                xytext=(5, 5),
                fontsize=8,
            )
        front = self.pareto_front()
        ax.plot([float(p.cost_per_task or 0) * 1000 for p in front], [p.accuracy for p in front], "--", color="gray")
        price = {p.price_as for p in known}
        ax.set_xlabel("list-price cost per 1,000 tasks (USD" + (f", {price.pop()}" if len(price) == 1 else "") + ")")
        ax.set_ylabel("accuracy (95% bootstrap CI)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=120)
        plt.close(fig)
        return out
