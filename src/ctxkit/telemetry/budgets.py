"""Per-workflow budgets: tokens per call, cost per call, cost per day; warn or raise.

A :class:`WorkflowBudget` is checked by the :class:`~ctxkit.telemetry.Ledger` on every
record of its workflow. Per-call limits apply to each record; the per-day limit
(UTC days) fires on the record that crosses it, and with ``action="raise"`` on every
later record of that day too (the day's money is spent). The record is always kept
in the ledger first -- the call happened -- and the warning or error carries it.
"""

from __future__ import annotations

import warnings
from decimal import Decimal
from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from ctxkit._model import CtxkitModel
from ctxkit.errors import BudgetError
from ctxkit.telemetry.record import CallRecord

__all__ = ["BudgetKind", "BudgetViolation", "BudgetWarning", "WorkflowBudget", "WorkflowBudgetExceededError"]

BudgetKind = Literal[
    "input_tokens_per_call", "tokens_per_call", "cost_per_call", "cost_per_day", "cost_total", "cost_per_rolling_hour"
]


class WorkflowBudget(CtxkitModel):
    """Limits for one workflow (``"*"`` applies to every workflow). ``None`` means no limit."""

    model_config = ConfigDict(frozen=True)

    workflow: str
    max_input_tokens_per_call: int | None = Field(default=None, gt=0)
    max_tokens_per_call: int | None = Field(default=None, gt=0, description="input + output tokens")
    max_cost_per_call: Decimal | None = Field(default=None, gt=0)
    max_cost_per_day: Decimal | None = Field(default=None, gt=0)
    action: Literal["warn", "raise"] = "warn"

    @field_validator("max_cost_per_call", "max_cost_per_day", mode="before")
    @classmethod
    def _exact(cls, value: object) -> object:
        if isinstance(value, float):
            return Decimal(repr(value))
        return value

    def applies_to(self, workflow: str) -> bool:
        return self.workflow in ("*", workflow)


class BudgetViolation(CtxkitModel):
    """Which limit a record crossed, by how much."""

    model_config = ConfigDict(frozen=True)

    workflow: str
    kind: BudgetKind
    limit: Decimal
    value: Decimal
    record: CallRecord

    def message(self) -> str:
        unit = "USD" if self.kind.startswith("cost") else "tokens"
        return (
            f"workflow {self.workflow!r} went over its {self.kind.replace('_', ' ')} budget: "
            f"{self.value} {unit} > {self.limit} {unit} (call {self.record.id} on {self.record.model}). "
            "Shrink the prompt (a tighter ctxkit.Budget, compression), route to a cheaper model, "
            "or raise the limit with ledger.set_budget(...)."
        )


class BudgetWarning(UserWarning):
    """A workflow budget was exceeded (``action="warn"``); ``violation.record`` crossed it."""

    def __init__(self, violation: BudgetViolation) -> None:
        self.violation = violation
        self.record = violation.record
        super().__init__(violation.message())


class WorkflowBudgetExceededError(BudgetError):
    """A workflow budget was exceeded (``action="raise"``); ``record`` is the call that crossed it.

    The record is already in the ledger when this is raised.
    """

    def __init__(self, violation: BudgetViolation) -> None:
        self.violation = violation
        self.record = violation.record
        self.workflow = violation.workflow
        self.kind = violation.kind
        self.limit = violation.limit
        self.value = violation.value
        super().__init__(violation.message())


def check(
    budget: WorkflowBudget, record: CallRecord, day_cost_before: Decimal, day_cost_after: Decimal
) -> list[BudgetViolation]:
    """The limits of ``budget`` that ``record`` crosses (day costs exclude/include the record)."""
    out: list[BudgetViolation] = []

    def add(kind: BudgetKind, limit: Decimal | int, value: Decimal | int) -> None:
        out.append(
            BudgetViolation(
                workflow=record.workflow, kind=kind, limit=Decimal(limit), value=Decimal(value), record=record
            )
        )

    u = record.usage
    if budget.max_input_tokens_per_call is not None and u.input_tokens > budget.max_input_tokens_per_call:
        add("input_tokens_per_call", budget.max_input_tokens_per_call, u.input_tokens)
    if budget.max_tokens_per_call is not None and u.total_tokens > budget.max_tokens_per_call:
        add("tokens_per_call", budget.max_tokens_per_call, u.total_tokens)
    if budget.max_cost_per_call is not None and record.cost is not None and record.cost > budget.max_cost_per_call:
        add("cost_per_call", budget.max_cost_per_call, record.cost)
    limit = budget.max_cost_per_day
    if limit is not None and day_cost_after > limit:
        crossed_now = day_cost_before <= limit
        if crossed_now or budget.action == "raise":
            add("cost_per_day", limit, day_cost_after)
    return out


def enforce(budget: WorkflowBudget, violations: list[BudgetViolation]) -> None:
    """Warn about or raise the first of ``violations`` according to ``budget.action``."""
    if not violations:
        return
    if budget.action == "raise":
        raise WorkflowBudgetExceededError(violations[0])
    for v in violations:
        warnings.warn(BudgetWarning(v), stacklevel=4)
