"""State shared across threads, processes and machines: workflow budgets and the durable ledger.

::

    from ctxkit.state import BudgetLimit, SQLiteBudgetStore, SQLiteSink
    from ctxkit.telemetry import Ledger

    store = SQLiteBudgetStore("state.db", [BudgetLimit(workflow="qa", limit="5.00", window="day")])
    hold = store.reserve("qa", worst_case_usd)      # refused (BudgetRefusedError) before any token is spent
    ...                                             # make the call
    store.settle(hold, real_cost_usd)
    ledger = Ledger(sink=SQLiteSink("ledger.db"))   # every record durable before record() returns

Redis (:class:`RedisBudgetStore`) and PostgreSQL (:class:`PostgresSink`) take URLs and need the
``state`` extra.
"""

from __future__ import annotations

from ctxkit.state.budgets import (
    BudgetLimit,
    BudgetRefusedError,
    BudgetStore,
    InProcessBudgetStore,
    RedisBudgetStore,
    Reservation,
    SQLiteBudgetStore,
    Window,
    limits_from_budget,
)
from ctxkit.state.sinks import JSONLSink, LedgerSink, PostgresSink, SQLiteSink

__all__ = [
    "BudgetLimit",
    "BudgetRefusedError",
    "BudgetStore",
    "InProcessBudgetStore",
    "JSONLSink",
    "LedgerSink",
    "PostgresSink",
    "RedisBudgetStore",
    "Reservation",
    "SQLiteBudgetStore",
    "SQLiteSink",
    "Window",
    "limits_from_budget",
]
