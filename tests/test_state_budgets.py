"""Shared budgets (ctxkit.state): one contract for every backend, the accounting invariant, many processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctxkit import testing
from ctxkit.errors import BudgetError, InvalidInputError
from ctxkit.state import (
    BudgetLimit,
    BudgetRefusedError,
    BudgetStore,
    InProcessBudgetStore,
    RedisBudgetStore,
    SQLiteBudgetStore,
)
from ctxkit.telemetry import WorkflowBudgetExceededError

WORKER = Path(__file__).with_name("_state_worker.py")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with testing.redis_server() as url:
        yield url


class Clock:
    def __init__(self, t: float = 1_790_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


Factory = Callable[..., BudgetStore]


@pytest.fixture(params=["inprocess", "sqlite", pytest.param("redis", marks=pytest.mark.server)])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    counter = iter(range(1000))

    def make(limits: Any, clock: Any = time.time) -> BudgetStore:
        if request.param == "inprocess":
            return InProcessBudgetStore(limits, clock=clock)
        if request.param == "sqlite":
            return SQLiteBudgetStore(tmp_path / f"budget{next(counter)}.db", limits, clock=clock)
        url = request.getfixturevalue("redis_url")
        return RedisBudgetStore(url, limits, clock=clock, prefix=f"t{os.getpid()}:{time.monotonic_ns()}")

    return make


# ---------------------------------------------------------------------- the contract, every backend
def test_reserve_settle_release_account_exactly(make_store: Factory) -> None:
    store = make_store([BudgetLimit(workflow="qa", limit="1.00")])
    r = store.reserve("qa", Decimal("0.30"))
    assert store.reserved("qa") == Decimal("0.3")
    assert store.spent("qa") == 0
    store.settle(r, Decimal("0.12"))
    assert store.reserved("qa") == 0
    assert store.spent("qa") == Decimal("0.12")
    r2 = store.reserve("qa", Decimal("0.5"))
    store.release(r2)
    assert store.spent("qa") == Decimal("0.12")
    assert store.reserved("qa") == 0
    assert store.spent("other") == 0


def test_a_call_that_would_cross_the_limit_is_refused_and_holds_nothing(make_store: Factory) -> None:
    store = make_store([BudgetLimit(workflow="qa", limit="1.00")])
    store.settle(store.reserve("qa", Decimal("0.6")), Decimal("0.6"))
    held = store.reserve("qa", Decimal("0.3"))
    with pytest.raises(BudgetRefusedError) as info:
        store.reserve("qa", Decimal("0.2"))
    err = info.value
    assert (err.limit, err.spent, err.reserved, err.amount) == (
        Decimal("1.00"),
        Decimal("0.6"),
        Decimal("0.3"),
        Decimal("0.2"),
    )
    assert "total budget is 1.00 USD" in str(err)
    assert "raise the limit" in str(err)
    assert isinstance(err, WorkflowBudgetExceededError)
    assert isinstance(err, BudgetError)
    assert store.reserved("qa") == Decimal("0.3")
    store.reserve("qa", Decimal("0.1"))  # exactly up to the limit fits
    store.release(held)


def test_day_window_rolls_over_at_utc_midnight(make_store: Factory) -> None:
    clock = Clock(1_790_035_200.0 - 10)  # 10 s before a UTC midnight
    store = make_store([BudgetLimit(workflow="qa", limit="1.0", window="day")], clock)
    store.settle(store.reserve("qa", Decimal("0.9")), Decimal("0.9"))
    with pytest.raises(BudgetRefusedError, match="per-day"):
        store.reserve("qa", Decimal("0.2"))
    clock.t += 20
    assert store.spent("qa", "day") == 0
    assert store.spent("qa", "total") == Decimal("0.9")
    store.reserve("qa", Decimal("0.2"))


def test_rolling_hour_forgets_a_charge_after_sixty_to_sixty_one_minutes(make_store: Factory) -> None:
    clock = Clock()
    store = make_store([BudgetLimit(workflow="qa", limit="1.0", window="rolling_hour")], clock)
    store.settle(store.reserve("qa", Decimal("1.0")), Decimal("1.0"))
    clock.t += 59 * 60
    with pytest.raises(BudgetRefusedError, match="rolling-hour"):
        store.reserve("qa", Decimal("0.01"))
    clock.t += 60 * 3  # 62 minutes later
    assert store.spent("qa", "rolling_hour") == 0
    store.reserve("qa", Decimal("1.0"))


def test_an_expired_reservation_is_reclaimed(make_store: Factory) -> None:
    clock = Clock()
    store = make_store([BudgetLimit(workflow="qa", limit="1.0")], clock)
    store.reserve("qa", Decimal("0.8"), timeout_s=30)
    with pytest.raises(BudgetRefusedError):
        store.reserve("qa", Decimal("0.8"))
    clock.t += 31
    assert store.reserved("qa") == 0
    store.reserve("qa", Decimal("0.8"))


def test_a_late_settlement_is_still_charged(make_store: Factory) -> None:
    clock = Clock()
    store = make_store([BudgetLimit(workflow="qa", limit="1.0")], clock)
    r = store.reserve("qa", Decimal("0.4"), timeout_s=5)
    clock.t += 10
    store.settle(r, Decimal("0.3"))  # the call happened: its cost counts even though the hold expired
    assert store.spent("qa") == Decimal("0.3")


def test_wildcard_limit_applies_to_each_workflow(make_store: Factory) -> None:
    store = make_store([BudgetLimit(workflow="*", limit="0.5")])
    store.reserve("a", Decimal("0.5"))
    store.reserve("b", Decimal("0.5"))
    with pytest.raises(BudgetRefusedError):
        store.reserve("a", Decimal("0.01"))


def test_bad_arguments_are_typed_errors(make_store: Factory) -> None:
    store = make_store([])
    with pytest.raises(InvalidInputError, match="finite number >= 0"):
        store.reserve("qa", Decimal("-1"))
    with pytest.raises(InvalidInputError, match="timeout_s"):
        store.reserve("qa", Decimal("1"), timeout_s=0)
    with pytest.raises(InvalidInputError, match="workflow"):
        store.reserve("", Decimal("1"))
    with pytest.raises(InvalidInputError, match="window"):
        store.spent("qa", "week")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="Reservation"):
        store.settle("abc", Decimal("1"))  # type: ignore[arg-type]


def test_async_twins_share_the_same_accounting(make_store: Factory) -> None:
    store = make_store([BudgetLimit(workflow="qa", limit="1.0")])

    async def go() -> list[bool]:
        async def one() -> bool:
            try:
                r = await store.areserve("qa", Decimal("0.1"))
            except BudgetRefusedError:
                return False
            await asyncio.sleep(0)
            await store.asettle(r, Decimal("0.1"))
            return True

        return list(await asyncio.gather(*(one() for _ in range(30))))

    done = asyncio.run(go())
    assert sum(done) == 10
    assert store.spent("qa") == Decimal("1.0")


def test_threads_never_overshoot(make_store: Factory) -> None:
    store = make_store([BudgetLimit(workflow="qa", limit="2.0")])
    ok: list[int] = []

    def work() -> None:
        n = 0
        for _ in range(40):
            try:
                r = store.reserve("qa", Decimal("0.1"))
            except BudgetRefusedError:
                continue
            store.settle(r, Decimal("0.1"))
            n += 1
        ok.append(n)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(ok) == 20
    assert store.spent("qa") == Decimal("2.0")


def test_reprs_and_errors_hide_the_redis_password() -> None:
    with pytest.raises(Exception) as info:
        RedisBudgetStore("redis://user:hunter2secret@127.0.0.1:1/0")
    assert "hunter2secret" not in str(info.value)
    assert "hunter2secret" not in repr(info.value)


# ---------------------------------------------------------------------- the invariant (hypothesis)
ops = st.lists(
    st.tuples(st.sampled_from(["reserve", "settle", "release"]), st.integers(0, 400), st.integers(0, 100)),
    max_size=40,
)


@pytest.fixture(scope="module")
def sqlite_for_hypothesis(tmp_path_factory: pytest.TempPathFactory) -> BudgetStore:
    return SQLiteBudgetStore(tmp_path_factory.mktemp("h") / "b.db", [BudgetLimit(workflow="*", limit="0.001")])


@pytest.mark.parametrize("kind", ["inprocess", "sqlite"])
@given(ops=ops)
def test_spent_plus_held_never_exceeds_the_limit(
    kind: str, ops: list[tuple[str, int, int]], sqlite_for_hypothesis: BudgetStore
) -> None:
    limit = Decimal("0.001")  # 1,000 micro-dollars
    lim = [BudgetLimit(workflow="*", limit=limit)]
    store = InProcessBudgetStore(lim) if kind == "inprocess" else sqlite_for_hypothesis
    wf = f"w{time.monotonic_ns()}"  # a fresh workflow per example on the one database
    live: list[Any] = []
    settled = Decimal(0)
    for op, micros, pct in ops:
        if op == "reserve":
            amount = Decimal(micros) / 1_000_000
            fits = settled + sum((r.amount for r in live), Decimal(0)) + amount <= limit
            try:
                live.append(store.reserve(wf, amount))
                assert fits
            except BudgetRefusedError:
                assert not fits
        elif live:
            r = live.pop(micros % len(live))
            if op == "settle":
                actual = (r.amount * pct / 100).quantize(Decimal("1e-9"))
                store.settle(r, actual)
                settled += actual
            else:
                store.release(r)
        assert store.spent(wf) == settled
        assert store.reserved(wf) == sum((r.amount for r in live), Decimal(0))
        assert store.spent(wf) + store.reserved(wf) <= limit


# ---------------------------------------------------------------------- many processes
def _worker(mode: str, spec: dict[str, Any]) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.Popen(
        [sys.executable, str(WORKER), mode, json.dumps(spec)], stdout=subprocess.PIPE, text=True, env=env
    )


def _spec(kind: str, tmp_path: Path, redis_url: str | None, **extra: Any) -> dict[str, Any]:
    base = {"backend": kind, "workflow": f"w{time.monotonic_ns()}"}
    base.update({"url": redis_url} if kind == "redis" else {"path": str(tmp_path / "shared.db")})
    return {**base, **extra}


@pytest.mark.slow
@pytest.mark.server
@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_eight_processes_never_overshoot_the_shared_budget(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("redis_url") if kind == "redis" else None
    # 8 x 150 calls settle at least 6 USD (each 0.005 to 0.01), so the 5.005 USD limit is contended
    amount, limit = Decimal("0.01"), Decimal("5.005")
    spec = _spec(kind, tmp_path, url, limit=str(limit), amount=str(amount), calls=150)
    procs = [_worker("budget", {**spec, "seed": i}) for i in range(8)]
    outs = [json.loads(p.communicate(timeout=300)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    settled = sum((Decimal(o["settled"]) for o in outs), Decimal(0))
    store = _spec_store(spec)
    assert store.spent(spec["workflow"]) == settled
    assert store.reserved(spec["workflow"]) == 0
    assert settled <= limit  # settlements never exceed their holds, so the limit itself holds
    assert sum(o["refused"] for o in outs) > 0


def _spec_store(spec: dict[str, Any]) -> BudgetStore:
    sys.path.insert(0, str(WORKER.parent))
    try:
        from _state_worker import store_from
    finally:
        sys.path.pop(0)
    return store_from(spec)  # type: ignore[no-any-return]


@pytest.mark.slow
@pytest.mark.server
@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_a_worker_killed_mid_call_leaks_nothing_past_its_timeout(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("redis_url") if kind == "redis" else None
    spec = _spec(kind, tmp_path, url, limit="1.0", amount="0.7", timeout_s=2.0)
    victim = _worker("hold", spec)
    held = victim.stdout.readline().strip() if victim.stdout else ""
    assert len(held) == 32
    store = _spec_store(spec)
    assert store.reserved(spec["workflow"]) == Decimal("0.7")
    with pytest.raises(BudgetRefusedError):
        store.reserve(spec["workflow"], Decimal("0.7"))
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate(timeout=30)
    deadline = time.monotonic() + 30
    while store.reserved(spec["workflow"]) != 0:
        assert time.monotonic() < deadline, "the dead worker's reservation was never reclaimed"
        time.sleep(0.2)
    r = store.reserve(spec["workflow"], Decimal("1.0"))
    store.settle(r, Decimal("0.25"))
    assert store.spent(spec["workflow"]) == Decimal("0.25")


# ---------------------------------------------------------------------- the dispatcher holds before sending
def test_dispatcher_holds_the_worst_case_and_settles_the_real_cost(tmp_path: Path) -> None:
    from ctxkit.dispatch import Dispatcher
    from ctxkit.dispatch.backends.base import as_request
    from ctxkit.dispatch.backends.function import FunctionBackend
    from ctxkit.pricing import default_price_book
    from ctxkit.state.hold import worst_case_cost

    seen: list[Decimal] = []
    store = SQLiteBudgetStore(tmp_path / "b.db", [BudgetLimit(workflow="qa", limit="0.001")])

    def answer(messages: Any) -> str:
        seen.append(store.reserved("qa"))  # the hold is in place while the model runs
        return "ok"

    backend = FunctionBackend(answer, model="gpt-4o-mini")
    d = Dispatcher({"main": backend}, budget_store=store, budget_workflow="qa")
    worst = worst_case_cost(as_request("hello there", max_tokens=200), "gpt-4o-mini", default_price_book())
    result = d.run("hello there", max_tokens=200)
    assert seen == [worst]
    assert result.cost is not None
    assert result.cost < worst
    assert store.spent("qa") == result.cost
    assert store.reserved("qa") == 0
    # a call whose worst case does not fit is refused before the backend is called
    with pytest.raises(BudgetRefusedError, match="refused before sending"):
        d.run("hello there", max_tokens=2000)
    assert len(seen) == 1
    assert store.reserved("qa") == 0

    async def go() -> Any:
        return await d.arun("hello there", max_tokens=200)

    r2 = asyncio.run(go())
    assert store.spent("qa") == result.cost + r2.cost
    events = list(d.stream("hello there", max_tokens=200))
    assert events[-1].result is not None
    assert store.spent("qa") == result.cost + r2.cost + events[-1].result.cost
    assert store.reserved("qa") == 0


def test_dispatcher_releases_the_hold_when_the_call_fails(tmp_path: Path) -> None:
    from ctxkit.dispatch import Dispatcher, RetryPolicy
    from ctxkit.dispatch.backends.function import FunctionBackend
    from ctxkit.dispatch.errors import AllBackendsFailedError
    from ctxkit.errors import BackendError

    def broken(messages: Any) -> str:
        raise BackendError("the provider is down")

    store = InProcessBudgetStore([BudgetLimit(workflow="default", limit="1")])
    d = Dispatcher({"x": FunctionBackend(broken)}, budget_store=store, retry=RetryPolicy(max_attempts=1))
    with pytest.raises(AllBackendsFailedError):
        d.run("hi")
    assert store.reserved("default") == 0
    assert store.spent("default") == 0


def test_dispatcher_refuses_an_unpriced_model_under_a_shared_budget() -> None:
    from ctxkit.dispatch import Dispatcher
    from ctxkit.dispatch.backends.function import FunctionBackend

    d = Dispatcher(
        {"x": FunctionBackend(lambda m: "ok", model="no-such-model-xyz")}, budget_store=InProcessBudgetStore()
    )
    with pytest.raises(InvalidInputError, match="register_price"):
        d.run("hi")


@pytest.mark.slow
def test_multi_worker_example_runs_within_its_budget() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    env.pop("CTXKIT_REDIS_URL", None)
    env.pop("CTXKIT_POSTGRES_URL", None)
    args = ["--workers", "2", "--calls", "200", "--limit", "0.001"]
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "multi_worker.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "backend: SQLiteBudgetStore + SQLiteSink, 2 workers"
    answered, refused = (int(w) for w in lines[1].replace(",", "").split() if w.isdigit())
    assert answered + refused == 400
    assert refused > 0
    assert f"the ledger holds {answered} records" in lines[2]


def test_limits_come_from_workflow_budgets_and_bad_limits_are_typed_errors() -> None:
    from ctxkit.telemetry import WorkflowBudget

    store = InProcessBudgetStore([WorkflowBudget(workflow="qa", max_cost_per_day="0.5", max_tokens_per_call=100)])
    assert store.limits == (BudgetLimit(workflow="qa", limit=Decimal("0.5"), window="day"),)
    with pytest.raises(InvalidInputError, match="BudgetLimit"):
        InProcessBudgetStore(["qa"])  # type: ignore[list-item]
    with pytest.raises(InvalidInputError):
        BudgetLimit(workflow="qa", limit="0")
    with pytest.raises(InvalidInputError):
        BudgetLimit(workflow="qa", limit="1", window="week")  # type: ignore[arg-type]


def test_a_closed_sqlite_store_reopens_and_keeps_its_state(tmp_path: Path) -> None:
    store = SQLiteBudgetStore(tmp_path / "b.db", [BudgetLimit(workflow="qa", limit="1")])
    store.settle(store.reserve("qa", Decimal("0.4")), Decimal("0.4"))
    store.close()
    assert store.spent("qa") == Decimal("0.4")
    again = SQLiteBudgetStore(tmp_path / "b.db", [BudgetLimit(workflow="qa", limit="1")])
    with pytest.raises(BudgetRefusedError):
        again.reserve("qa", Decimal("0.7"))
    again.close()
    store.close()
