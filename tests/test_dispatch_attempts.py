"""One attempt loop serves run, arun, stream and astream: the same script of backend failures must give
the same calls, waits, errors, route and attempt count in every flavour.

Backends here are :class:`~ctxkit.dispatch.FunctionBackend` whose function fails on a script (HTTP 429 /
500 / 400, a context overflow) before it answers; retries against real servers (Retry-After through a
failing proxy, a breaker opening) are in ``test_dispatch_server.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctxkit.dispatch import Dispatcher
from ctxkit.dispatch.backends.function import FunctionBackend
from ctxkit.dispatch.errors import AllBackendsFailedError, BackendHTTPError, ContextOverflowError
from ctxkit.dispatch.resilience import CircuitBreaker, RetryPolicy
from ctxkit.messages import Message

EXAMPLES = max(settings().max_examples // 4, 50)  # four flavours per example

OUTCOMES = ("ok", "429", "500", "400", "overflow")
ROUTES = ("a", "b", "c")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _backend(route: str, script: list[str], log: list[str]) -> FunctionBackend:
    steps = iter(script)

    def answer(messages: Sequence[Message]) -> str:
        step = next(steps, "ok")
        log.append(f"{route}:{step}")
        if step == "ok":
            return f"answer from {route}"
        if step == "overflow":
            raise ContextOverflowError(route, 9000, 4096)
        raise BackendHTTPError(f"HTTP {step}", backend=route, status_code=int(step))

    return FunctionBackend(answer, model="gpt-4o-mini", name=route)


def _dispatcher(scripts: dict[str, list[str]], log: list[str], waits: list[float], threshold: int) -> Dispatcher:
    clock = Clock()

    def sleep(seconds: float) -> None:
        waits.append(round(seconds, 9))
        clock.now += seconds

    backends = {r: _backend(r, scripts[r], log) for r in ROUTES}
    return Dispatcher(
        backends,
        default="a",
        fallbacks=["b", "c"],
        retry=RetryPolicy(max_attempts=3, base_delay_s=0.25, seed=7),
        breaker=CircuitBreaker(failure_threshold=threshold, reset_s=0.3, clock=clock),
        sleep=sleep,
    )


def _outcome(d: Dispatcher, flavour: str) -> dict[str, Any]:
    try:
        if flavour == "run":
            result = d.run("hello")
        elif flavour == "arun":
            result = asyncio.run(d.arun("hello"))
        elif flavour == "stream":
            events = list(d.stream("hello"))
            assert events[-1].kind == "done"
            result = events[-1].result
        else:

            async def consume() -> list[Any]:
                return [e async for e in d.astream("hello")]

            events = asyncio.run(consume())
            assert events[-1].kind == "done"
            result = events[-1].result
    except AllBackendsFailedError as exc:
        return {"error": {k: (type(v).__name__, getattr(v, "status_code", None)) for k, v in exc.errors.items()}}
    assert result is not None
    assert result.decision is not None
    return {"text": result.text, "route": result.decision.route, "attempts": result.attempts}


def _run(flavour: str, scripts: dict[str, list[str]], threshold: int) -> dict[str, Any]:
    log: list[str] = []
    waits: list[float] = []
    d = _dispatcher(scripts, log, waits, threshold)
    return {**_outcome(d, flavour), "calls": log, "waits": waits}


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    scripts=st.fixed_dictionaries({r: st.lists(st.sampled_from(OUTCOMES), max_size=4) for r in ROUTES}),
    threshold=st.integers(min_value=1, max_value=4),
)
def test_every_flavour_makes_the_same_calls_and_waits(scripts: dict[str, list[str]], threshold: int) -> None:
    reference = _run("run", scripts, threshold)
    for flavour in ("arun", "stream", "astream"):
        assert _run(flavour, scripts, threshold) == reference, flavour


@pytest.mark.parametrize("flavour", ["run", "arun", "stream", "astream"])
def test_a_context_overflow_moves_to_the_next_route_without_retrying(flavour: str) -> None:
    got = _run(flavour, {"a": ["overflow"], "b": ["ok"], "c": []}, threshold=5)
    assert got["calls"] == ["a:overflow", "b:ok"]
    assert got["waits"] == []
    assert got["route"] == "b"


@pytest.mark.parametrize("flavour", ["run", "arun", "stream", "astream"])
def test_retryable_errors_are_retried_with_backoff_then_fall_back(flavour: str) -> None:
    got = _run(flavour, {"a": ["429", "500", "503"], "b": ["400"], "c": ["500", "ok"]}, threshold=10)
    assert got["calls"] == ["a:429", "a:500", "a:503", "b:400", "c:500", "c:ok"]
    assert len(got["waits"]) == 3  # two between a's three tries, one between c's two; none after a 400
    assert got["route"] == "c"
    assert got["attempts"] == 2


@pytest.mark.parametrize("flavour", ["run", "arun", "stream", "astream"])
def test_an_open_breaker_gives_one_trial_call_per_reset(flavour: str) -> None:
    # threshold 1: a's first failure opens it; b answers. The trial slot is not spent by asking twice.
    got = _run(flavour, {"a": ["500"], "b": ["ok"], "c": []}, threshold=1)
    assert got["calls"] == ["a:500", "b:ok"]
    assert got["route"] == "b"


def test_async_flavours_do_not_block_the_loop_while_backing_off() -> None:
    ticks = 0

    async def main() -> tuple[str, int]:
        nonlocal ticks
        log: list[str] = []
        d = Dispatcher(
            {"a": _backend("a", ["429", "ok"], log)},
            retry=RetryPolicy(max_attempts=2, base_delay_s=0.2, seed=3),
        )

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        task = asyncio.create_task(ticker())
        result = await d.arun("hello")
        task.cancel()
        return result.text, result.attempts

    # the default sleep (time.sleep) becomes asyncio.sleep in arun; a blocking wait would starve the ticker
    text, attempts = asyncio.run(main())
    assert (text, attempts) == ("answer from a", 2)
    assert ticks >= 1


def test_an_injected_coroutine_sleep_is_awaited() -> None:
    waited: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waited.append(seconds)

    log: list[str] = []
    d = Dispatcher({"a": _backend("a", ["500", "ok"], log)}, retry=RetryPolicy(seed=1), sleep=fake_sleep)
    result = asyncio.run(d.arun("hello"))
    assert result.attempts == 2
    assert len(waited) == 1


@pytest.mark.parametrize("flavour", ["run", "arun", "stream", "astream"])
def test_every_flavour_answers_a_repeat_from_the_response_cache(flavour: str) -> None:
    from ctxkit.responses import ResponseCache

    log: list[str] = []
    d = Dispatcher({"a": _backend("a", ["ok", "ok"], log)}, response_cache=ResponseCache(semantic=False))
    first = _outcome(d, flavour)
    second = _outcome(d, flavour)
    assert log == ["a:ok"]  # the repeat never reached the backend
    assert second["text"] == first["text"] == "answer from a"
