"""Telemetry: a ledger of model calls, budgets per workflow, reports, exports and plots.

::

    from ctxkit.telemetry import Ledger

    ledger = Ledger()
    ledger.set_budget(workflow="qa", max_cost_per_day="5.00", action="raise")
    ledger.record(model="gpt-4o-mini", workflow="qa", usage=usage, latency_s=0.8)
    print(ledger.report(baseline_model="gpt-5"))

Integrations live in submodules so their frameworks load only when used:
:mod:`ctxkit.telemetry.langchain` (``LedgerCallbackHandler``) and
:mod:`ctxkit.telemetry.llamaindex` (``instrument_llamaindex``).
"""

from __future__ import annotations

from ctxkit.telemetry.budgets import BudgetViolation, BudgetWarning, WorkflowBudget, WorkflowBudgetExceededError
from ctxkit.telemetry.export import OTelExporter, records_to_dataframe, span_attributes
from ctxkit.telemetry.ledger import CallTimer, Ledger
from ctxkit.telemetry.plots import plot_cost_over_time, plot_tokens_by_section
from ctxkit.telemetry.record import CallFacts, CallRecord
from ctxkit.telemetry.redact import RedactingFilter, add_secret, redact, redact_text
from ctxkit.telemetry.report import Report, ReportRow, Savings, percentile

__all__ = [
    "BudgetViolation",
    "BudgetWarning",
    "CallFacts",
    "CallRecord",
    "CallTimer",
    "Ledger",
    "OTelExporter",
    "RedactingFilter",
    "Report",
    "ReportRow",
    "Savings",
    "WorkflowBudget",
    "WorkflowBudgetExceededError",
    "add_secret",
    "percentile",
    "plot_cost_over_time",
    "plot_tokens_by_section",
    "records_to_dataframe",
    "redact",
    "redact_text",
    "span_attributes",
]
