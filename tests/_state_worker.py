"""A worker process for the multi-process state tests: ``python tests/_state_worker.py <mode> <json args>``.

Modes:

* ``budget`` -- ``calls`` times: reserve ``amount`` on the shared store, settle to a cost in
  [amount/2, amount] (seeded); prints ``{"settled": "<sum>", "ok": n, "refused": n}``.
* ``hold`` -- reserves once, prints the reservation id, then sleeps (the parent SIGKILLs it mid-call).
* ``ledger`` -- ``threads`` threads record calls to the sink forever; after each ``record()`` returns,
  its id is appended to ``ids_file`` (the parent kills the process with SIGKILL).
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
from decimal import Decimal
from typing import Any


def store_from(spec: dict[str, Any]) -> Any:
    from ctxkit.state import BudgetLimit, RedisBudgetStore, SQLiteBudgetStore

    limits = [BudgetLimit(workflow=spec["workflow"], limit=spec["limit"], window=spec.get("window", "total"))]
    if spec["backend"] == "redis":
        return RedisBudgetStore(spec["url"], limits)
    return SQLiteBudgetStore(spec["path"], limits)


def sink_from(spec: dict[str, Any]) -> Any:
    from ctxkit.state import PostgresSink, SQLiteSink

    return PostgresSink(spec["url"]) if spec["backend"] == "postgres" else SQLiteSink(spec["path"])


def budget(spec: dict[str, Any]) -> None:
    from ctxkit.state import BudgetRefusedError

    store = store_from(spec)
    rng = random.Random(spec["seed"])
    amount = Decimal(spec["amount"])
    settled, ok, refused = Decimal(0), 0, 0
    for _ in range(spec["calls"]):
        try:
            r = store.reserve(spec["workflow"], amount, timeout_s=60)
        except BudgetRefusedError:
            refused += 1
            continue
        actual = (amount * Decimal(rng.randint(50, 100)) / 100).quantize(Decimal("1e-6"))
        store.settle(r, actual)
        settled += actual
        ok += 1
    print(json.dumps({"settled": str(settled), "ok": ok, "refused": refused}), flush=True)


def hold(spec: dict[str, Any]) -> None:
    store = store_from(spec)
    r = store.reserve(spec["workflow"], Decimal(spec["amount"]), timeout_s=spec["timeout_s"])
    print(r.id, flush=True)
    time.sleep(3600)


def ledger(spec: dict[str, Any]) -> None:
    from ctxkit.telemetry import Ledger

    led = Ledger(sink=sink_from(spec))
    fd = os.open(spec["ids_file"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def loop(k: int) -> None:
        while True:
            rec = led.record(
                model="gpt-4o-mini", workflow="burst", usage={"input_tokens": 100 + k, "output_tokens": 10}
            )
            os.write(fd, (rec.id + "\n").encode())

    threads = [threading.Thread(target=loop, args=(k,), daemon=True) for k in range(spec["threads"])]
    for t in threads:
        t.start()
    print("started", flush=True)
    time.sleep(3600)


if __name__ == "__main__":
    {"budget": budget, "hold": hold, "ledger": ledger}[sys.argv[1]](json.loads(sys.argv[2]))
