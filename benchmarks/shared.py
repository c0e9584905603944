"""Shared state across processes: budget overshoot, lost ledger records under kill -9, reserve/settle latency.

``python benchmarks/run.py shared`` (``--quick``: 8 x 50 calls). Real servers start on loopback
(``ctxkit.testing.redis_server`` / ``postgres_server``), real processes do the work.

* **Budgets** (SQLite and Redis): 8 worker processes x 1,000 calls against one workflow limit
  that 8,000 calls cannot fit (each reserves 0.01 USD, settles 0.005-0.01). Overshoot is
  ``max(0, spent - limit) / reservation`` in calls (target <= 1). The same again with one worker
  killed by SIGKILL mid-call (it makes 50 ms calls while holding its reservation; timeout 2 s):
  overshoot, and whether any hold is left after the timeout (``leaked_reservations_usd``).
* **Latency**: ``reserve`` + ``settle`` of one call, p50 in microseconds, one process alone
  (``reserve_settle_us``) and under the 8-process load (``..._contended``); the in-process
  store's figure is the floor they are compared with (``ratio_vs_inprocess``).
* **Ledger** (SQLite and PostgreSQL): 4 processes x 4 threads write records as fast as they can;
  after each ``record()`` returns, its id goes to a file; after ~2 s every process gets
  SIGKILL. ``lost_records`` counts returned ids missing from the sink (target 0);
  ``records_per_s`` is the burst's throughput (group commit).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from tqdm import tqdm

HERE = Path(__file__).resolve()
AMOUNT = Decimal("0.01")


# ---------------------------------------------------------------------- workers (run as subprocesses)
def _store(spec: dict[str, Any]) -> Any:
    from ctxkit.state import BudgetLimit, InProcessBudgetStore, RedisBudgetStore, SQLiteBudgetStore

    limits = [BudgetLimit(workflow=spec["workflow"], limit=spec["limit"])]
    if spec["backend"] == "redis":
        return RedisBudgetStore(spec["url"], limits)
    if spec["backend"] == "inprocess":
        return InProcessBudgetStore(limits)
    return SQLiteBudgetStore(spec["path"], limits)


def _sink(spec: dict[str, Any]) -> Any:
    from ctxkit.state import PostgresSink, SQLiteSink

    return PostgresSink(spec["url"]) if spec["backend"] == "postgres" else SQLiteSink(spec["path"])


def worker_budget(spec: dict[str, Any]) -> dict[str, Any]:
    from ctxkit.state import BudgetRefusedError

    store = _store(spec)
    rng = random.Random(spec["seed"])
    settled, ok, refused, times = Decimal(0), 0, 0, []
    fd = os.open(spec["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if spec.get("log") else None
    for _ in range(spec["calls"]):
        t0 = time.perf_counter_ns()
        try:
            r = store.reserve(spec["workflow"], AMOUNT, timeout_s=spec.get("timeout_s", 60))
        except BudgetRefusedError:
            refused += 1
            continue
        reserve_ns = time.perf_counter_ns() - t0
        actual = (AMOUNT * rng.randint(50, 100) / 100).quantize(Decimal("1e-6"))
        if spec.get("work_s"):
            time.sleep(spec["work_s"])  # the model call, holding the reservation
        t1 = time.perf_counter_ns()
        store.settle(r, actual)
        times.append((reserve_ns + time.perf_counter_ns() - t1) / 1000)
        settled += actual
        ok += 1
        if fd is not None:
            os.write(fd, f"{actual}\n".encode())
    return {"settled": str(settled), "ok": ok, "refused": refused, "us": times}


def worker_ledger(spec: dict[str, Any]) -> None:
    from ctxkit.telemetry import Ledger

    led = Ledger(sink=_sink(spec))
    fd = os.open(spec["ids_file"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def loop(k: int) -> None:
        while True:
            rec = led.record(model="gpt-4o-mini", workflow="burst", usage={"input_tokens": 100 + k, "output_tokens": 9})
            os.write(fd, (rec.id + "\n").encode())

    for k in range(spec["threads"]):
        threading.Thread(target=loop, args=(k,), daemon=True).start()
    print("started", flush=True)
    time.sleep(3600)


def _spawn(mode: str, spec: dict[str, Any]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(HERE), "--worker", mode, json.dumps(spec)], stdout=subprocess.PIPE, text=True
    )


# ---------------------------------------------------------------------- measurements
def _p50(xs: list[float]) -> float:
    return round(statistics.median(xs), 1) if xs else float("nan")


def solo_latency(spec: dict[str, Any], n: int) -> float:
    """p50 us of reserve+settle, one process, no contention (limit never reached)."""
    out = worker_budget({**spec, "workflow": f"solo{time.monotonic_ns()}", "limit": "1e9", "calls": n, "seed": 0})
    return _p50(out["us"])


def contended(spec: dict[str, Any], procs: int, calls: int, kill: bool, tmp: Path) -> dict[str, Any]:
    workflow = f"w{time.monotonic_ns()}"
    # 8 x 1,000 calls settle at least 40 USD: the limit is 3/4 of that minimum, so it is reached
    limit = (AMOUNT / 2 * procs * calls * 3 / 4).quantize(Decimal("0.001")) + Decimal("0.005")
    log = tmp / f"{workflow}.log"
    base = {**spec, "workflow": workflow, "limit": str(limit), "calls": calls, "log": str(log)}
    if kill:
        base["timeout_s"] = 2.0
    # under kill, worker 0 makes slow calls (50 ms holding its reservation), so SIGKILL lands mid-call
    ps = [_spawn("budget", {**base, "seed": i, "work_s": 0.05 if kill and i == 0 else 0}) for i in range(procs)]
    victim, held_at_kill = None, Decimal(0)
    if kill:
        while not log.exists() or log.read_text().count("\n") < procs * calls // 10:
            time.sleep(0.01)
        victim = ps[0]
        os.kill(victim.pid, signal.SIGKILL)
        held_at_kill = _store(base).reserved(workflow)
    outs = []
    for p in ps:
        text = p.communicate()[0]
        if p is not victim:
            if p.returncode != 0:
                raise RuntimeError(f"a budget worker failed with code {p.returncode}")
            outs.append(json.loads(text))
    store = _store({**base})
    spent = store.spent(workflow)
    logged = sum((Decimal(x) for x in log.read_text().split()), Decimal(0))
    deadline = time.monotonic() + 10
    while kill and store.reserved(workflow) > 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    overshoot = max(Decimal(0), spent - limit) / AMOUNT
    return {
        "overshoot_calls": float(overshoot),
        "spent_usd": str(spent),
        "limit_usd": str(limit),
        "settled_reported_usd": str(logged),
        "unaccounted_usd": str(spent - logged),  # settled by the killed worker after its last log line
        "calls_ok": sum(o["ok"] for o in outs),
        "refused": sum(o["refused"] for o in outs),
        "leaked_reservations_usd": str(store.reserved(workflow)),
        "held_right_after_kill_usd": str(held_at_kill),
        "reserve_settle_us_contended": _p50([t for o in outs for t in o["us"]]),
    }


def ledger_burst(spec: dict[str, Any], tmp: Path, seconds: float) -> dict[str, Any]:
    ids_file = tmp / f"ids{time.monotonic_ns()}.txt"
    _sink(spec).close()  # create the table before the workers race to
    ps = [_spawn("ledger", {**spec, "ids_file": str(ids_file), "threads": 4}) for _ in range(4)]
    for p in ps:
        assert p.stdout is not None and p.stdout.readline().strip() == "started"
    t0 = time.monotonic()
    time.sleep(seconds)
    for p in ps:
        os.kill(p.pid, signal.SIGKILL)
    elapsed = time.monotonic() - t0
    for p in ps:
        p.communicate()
    returned = {x for x in ids_file.read_text().split("\n") if len(x) == 36}
    sink = _sink(spec)
    stored = {r.id for r in sink.read(workflow="burst")}
    sink.close()
    return {
        "returned": len(returned),
        "stored": len(stored),
        "lost_records": len(returned - stored),
        "records_per_s": round(len(stored) / elapsed),
    }


def main(argv: list[str]) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="shared")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--procs", type=int, default=8)
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--no-cache", action="store_true", help="skip the response-cache part (shared_cache)")
    args = ap.parse_args(argv)
    calls = 50 if args.quick else args.calls
    solo_n = 300 if args.quick else 3000
    from ctxkit.testing import postgres_server, redis_server

    out: dict[str, Any] = {"procs": args.procs, "calls_per_proc": calls}
    with tempfile.TemporaryDirectory() as d, redis_server() as rurl, postgres_server() as purl:
        tmp = Path(d)
        backends = {
            "sqlite": {"backend": "sqlite", "path": str(tmp / "budget.db")},
            "redis": {"backend": "redis", "url": rurl},
        }
        floor = solo_latency({"backend": "inprocess"}, solo_n)
        out["reserve_settle_us_inprocess"] = floor
        steps = [(name, kill) for name in backends for kill in (False, True)]
        budgets: dict[str, Any] = {}
        for name, kill in tqdm(steps, desc="budgets", file=sys.stderr):
            budgets[name + ("_sigkill" if kill else "")] = contended(backends[name], args.procs, calls, kill, tmp)
        for name, spec in backends.items():
            us = solo_latency(spec, solo_n)
            budgets[name]["reserve_settle_us"] = us
            budgets[name]["ratio_vs_inprocess"] = round(us / floor, 1)
        out["budgets"] = budgets
        sinks = {
            "sqlite": {"backend": "sqlite", "path": str(tmp / "ledger.db")},
            "postgres": {"backend": "postgres", "url": purl},
        }
        out["ledger"] = {
            name: ledger_burst(spec, tmp, 1.0 if args.quick else 2.0)
            for name, spec in tqdm(sinks.items(), desc="ledger", file=sys.stderr)
        }
    out["budget_overshoot_calls"] = max(b["overshoot_calls"] for b in out["budgets"].values())
    out["lost_records"] = sum(v["lost_records"] for v in out["ledger"].values())
    out["leaked_reservations_usd"] = str(sum(Decimal(b["leaked_reservations_usd"]) for b in out["budgets"].values()))
    out["reserve_settle_us"] = {n: out["budgets"][n]["reserve_settle_us"] for n in backends}
    if not args.no_cache:
        # the response cache's figures (benchmarks/shared_cache.py), at the top level like the issue asks
        import shared_cache

        cache = shared_cache.main(["--quick"] if args.quick else [])
        for key in ("semantic_hit_rate", "semantic_false_hit_rate", "plain_false_hit_rate_at_same_hit_rate"):
            out[key] = cache[key]
        out["response_cache"] = {k: v for k, v in cache.items() if k not in ("detail",)}
    return out


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        mode, spec = sys.argv[2], json.loads(sys.argv[3])
        if mode == "budget":
            print(json.dumps(worker_budget(spec)), flush=True)
        else:
            worker_ledger(spec)
    else:
        print("RESULT " + json.dumps(main(sys.argv[1:])))
