"""Many worker processes, one budget and one ledger (ctxkit.state).

Each worker process runs its own :class:`ctxkit.dispatch.Dispatcher` with a shared
budget store: every call holds its worst case (input tokens + ``max_tokens`` at the
model's list price) before it is sent and settles to its real cost after, so the
workers together never spend more than the limit. Every call's record is durable in the
shared ledger before ``record()`` returns; the parent reads the ledger back for a report.

One machine (SQLite files, nothing to install)::

    python examples/multi_worker.py

Many machines (Redis for the budget, PostgreSQL for the ledger; extra ``state``)::

    CTXKIT_REDIS_URL=redis://budget-host:6379/0 \\
    CTXKIT_POSTGRES_URL=postgresql://app:PASSWORD@ledger-host/ctxkit \\
    python examples/multi_worker.py

The model here is :class:`~ctxkit.dispatch.backends.function.FunctionBackend` priced as
``gpt-4o-mini`` so the example runs offline; put a real backend (``"openai:gpt-4o-mini"``)
in its place and nothing else changes.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

from ctxkit.dispatch import Dispatcher
from ctxkit.dispatch.backends.function import FunctionBackend
from ctxkit.state import BudgetLimit, BudgetRefusedError, PostgresSink, RedisBudgetStore, SQLiteBudgetStore, SQLiteSink
from ctxkit.telemetry import Ledger

WORKFLOW = "support-bot"


def shared_state(config: dict[str, str], limit: str) -> tuple[Any, Any]:
    """The budget store and the ledger sink every process opens (same arguments everywhere)."""
    limits = [BudgetLimit(workflow=WORKFLOW, limit=limit, window="day")]
    if config.get("redis"):
        store: Any = RedisBudgetStore(config["redis"], limits)
    else:
        store = SQLiteBudgetStore(config["budget_db"], limits)
    sink: Any = PostgresSink(config["postgres"]) if config.get("postgres") else SQLiteSink(config["ledger_db"])
    return store, sink


def worker(config: dict[str, str], limit: str, calls: int, seed: int) -> tuple[int, int]:
    store, sink = shared_state(config, limit)
    ledger = Ledger(sink=sink)
    backend = FunctionBackend(lambda messages: "Your order ships tomorrow.", model="gpt-4o-mini")
    dispatcher = Dispatcher({"main": backend}, budget_store=store, budget_workflow=WORKFLOW)
    answered = refused = 0
    for i in range(calls):
        try:
            result = dispatcher.run(f"Customer {seed}-{i}: where is my order?", max_tokens=300)
        except BudgetRefusedError:
            refused += 1  # refused before any token was spent: queue it, or answer "try later"
            continue
        ledger.record_result(result, workflow=WORKFLOW)
        answered += 1
    sink.close()
    return answered, refused


def main(argv: list[str]) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--calls", type=int, default=200, help="calls per worker")
    ap.add_argument("--limit", default="0.002", help="the workflow's daily budget in USD")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        config = {
            "budget_db": str(Path(tmp) / "budget.db"),
            "ledger_db": str(Path(tmp) / "ledger.db"),
            "redis": os.environ.get("CTXKIT_REDIS_URL", ""),
            "postgres": os.environ.get("CTXKIT_POSTGRES_URL", ""),
        }
        store, sink = shared_state(config, args.limit)  # creates the tables before the workers start
        with mp.get_context("spawn").Pool(args.workers) as pool:
            counts = pool.starmap(worker, [(config, args.limit, args.calls, k) for k in range(args.workers)])
        ledger = Ledger.from_sink(sink, workflow=WORKFLOW)
        answered = sum(a for a, _ in counts)
        spent = store.spent(WORKFLOW, "day")
        print(f"backend: {type(store).__name__} + {type(sink).__name__}, {args.workers} workers")
        print(f"answered {answered}, refused {sum(r for _, r in counts)} before sending")
        print(
            f"spent today {spent} USD of {args.limit} USD; "
            f"the ledger holds {len(ledger)} records, {ledger.total_cost()} USD"
        )
        print(ledger.report())
        sink.close()
        assert spent <= Decimal(args.limit)
        assert len(ledger) == answered
        return {"answered": answered, "spent": str(spent), "records": len(ledger)}


if __name__ == "__main__":
    main(sys.argv[1:])
