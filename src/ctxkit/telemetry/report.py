"""Reports people read: per workflow and model, with savings against a baseline."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict, Field

from ctxkit._model import CtxkitModel
from ctxkit._optional import require
from ctxkit.errors import InvalidInputError, UnknownNameError
from ctxkit.telemetry.record import CallRecord
from ctxkit.usage import Usage

if TYPE_CHECKING:
    from ctxkit.pricing import PriceBook

__all__ = ["Report", "ReportRow", "Savings", "build_report", "percentile"]

_ZERO = Decimal(0)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) by linear interpolation between closest ranks; ``None`` if empty.

    Raises :class:`~ctxkit.errors.InvalidInputError` for ``q`` outside [0, 100] and for values that are
    not finite numbers.
    """

    if isinstance(q, bool) or not isinstance(q, int | float) or not 0 <= q <= 100:
        raise InvalidInputError(f"percentile q must be a number from 0 to 100, got {q!r}")
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise InvalidInputError(f"percentile needs a sequence of numbers, not {type(values).__name__}")
    values = list(values)
    if not values:
        return None
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        raise InvalidInputError(
            "percentile needs finite numbers; drop the missing (None/NaN) and infinite values first"
        )
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = math.ceil(pos)
    if lo == hi:
        return xs[lo]  # exactly a data point
    frac = pos - lo
    # weighted form: no overflow between huge values; clamped so rounding never leaves [xs[lo], xs[hi]]
    mixed = xs[lo] * (1.0 - frac) + xs[hi] * frac
    return min(max(mixed, xs[lo]), xs[hi])


def _sum_known(values: Iterable[Decimal | None]) -> tuple[Decimal, int]:
    total, unknown = _ZERO, 0
    for v in values:
        if v is None:
            unknown += 1
        else:
            total += v
    return total, unknown


class Savings(CtxkitModel):
    """What the same calls would have cost without ctxkit, step by step.

    ``actual``: what was paid. ``uncached``: the same tokens with no prompt cache.
    ``uncompressed``: also with the input as it was before compression.
    ``baseline``: also on ``baseline_model`` (the flagship). Each step is ``None`` if
    a price is unknown. ``from_caching = uncached - actual`` (negative when cache
    writes cost more than the reads saved), ``from_compression = uncompressed - uncached``,
    ``from_routing = baseline - uncompressed``. ``response_cache`` is what the calls answered by the
    response cache would have cost (the saved cost of each hit; hits add nothing to the other steps):
    ``total = baseline + response_cache - actual``.

    **A failed task saves nothing.** The calls of a task whose last verdict is a failure
    (``success=False``) count at what they cost in every step: their cost is spent, and what the
    baseline would have charged is reported apart (``failed_tasks``, ``failed_baseline``) instead of
    being claimed as savings. **A local model's call is not free:** ``local_calls`` counts calls to
    models recorded as local (``CallRecord.local``), ``local_as_baseline`` is what the same prompts would cost on the
    baseline model (``None`` without one, or if a price is unknown), and ``local_compute_s`` is their
    summed latency, the compute the user paid for with their own hardware.
    """

    model_config = ConfigDict(frozen=True)

    baseline_model: str | None
    actual: Decimal | None
    uncached: Decimal | None
    uncompressed: Decimal | None
    baseline: Decimal | None
    response_cache: Decimal | None = Decimal(0)
    failed_tasks: int = 0
    failed_baseline: Decimal | None = Decimal(0)
    local_calls: int = 0
    local_as_baseline: Decimal | None = None
    local_compute_s: float = 0.0

    @staticmethod
    def _diff(a: Decimal | None, b: Decimal | None) -> Decimal | None:
        return None if a is None or b is None else a - b

    @property
    def from_caching(self) -> Decimal | None:
        return self._diff(self.uncached, self.actual)

    @property
    def from_compression(self) -> Decimal | None:
        return self._diff(self.uncompressed, self.uncached)

    @property
    def from_routing(self) -> Decimal | None:
        return self._diff(self.baseline, self.uncompressed)

    @property
    def from_response_cache(self) -> Decimal | None:
        return self.response_cache

    @property
    def total(self) -> Decimal | None:
        if self.baseline is None or self.response_cache is None:
            return None
        return self._diff(self.baseline + self.response_cache, self.actual)

    @property
    def share(self) -> float | None:
        """Savings as a fraction of the baseline cost (response-cache hits at their saved cost included)."""
        if self.total is None or self.baseline is None or self.response_cache is None:
            return None
        whole = self.baseline + self.response_cache
        return None if not whole else float(self.total / whole)


class ReportRow(CtxkitModel):
    """Aggregates of the calls of one (workflow, model) group; ``"*"`` stands for all."""

    model_config = ConfigDict(frozen=True)

    workflow: str
    model: str
    calls: int
    errors: int
    calls_without_usage: int
    usage: Usage
    cost: Decimal | None = Field(description="total cost; None if any call's price is unknown")
    priced_cost: Decimal = Field(description="sum of the known costs")
    unpriced_calls: int
    latency_p50_s: float | None
    latency_p95_s: float | None
    ttft_p50_s: float | None
    ttft_p95_s: float | None
    tasks: int
    successful_tasks: int
    tasks_with_verdict: int
    escalations: int
    cache_hits: int
    compression_ratio: float | None
    retrieval_hit_rate: float | None
    savings: Savings

    @property
    def cached_share(self) -> float | None:
        """Share of input tokens read from the cache."""
        return None if self.usage.input_tokens == 0 else self.usage.cache_read_tokens / self.usage.input_tokens

    @property
    def escalation_rate(self) -> float | None:
        return None if self.calls == 0 else self.escalations / self.calls

    @property
    def success_rate(self) -> float | None:
        return None if self.tasks_with_verdict == 0 else self.successful_tasks / self.tasks_with_verdict

    @property
    def cost_per_successful_task(self) -> Decimal | None:
        """All the cost of the group divided by the tasks that succeeded (failures' cost included)."""
        if self.cost is None or self.successful_tasks == 0:
            return None
        return self.cost / self.successful_tasks

    def as_dict(self) -> dict[str, Any]:
        """A flat dict of every figure (for tables and DataFrames)."""
        s = self.savings
        return {
            "workflow": self.workflow,
            "model": self.model,
            "calls": self.calls,
            "errors": self.errors,
            "input_tokens": self.usage.input_tokens,
            "cache_read_tokens": self.usage.cache_read_tokens,
            "cache_write_tokens": self.usage.cache_write_tokens,
            "output_tokens": self.usage.output_tokens,
            "reasoning_tokens": self.usage.reasoning_tokens,
            "cached_share": self.cached_share,
            "cost": self.cost,
            "priced_cost": self.priced_cost,
            "unpriced_calls": self.unpriced_calls,
            "latency_p50_s": self.latency_p50_s,
            "latency_p95_s": self.latency_p95_s,
            "ttft_p50_s": self.ttft_p50_s,
            "ttft_p95_s": self.ttft_p95_s,
            "tasks": self.tasks,
            "successful_tasks": self.successful_tasks,
            "success_rate": self.success_rate,
            "cost_per_successful_task": self.cost_per_successful_task,
            "escalation_rate": self.escalation_rate,
            "compression_ratio": self.compression_ratio,
            "retrieval_hit_rate": self.retrieval_hit_rate,
            "baseline_cost": s.baseline,
            "savings": s.total,
            "savings_share": s.share,
            "response_cache_savings": s.from_response_cache,
            "failed_tasks_not_counted": s.failed_tasks,
            "failed_tasks_baseline_cost": s.failed_baseline,
            "local_calls": s.local_calls,
            "local_as_baseline_cost": s.local_as_baseline,
            "local_compute_s": s.local_compute_s,
        }


def _failed_tasks(records: Sequence[CallRecord]) -> set[str]:
    """Tasks whose last verdict is a failure (a task is its ``task_id``, or the call alone)."""
    last: dict[str, bool] = {}
    for r in records:
        if r.success is not None:
            last[r.task_id or r.id] = r.success
    return {t for t, ok in last.items() if not ok}


def _savings(records: Sequence[CallRecord], book: PriceBook, baseline_model: str | None) -> Savings:
    actual: list[Decimal | None] = []
    uncached: list[Decimal | None] = []
    uncompressed: list[Decimal | None] = []
    baseline: list[Decimal | None] = []
    hits: list[Decimal | None] = []
    failed_baseline: list[Decimal | None] = []
    local_as_baseline: list[Decimal | None] = []
    local_s = 0.0
    failed = _failed_tasks(records)
    steps = (actual, uncached, uncompressed, baseline)
    for r in records:
        if r.response_cache is not None:  # answered by the response cache: its own bucket
            hits.append(r.saved_cost)
            for lst in steps:
                lst.append(r.cost if lst is actual else _ZERO)
            continue
        if not r.usage_reported:
            for lst in steps:
                lst.append(None)
            continue
        u = r.usage
        plain = Usage(input_tokens=u.input_tokens, output_tokens=u.output_tokens, reasoning_tokens=u.reasoning_tokens)
        full_in = max(r.uncompressed_input_tokens or 0, u.input_tokens)
        raw = Usage(input_tokens=full_in, output_tokens=u.output_tokens, reasoning_tokens=u.reasoning_tokens)
        on_baseline = book.cost(raw, baseline_model or r.model)
        if r.local:  # the record says so (from the price book unless the caller set it)
            local_s += r.latency_s or 0.0
            local_as_baseline.append(book.cost(plain, baseline_model) if baseline_model else None)
        if (r.task_id or r.id) in failed:  # spent, and nothing saved
            failed_baseline.append(on_baseline)
            for lst in steps:
                lst.append(r.cost)
            continue
        actual.append(r.cost)
        uncached.append(book.cost(plain, r.model))
        uncompressed.append(book.cost(raw, r.model))
        baseline.append(on_baseline)

    def total(xs: list[Decimal | None]) -> Decimal | None:
        s, unknown = _sum_known(xs)
        return None if unknown else s

    return Savings(
        baseline_model=baseline_model,
        actual=total(actual),
        uncached=total(uncached),
        uncompressed=total(uncompressed),
        baseline=total(baseline),
        response_cache=total(hits),
        failed_tasks=len(failed),
        failed_baseline=total(failed_baseline),
        local_calls=len(local_as_baseline),
        local_as_baseline=total(local_as_baseline) if baseline_model else None,
        local_compute_s=local_s,
    )


def _row(workflow: str, model: str, records: Sequence[CallRecord], book: PriceBook, baseline: str | None) -> ReportRow:
    usage = Usage()
    for r in records:
        usage = usage + r.usage
    priced, unpriced = _sum_known(r.cost for r in records)
    latencies = [r.latency_s for r in records if r.latency_s is not None]
    ttfts = [r.ttft_s for r in records if r.ttft_s is not None]
    tasks: dict[str, list[CallRecord]] = {}
    for r in records:
        tasks.setdefault(r.task_id or r.id, []).append(r)
    verdicts = [[r.success for r in rs if r.success is not None] for rs in tasks.values()]
    with_verdict = [v for v in verdicts if v]
    succeeded = sum(1 for v in with_verdict if v[-1])
    comp = [r for r in records if r.uncompressed_input_tokens is not None and r.usage.input_tokens]
    comp_ratio = (
        sum(r.uncompressed_input_tokens or 0 for r in comp) / sum(r.usage.input_tokens for r in comp) if comp else None
    )
    hits = [r.retrieval_hit for r in records if r.retrieval_hit is not None]
    return ReportRow(
        workflow=workflow,
        model=model,
        calls=len(records),
        errors=sum(1 for r in records if r.error is not None),
        calls_without_usage=sum(1 for r in records if not r.usage_reported),
        usage=usage,
        cost=None if unpriced else priced,
        priced_cost=priced,
        unpriced_calls=unpriced,
        latency_p50_s=percentile(latencies, 50),
        latency_p95_s=percentile(latencies, 95),
        ttft_p50_s=percentile(ttfts, 50),
        ttft_p95_s=percentile(ttfts, 95),
        tasks=len(tasks),
        successful_tasks=succeeded,
        tasks_with_verdict=len(with_verdict),
        escalations=sum(1 for r in records if r.escalated),
        cache_hits=sum(1 for r in records if r.cache_hit),
        compression_ratio=comp_ratio,
        retrieval_hit_rate=(sum(hits) / len(hits)) if hits else None,
        savings=_savings(records, book, baseline),
    )


def _fmt_money(v: Decimal | None, places: int = 6) -> str:
    if v is None:
        return "unknown"
    return f"${v:.{places}f}"


def _fmt(v: float | None, spec: str = ".2f", suffix: str = "") -> str:
    return "-" if v is None else f"{v:{spec}}{suffix}"


class Report(CtxkitModel):
    """Per (workflow, model) rows, a total row, and savings against a baseline model."""

    model_config = ConfigDict(frozen=True)

    rows: tuple[ReportRow, ...]
    total: ReportRow
    baseline_model: str | None
    generated_at: datetime
    prices_as_of: str | None = None

    @property
    def savings(self) -> Savings:
        return self.total.savings

    def row(self, workflow: str, model: str) -> ReportRow:
        for r in self.rows:
            if r.workflow == workflow and r.model == model:
                return r

        raise UnknownNameError("report row", f"{workflow}/{model}", [f"{r.workflow}/{r.model}" for r in self.rows])

    def _table(self) -> list[list[str]]:
        head = [
            "workflow",
            "model",
            "calls",
            "in tok",
            "cached",
            "out tok",
            "cost",
            "p50 s",
            "p95 s",
            "$/success",
            "escal.",
            "compr.",
            "saved",
        ]
        out = [head]
        for r in [*self.rows, self.total]:
            cost = (
                _fmt_money(r.cost)
                if r.cost is not None or not r.unpriced_calls
                else (f">={_fmt_money(r.priced_cost)} ({r.unpriced_calls} unpriced)")
            )
            out.append(
                [
                    r.workflow,
                    r.model,
                    str(r.calls),
                    str(r.usage.input_tokens),
                    _fmt(r.cached_share, ".0%"),
                    str(r.usage.output_tokens),
                    cost,
                    _fmt(r.latency_p50_s, ".3f"),
                    _fmt(r.latency_p95_s, ".3f"),
                    _fmt_money(r.cost_per_successful_task) if r.successful_tasks else "-",
                    _fmt(r.escalation_rate, ".0%"),
                    _fmt(r.compression_ratio, ".2f", "x"),
                    _fmt_money(r.savings.total) if r.savings.total is not None else "-",
                ]
            )
        return out

    def __str__(self) -> str:
        table = self._table()
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        lines = [
            "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
            for row in table
        ]
        rule = "-" * len(lines[0])
        lines.insert(1, rule)
        lines.insert(len(lines) - 1, rule)
        lines.append("")
        lines.append(self._savings_line())
        if self.prices_as_of:
            lines.append(f"Prices as of {self.prices_as_of}.")
        return "\n".join(lines)

    def _savings_line(self) -> str:
        s = self.savings
        base = self.baseline_model or "the same models"
        return (
            f"Savings vs uncompressed, uncached calls on {base}: {_fmt_money(s.total)} of {_fmt_money(s.baseline)}"
            + (f" ({s.share:.1%})" if s.share is not None else "")
            + f" — caching {_fmt_money(s.from_caching)}, compression {_fmt_money(s.from_compression)}, "
            f"routing {_fmt_money(s.from_routing)}"
            + (f", response cache {_fmt_money(s.from_response_cache)}." if s.response_cache != _ZERO else ".")
            + (
                f" Not counted as savings: {s.failed_tasks} failed task(s), which would have cost "
                f"{_fmt_money(s.failed_baseline)} on {base}."
                if s.failed_tasks
                else ""
            )
            + (
                f" Local calls: {s.local_calls}, not free: "
                + (
                    f"their prompts would cost {_fmt_money(s.local_as_baseline)} on {base}"
                    if self.baseline_model
                    else "report(baseline_model=...) prices their prompts on a paid model"
                )
                + f"; they took {s.local_compute_s:.1f} s of local compute."
                if s.local_calls
                else ""
            )
        )

    def _repr_html_(self) -> str:
        table = self._table()
        costs = [r.priced_cost for r in self.rows]
        top = max(costs, default=_ZERO) or Decimal(1)
        head = "".join(f"<th>{html.escape(c)}</th>" for c in table[0]) + "<th>cost share</th>"
        body = []
        for cells, r in zip(table[1:], [*self.rows, self.total], strict=True):
            is_total = r is self.total
            width = 0.0 if is_total else float(r.priced_cost / top) * 100
            bar = "" if is_total else f'<div style="background:#4C78A8;height:10px;width:{width:.1f}%"></div>'
            style = ' style="font-weight:bold;border-top:1px solid #999"' if is_total else ""
            tds = "".join(f"<td>{html.escape(c)}</td>" for c in cells)
            body.append(f"<tr{style}>{tds}<td style='min-width:80px'>{bar}</td></tr>")
        note = html.escape(self._savings_line())
        return (
            f"<div><b>ctxkit report</b> ({self.total.calls} calls)<table><tr>{head}</tr>{''.join(body)}</table>"
            f"<p>{note}</p>"
            + (f"<p>Prices as of {html.escape(self.prices_as_of)}.</p>" if self.prices_as_of else "")
            + "</div>"
        )

    def to_dataframe(self) -> Any:
        """The rows (and the total) as a pandas DataFrame (extra ``viz``)."""

        pd = require("pandas", feature="Report.to_dataframe", extra="viz")
        return pd.DataFrame([r.as_dict() for r in [*self.rows, self.total]])


def build_report(
    records: Sequence[CallRecord],
    book: PriceBook,
    *,
    baseline_model: str | None = None,
    by: tuple[str, ...] = ("workflow", "model"),
) -> Report:
    """Aggregate ``records`` per ``by`` (any of ``"workflow"``, ``"model"``) with savings vs ``baseline_model``."""
    allowed = {"workflow", "model"}
    if isinstance(by, str):
        by = (by,)
    by = tuple(by) if isinstance(by, Iterable) else (by,)
    if not by or not all(isinstance(b, str) and b in allowed for b in by):
        raise InvalidInputError(f"report 'by' must be a subset of {sorted(allowed)}, got {list(by)}")
    if baseline_model is not None and not isinstance(baseline_model, str):
        raise InvalidInputError(f"baseline_model must be a model name (str), not {type(baseline_model).__name__}")
    groups: dict[tuple[str, str], list[CallRecord]] = {}
    for r in records:
        key = (r.workflow if "workflow" in by else "*", r.model if "model" in by else "*")
        groups.setdefault(key, []).append(r)
    rows = tuple(_row(w, m, rs, book, baseline_model) for (w, m), rs in sorted(groups.items()))
    return Report(
        rows=rows,
        total=_row("*", "*", list(records), book, baseline_model),
        baseline_model=baseline_model,
        generated_at=datetime.now(UTC),
        prices_as_of=book.as_of.isoformat() if book.as_of else None,
    )
