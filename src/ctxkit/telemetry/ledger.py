"""The ledger: every model call as a :class:`CallRecord`, with budgets, reports and exports."""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from ctxkit.errors import CtxkitError, InvalidInputError, ResourceError
from ctxkit.pricing import PriceBook, default_price_book
from ctxkit.secrets import get_logger
from ctxkit.telemetry.budgets import WorkflowBudget, check, enforce
from ctxkit.telemetry.export import OTelExporter, records_to_dataframe
from ctxkit.telemetry.plots import plot_cost_over_time, plot_tokens_by_section
from ctxkit.telemetry.record import CallFacts, CallRecord
from ctxkit.telemetry.report import Report, build_report
from ctxkit.usage import Usage

__all__ = ["CallTimer", "Ledger"]

logger = get_logger("ctxkit.telemetry")

_ZERO = Decimal(0)
# CallFacts fields a CallRecord keeps unchanged (the others are derived in Ledger._build_unchecked)
_DERIVED = frozenset(
    [
        "usage",
        "cost",
        "provider",
        "route",
        "route_reason",
        "escalated",
        "local",
        "sections",
        "retrieval_hit",
        "metadata",
        "timestamp",
    ]
)
_KEPT_FIELDS = tuple(n for n in CallFacts.model_fields if n in CallRecord.model_fields and n not in _DERIVED)

Hook = Callable[[CallRecord], None]


class CallTimer:
    """Times one call inside :meth:`Ledger.track`; set ``usage`` (and anything else) before the block ends."""

    def __init__(self) -> None:
        self._t0 = time.perf_counter()
        self._first: float | None = None
        self.usage: Usage | None = None
        self.fields: dict[str, Any] = {}
        self.record: CallRecord | None = None

    def first_token(self) -> None:
        """Mark the arrival of the first streamed token (sets ``ttft_s``)."""
        if self._first is None:
            self._first = time.perf_counter()

    def set(self, **fields: Any) -> None:
        """Extra :class:`CallRecord` fields for this call (``success``, ``route``, ``metadata``...)."""
        self.fields.update(fields)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._t0


def _budget_list(budgets: Any) -> list[WorkflowBudget]:
    if isinstance(budgets, WorkflowBudget):
        return [budgets]
    if isinstance(budgets, str | bytes | Mapping) or not isinstance(budgets, Iterable):
        raise InvalidInputError(f"budgets must be a list of WorkflowBudget, not {type(budgets).__name__}")
    out = list(budgets)
    bad = [type(b).__name__ for b in out if not isinstance(b, WorkflowBudget)]
    if bad:
        raise InvalidInputError(
            f"budgets must be WorkflowBudget objects, got {bad[0]}; build them with WorkflowBudget(...)"
        )
    return out


def _hook_list(hooks: Any) -> list[Hook]:
    if callable(hooks):
        return [hooks]
    if isinstance(hooks, str | bytes | Mapping) or not isinstance(hooks, Iterable):
        raise InvalidInputError(f"hooks must be a list of callables taking a CallRecord, not {type(hooks).__name__}")
    out = list(hooks)
    if not all(callable(h) for h in out):
        raise InvalidInputError("every hook must be a callable taking a CallRecord")
    return out


def _ledger_path(path: Any) -> Path | None:
    """The JSON-lines file, checked now: its folder must exist and the file must be writable."""
    if path is None:
        return None
    if not isinstance(path, str | Path) or not str(path).strip():
        raise InvalidInputError(f"Ledger(path=...) takes a file path, not {path!r}")
    p = Path(path)
    if not p.parent.is_dir():
        raise InvalidInputError(
            f"the folder of the ledger file {str(p)!r} does not exist; create it first or pass another path"
        )
    if p.is_dir():
        raise InvalidInputError(f"the ledger path {str(p)!r} is a folder; pass a file path such as calls.jsonl")
    try:
        with p.open("a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise InvalidInputError(
            f"cannot write the ledger file {str(p)!r} ({exc.strerror}); pass a writable path"
        ) from exc
    return p


class Ledger:
    """Records of model calls, in order, thread-safe.

    ``record(...)`` prices the call from the price book when no ``cost`` is given,
    checks the workflow's budgets, appends the record to ``path`` (JSON lines) if
    given, and calls every hook (e.g. :class:`~ctxkit.telemetry.OTelExporter`).
    Reports, exports and plots read the records.

    ``sink`` (a :class:`ctxkit.state.LedgerSink`: ``JSONLSink``, ``SQLiteSink``, ``PostgresSink``)
    stores every record durably before ``record()`` returns; :meth:`from_sink` reads one back.
    """

    def __init__(
        self,
        *,
        price_book: PriceBook | None = None,
        budgets: Iterable[WorkflowBudget] = (),
        path: str | Path | None = None,
        hooks: Iterable[Hook] = (),
        sink: Any = None,
    ) -> None:
        if price_book is not None and not isinstance(price_book, PriceBook):
            raise InvalidInputError(f"price_book must be a ctxkit.PriceBook, not {type(price_book).__name__}")
        self.price_book = price_book if price_book is not None else default_price_book()
        self._lock = threading.RLock()
        self._records: list[CallRecord] = []
        self._day_costs: dict[tuple[str, date], Decimal] = {}
        self._budgets: list[WorkflowBudget] = _budget_list(budgets)
        self._hooks: list[Hook] = _hook_list(hooks)
        self.path = _ledger_path(path)
        self.sink: Any = None
        if sink is not None:
            # lazy: breaks a cycle (ctxkit.state builds on ctxkit.telemetry)
            from ctxkit.state.sinks import _check_sink

            self.sink = _check_sink(sink)

    # ------------------------------------------------------------------ configuration
    def set_budget(self, budget: WorkflowBudget | None = None, /, **limits: Any) -> WorkflowBudget:
        """Set (replace) the budget of a workflow: ``ledger.set_budget(workflow="qa", max_cost_per_day="5")``."""
        if budget is None:
            try:
                budget = WorkflowBudget.model_validate(limits)
            except ValidationError as exc:  # pragma: no cover - WorkflowBudget raises InvalidInputError itself
                raise InvalidInputError(f"bad workflow budget: {exc}") from exc
        with self._lock:
            self._budgets = [b for b in self._budgets if b.workflow != budget.workflow] + [budget]
        return budget

    @property
    def budgets(self) -> tuple[WorkflowBudget, ...]:
        with self._lock:
            return tuple(self._budgets)

    def add_hook(self, hook: Hook) -> None:
        """Call ``hook(record)`` on every new record (exporters, live dashboards)."""
        with self._lock:
            self._hooks.append(hook)

    # ------------------------------------------------------------------ recording
    def record(self, record: CallRecord | CallFacts | None = None, /, **fields: Any) -> CallRecord:
        """Record one call and return its :class:`CallRecord`.

        Pass a ready ``CallRecord``, a :class:`CallFacts`, or the fields of a ``CallFacts`` as keywords
        (``ledger.record(model="gpt-4o-mini", usage=usage, latency_s=0.8)``); see :class:`CallFacts` for
        each field and what the ledger derives from it (cost from the price book, route from ``decision``,
        tokens by section from ``prompt``, ``retrieval_hit`` from ``retrieved_ids`` and ``gold_ids``).

        Raises :class:`~ctxkit.telemetry.WorkflowBudgetExceededError` after recording when a
        ``raise`` budget is exceeded; warns :class:`~ctxkit.telemetry.BudgetWarning` for ``warn``.
        """
        if record is None:
            if not fields.get("model"):
                raise InvalidInputError("Ledger.record needs model=... (the model that answered) or a CallRecord")
            unknown = sorted(set(fields) - set(CallFacts.model_fields))
            if unknown:
                raise InvalidInputError(
                    f"Ledger.record got unknown field(s) {unknown}; it takes the fields of CallFacts: "
                    f"{', '.join(CallFacts.model_fields)}"
                )
            record = CallFacts.model_validate(fields)
        elif fields:
            raise InvalidInputError(
                f"Ledger.record takes a {type(record).__name__} or keyword fields, not both; got also {sorted(fields)}"
            )
        if isinstance(record, CallFacts):
            record = self._build(record)
        elif not isinstance(record, CallRecord):
            raise InvalidInputError(
                f"Ledger.record takes a CallRecord, a CallFacts or keyword fields, not {type(record).__name__}"
            )
        return self._append(record)

    def _build(self, facts: CallFacts) -> CallRecord:
        try:
            return self._build_unchecked(facts)
        except CtxkitError:
            raise
        except (TypeError, ValueError, ArithmeticError, AttributeError) as exc:
            # a field of the wrong type that slipped past the checks: name it, keep ctxkit's error contract
            raise InvalidInputError(
                f"Ledger.record got a field of the wrong type ({type(exc).__name__}: {exc}); "
                "see CallFacts for each field's type"
            ) from exc

    def _build_unchecked(self, facts: CallFacts) -> CallRecord:
        reported = facts.usage is not None
        usage = facts.usage if facts.usage is not None else Usage()
        price = self.price_book.get(facts.model)
        cost = facts.cost
        if not facts.cost_given:
            cost = price.cost(usage) if (price is not None and reported) else None
        route, reason, escalated, router = facts.route, facts.route_reason, facts.escalated, None
        decision = facts.decision
        if decision is not None:
            route = route if route is not None else getattr(decision, "route", None)
            reason = reason if reason is not None else getattr(decision, "reason", None)
            router = getattr(decision, "router", None) or None
            if escalated is None:
                escalated = bool(getattr(decision, "escalated", False))
        sections = dict(facts.sections or {})
        if facts.prompt is not None and not sections:
            sections = {name: s.used for name, s in facts.prompt.sections.items()}
        hit = facts.retrieval_hit
        if hit is None and facts.gold_ids is not None and facts.retrieved_ids is not None:
            gold = set(facts.gold_ids)
            hit = any(i in gold for i in facts.retrieved_ids)
        local = facts.local
        if local is None:
            local = bool(price is not None and price.local)
        derived: dict[str, Any] = {
            "usage": usage,
            "usage_reported": reported,
            "cost": cost,
            "provider": facts.provider or (price.provider if price is not None else ""),
            "route": route,
            "route_reason": reason,
            "router": router,
            "escalated": bool(escalated),
            "local": local,
            "sections": sections,
            "retrieval_hit": hit,
            "metadata": facts.metadata or {},
        }
        if facts.timestamp is not None:
            derived["timestamp"] = facts.timestamp
        # the facts a record keeps as they are: every field both models share that is not derived above
        kept = {name: getattr(facts, name) for name in _KEPT_FIELDS}
        try:
            return CallRecord.model_validate({**kept, **derived})
        except ValidationError as exc:  # pragma: no cover - CtxkitModel raises InvalidInputError itself
            raise InvalidInputError(f"bad call record: {exc}") from exc

    def record_result(self, result: Any, /, *, workflow: str = "default", **fields: Any) -> CallRecord:
        """Record a :class:`ctxkit.dispatch.Result` (usage, cost, latency, ttft, route decision)."""
        kw: dict[str, Any] = {
            "model": getattr(result, "model", "") or fields.pop("model", ""),
            "usage": getattr(result, "usage", None),
            "backend": getattr(result, "backend", ""),
            "latency_s": getattr(result, "latency_s", None),
            "ttft_s": getattr(result, "ttft_s", None),
            "decision": getattr(result, "decision", None),
            "attempts": getattr(result, "attempts", 1),
            "local": getattr(result, "local", None),
        }
        result_cost = getattr(result, "cost", None)
        if result_cost is not None:
            kw["cost"] = result_cost
        if getattr(result, "cached", None) is not None:  # a response-cache hit: nothing was sent
            kw["response_cache"] = result.cached
            kw["saved_cost"] = getattr(result, "saved_cost", None)
        if getattr(result, "finish_reason", None) == "error":
            kw["error"] = "backend reported finish_reason=error"
        kw.update(fields)
        return self.record(workflow=workflow, **kw)

    def _append(self, record: CallRecord) -> CallRecord:
        line = record.model_dump_json() + "\n" if self.path is not None else ""
        if self.sink is not None:  # durable first, outside the lock so concurrent writers group-commit
            self.sink.write([record])
        with self._lock:
            key = (record.workflow, record.timestamp.date())
            before = self._day_costs.get(key, _ZERO)
            if self.path is not None:  # on disk first: a record that cannot be written is not kept either
                try:
                    with self.path.open("a", encoding="utf-8") as fh:
                        fh.write(line)
                except OSError as exc:
                    raise ResourceError(
                        f"cannot append to the ledger file {str(self.path)!r} ({exc.strerror}); the call was not "
                        "recorded. Free space or fix the permissions, then record it again."
                    ) from exc
            self._records.append(record)
            if record.cost is not None:
                self._day_costs[key] = before + record.cost
            budgets = [b for b in self._budgets if b.applies_to(record.workflow)]
            hooks = list(self._hooks)
        after = before + (record.cost or _ZERO)
        for hook in hooks:
            try:
                hook(record)
            except Exception as exc:  # an exporter failure must not lose the record or break the app
                logger.warning("telemetry hook %r failed on record %s: %s", hook, record.id[:8], type(exc).__name__)
        for budget in budgets:
            violations = check(budget, record, before, after)
            for v in violations:
                logger.warning("%s", v.message())
            enforce(budget, violations)
        return record

    def preflight(
        self, *, workflow: str = "default", model: str | None = None, input_tokens: int, max_output_tokens: int = 0
    ) -> None:
        """Check a call *before* sending it: its input tokens, its total tokens (with ``max_output_tokens``) and,
        when ``model`` has a price, its worst-case cost against the workflow's per-call and per-day limits.

        Warns or raises like :meth:`record`, with a draft record of the planned call (not kept in the ledger).
        """
        draft = self._build(
            CallFacts(
                model=model or "unknown",
                workflow=workflow,
                usage=Usage(input_tokens=input_tokens, output_tokens=max_output_tokens),
                metadata={"preflight": True},
            )
        )
        with self._lock:
            before = self._day_costs.get((workflow, draft.timestamp.date()), _ZERO)
            budgets = [b for b in self._budgets if b.applies_to(workflow)]
        after = before + (draft.cost or _ZERO)
        for budget in budgets:
            enforce(budget, check(budget, draft, before, after))

    @contextmanager
    def track(self, *, model: str, workflow: str = "default", **fields: Any) -> Iterator[CallTimer]:
        """Time a call made in the block and record it at the end (with ``error`` if it raised)::

        with ledger.track(model="gpt-4o-mini", workflow="qa") as call:
            resp = client.chat.completions.create(...)
            call.usage = Usage.from_openai(resp.usage.model_dump())
        """
        timer = CallTimer()
        error: BaseException | None = None
        try:
            yield timer
        except BaseException as exc:
            error = exc
            raise
        finally:
            elapsed = timer.elapsed
            ttft = None if timer._first is None else min(timer._first - timer._t0, elapsed)
            kw = {**fields, **timer.fields}
            kw.setdefault("latency_s", elapsed)
            kw.setdefault("ttft_s", ttft)
            if error is not None:
                kw.setdefault("error", error)
            timer.record = self.record(model=model, workflow=workflow, usage=timer.usage, **kw)

    def report_success(self, key: str, success: bool = True) -> int:
        """Set the app's verdict on a task (by ``task_id``) or a call (by record id); returns records changed."""
        changed = 0
        with self._lock:
            for i, r in enumerate(self._records):
                if r.task_id == key or r.id == key:
                    self._records[i] = r.model_copy(update={"success": success})
                    changed += 1
        if not changed:
            raise InvalidInputError(f"no record with task_id or id {key!r}; pass task_id=... when recording")
        return changed

    # ------------------------------------------------------------------ reading
    @property
    def records(self) -> tuple[CallRecord, ...]:
        with self._lock:
            return tuple(self._records)

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def __iter__(self) -> Iterator[CallRecord]:
        return iter(self.records)

    def filter(
        self, *, workflow: str | None = None, model: str | None = None, since: datetime | None = None
    ) -> list[CallRecord]:
        return [
            r
            for r in self.records
            if (workflow is None or r.workflow == workflow)
            and (model is None or r.model == model)
            and (since is None or r.timestamp >= since)
        ]

    def total_usage(self, *, workflow: str | None = None) -> Usage:
        total = Usage()
        for r in self.filter(workflow=workflow):
            total = total + r.usage
        return total

    def total_cost(self, *, workflow: str | None = None) -> Decimal | None:
        """Exact total cost; ``None`` if any call's price is unknown."""
        total = _ZERO
        for r in self.filter(workflow=workflow):
            if r.cost is None:
                return None
            total += r.cost
        return total

    def day_cost(self, workflow: str, day: datetime | None = None) -> Decimal:
        """Known cost of ``workflow`` on the UTC day of ``day`` (today by default)."""
        d = (day or datetime.now(UTC)).astimezone(UTC).date()
        with self._lock:
            return self._day_costs.get((workflow, d), _ZERO)

    def report(self, *, baseline_model: str | None = None, by: tuple[str, ...] = ("workflow", "model")) -> Report:
        """Per workflow and model: calls, tokens, cached share, cost, latency p50/p95, cost per successful
        task, escalation rate, compression ratio, and savings vs ``baseline_model`` (the flagship)."""
        return build_report(self.records, self.price_book, baseline_model=baseline_model, by=by)

    # ------------------------------------------------------------------ exports
    def to_jsonl(self, target: str | Path | IO[str]) -> int:
        """Write every record as one JSON line (exact costs as strings); returns the count."""
        records = self.records
        lines = "".join(r.model_dump_json() + "\n" for r in records)
        if isinstance(target, str | Path):
            try:
                Path(target).write_text(lines, encoding="utf-8")
            except OSError as exc:
                raise InvalidInputError(f"cannot write the ledger file {str(target)!r}: {exc}") from exc
        elif callable(getattr(target, "write", None)):
            target.write(lines)
        else:
            raise InvalidInputError(f"to_jsonl takes a path or an open text file, not {type(target).__name__}")
        return len(records)

    @classmethod
    def from_jsonl(cls, source: str | Path | IO[str], **kwargs: Any) -> Ledger:
        """A ledger holding the records of a JSON-lines file (budgets are not re-checked)."""
        if isinstance(source, str | Path):
            try:
                text = Path(source).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise InvalidInputError(f"cannot read the ledger file {str(source)!r}: {exc}") from exc
        elif callable(getattr(source, "read", None)):
            text = source.read()
        else:
            raise InvalidInputError(f"from_jsonl takes a path or an open text file, not {type(source).__name__}")
        if not isinstance(text, str):
            raise InvalidInputError("from_jsonl needs a text file (open it with 'r', not 'rb')")
        ledger = cls(**kwargs)
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = CallRecord.model_validate_json(line)
            except (ValidationError, InvalidInputError) as exc:
                raise InvalidInputError(f"line {n} of the ledger file is not a call record: {exc}") from None
            ledger._records.append(rec)
            if rec.cost is not None:
                key = (rec.workflow, rec.timestamp.date())
                ledger._day_costs[key] = ledger._day_costs.get(key, _ZERO) + rec.cost
        return ledger

    @classmethod
    def from_sink(
        cls, sink: Any, *, workflow: str | None = None, since: datetime | None = None, **kwargs: Any
    ) -> Ledger:
        """A ledger over ``sink``: its stored records (optionally one workflow, or since a time) for reports
        and exports, and new records written to it. Budgets are not re-checked on the stored records."""
        ledger = cls(sink=sink, **kwargs)
        for rec in ledger.sink.read(workflow=workflow, since=since):
            ledger._records.append(rec)
            if rec.cost is not None:
                key = (rec.workflow, rec.timestamp.date())
                ledger._day_costs[key] = ledger._day_costs.get(key, _ZERO) + rec.cost
        return ledger

    def to_dataframe(self) -> Any:
        """The records as a pandas DataFrame, one row per call (extra ``viz``)."""

        return records_to_dataframe(self.records)

    def to_otel(self, tracer_provider: Any = None) -> int:
        """Emit every record as an OpenTelemetry span (GenAI semantic conventions; extra ``otel``)."""

        exporter = OTelExporter(tracer_provider)
        for r in self.records:
            exporter(r)
        return len(self)

    def plot_cost_over_time(self, ax: Any = None, *, by: str = "workflow") -> Any:
        return plot_cost_over_time(self.records, ax=ax, by=by)

    def plot_tokens_by_section(self, ax: Any = None) -> Any:
        return plot_tokens_by_section(self.records, ax=ax)

    # ------------------------------------------------------------------ display
    def __repr__(self) -> str:
        cost = self.total_cost()
        return f"Ledger({len(self)} calls, cost={'unknown' if cost is None else cost})"

    def _repr_html_(self, last: int = 20) -> str:
        records = self.records
        rows = []
        for r in records[-last:]:
            u = r.usage
            rows.append(
                "<tr>"
                + "".join(
                    f"<td>{html.escape(str(c))}</td>"
                    for c in (
                        r.timestamp.strftime("%Y-%m-%d %H:%M:%S"),
                        r.workflow,
                        r.model,
                        r.route or "",
                        u.input_tokens,
                        u.cache_read_tokens,
                        u.output_tokens,
                        "unknown" if r.cost is None else f"${r.cost}",
                        "" if r.latency_s is None else f"{r.latency_s:.3f}",
                        "" if r.success is None else r.success,
                        r.error or "",
                    )
                )
                + "</tr>"
            )
        head = "".join(
            f"<th>{h}</th>"
            for h in (
                "time (UTC)",
                "workflow",
                "model",
                "route",
                "in",
                "cached",
                "out",
                "cost",
                "latency s",
                "success",
                "error",
            )
        )
        cost = self.total_cost()
        return (
            f"<div><b>Ledger</b>: {len(records)} calls, cost "
            f"{'unknown (unpriced calls)' if cost is None else '$' + str(cost)}"
            f"<table><tr>{head}</tr>{''.join(rows)}</table>"
            + (f"<p>showing the last {last}</p>" if len(records) > last else "")
            + "</div>"
        )
