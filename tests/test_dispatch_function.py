"""FunctionBackend, the shipped test double: real counting, pricing and routing around a function."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ctxkit import InvalidInputError, Message, get_chat_counter
from ctxkit.dispatch import Dispatcher, FunctionBackend, ResidencyPolicy, Rule, RulesRouter


def test_counts_prices_and_routes_like_a_real_backend() -> None:
    local = FunctionBackend(lambda m: "local answer", model="smollm2-135m-instruct", local=True)
    remote = FunctionBackend(lambda m: f"echo {m[-1].content[:5]}", model="gpt-4o")
    d = Dispatcher(
        {"local": local, "flagship": remote},
        router=RulesRouter([Rule(route="flagship", min_tokens=50)], default="local"),
    )
    short = d.run([Message.user("hi")])
    assert short.text == "local answer" and short.decision is not None and short.decision.route == "local"
    assert short.cost == Decimal(0)
    msgs = [Message.user("long " * 100)]
    long = d.run(msgs)
    assert long.text == "echo long " and long.decision is not None and long.decision.route == "flagship"
    assert long.usage.input_tokens == get_chat_counter("gpt-4o").count_messages(msgs)
    assert long.cost is not None and long.cost > 0
    assert len(remote.calls) == 1


def test_sensitive_requests_never_reach_a_remote_function() -> None:
    remote = FunctionBackend(lambda m: "remote", model="gpt-4o")
    local = FunctionBackend(lambda m: "local", model="smollm2-135m-instruct", local=True)
    d = Dispatcher(
        {"flagship": remote, "local": local}, default="flagship", fallbacks=["local"], residency=ResidencyPolicy()
    )
    r = d.run([Message.user("my card is 4111 1111 1111 1111")], sensitive=True)
    assert r.text == "local" and not remote.calls


def test_bad_function_is_a_clear_error() -> None:
    with pytest.raises(InvalidInputError):
        FunctionBackend("not callable")  # type: ignore[arg-type]
    bad = FunctionBackend(lambda m: 42)  # type: ignore[arg-type, return-value]
    with pytest.raises(InvalidInputError, match="not str"):
        bad.generate("hi")
