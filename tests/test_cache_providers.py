"""One source of prices (the price book) and one path per cache provider."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from ctxkit import Assembler, InvalidInputError, Message, ToolSpec, UnknownNameError, pricing
from ctxkit.cache import (
    DEFAULT_PRICES,
    AnthropicCache,
    CachePlan,
    CachePrices,
    CacheProvider,
    LlamaCppCache,
    OpenAICache,
    cache_provider,
    cache_providers,
    plan_anthropic,
    plan_cache,
    plan_openai,
    prefix_info,
    prices_for,
    provider_for,
    register_cache_provider,
    rules_for,
    segments,
    simulate,
)
from ctxkit.cache import provider as provider_module
from ctxkit.pricing import default_price_book, register_price

WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")
TOOL = ToolSpec(name="lookup", description="Look a word up.", parameters={"properties": {}, "type": "object"})


def _text(n_words: int, seed: int = 0) -> str:
    return " ".join(WORDS[(i * 3 + seed) % len(WORDS)] for i in range(n_words))


def _history(turns: int) -> list[Message]:
    out: list[Message] = []
    for i in range(turns):
        out += [Message.user(_text(40, i)), Message.assistant(_text(40, i + 1))]
    return out


@pytest.fixture(autouse=True)
def _fresh_default_book() -> Iterator[None]:
    """Each test sees the shipped book; overrides made in a test do not leak."""
    pricing._default = None
    yield
    pricing._default = None


def _exact(value: float) -> Decimal:
    return Decimal(repr(value))


# ----------------------------------------------------------------- one price source
def test_cache_prices_are_the_price_book_s_numbers() -> None:
    priced = [p for p in default_price_book().prices() if not p.local and p.provider in ("anthropic", "openai")]
    assert len(priced) >= 20
    for book in priced:
        cache = prices_for(book.model)
        assert _exact(cache.input) == book.input, book.model
        assert _exact(cache.output) == book.output, book.model
        read = book.cache_read if book.cache_read is not None else book.input
        assert _exact(cache.cache_read) == read, book.model
        if book.provider == "anthropic":
            assert book.cache_write_5m is not None
            assert _exact(cache.write_price("5m")) == book.cache_write_5m, book.model
            if book.cache_write_1h is not None:  # a retired model may lack a published 1-hour price
                assert _exact(cache.write_price("1h")) == book.cache_write_1h, book.model
        else:  # OpenAI: every retention writes at the book's write price, or at the input price when it lists none
            write = book.cache_write_5m if book.cache_write_5m is not None else book.input
            for ttl in ("in_memory", "24h", "30m"):
                assert _exact(cache.write_price(ttl)) == write, (book.model, ttl)


def test_default_prices_is_a_view_of_the_book() -> None:
    assert len(DEFAULT_PRICES) >= 8
    for name in ("claude-sonnet-4-5", "claude-haiku-4-5", "gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-5"):
        assert name in DEFAULT_PRICES
    for name, cache in DEFAULT_PRICES.items():
        book = prices_for(name)
        assert (cache.input, cache.cache_read, cache.output) == (book.input, book.cache_read, book.output), name
        for ttl in rules_for(name).ttls_s:
            assert cache.write_price(ttl) == book.write_price(ttl), (name, ttl)


def test_a_price_override_reaches_the_planner_and_the_simulator() -> None:
    asm = Assembler("claude-sonnet-4-5")
    prompts = [asm.assemble(query=f"q{i}", system=_text(1500), tools=[TOOL], history=_history(i)) for i in range(3)]
    plan = plan_anthropic(prompts[0], remaining_calls=4, interval_s=30)
    report = simulate(prompts, gaps_s=30, output_tokens=20)
    book = default_price_book().get("claude-sonnet-4-5")
    assert book is not None
    tenfold = {
        k: str(getattr(book, k) * 10) for k in ("input", "output", "cache_read", "cache_write_5m", "cache_write_1h")
    }
    register_price(model="claude-sonnet-4-5", provider="anthropic", **tenfold)
    assert prices_for("claude-sonnet-4-5").input == float(book.input * 10)
    assert DEFAULT_PRICES["claude-sonnet-4-5"].input == float(book.input * 10)
    dear = plan_anthropic(prompts[0], remaining_calls=4, interval_s=30)
    assert plan.breakpoints and [(b.segment_index, b.ttl) for b in dear.breakpoints] == [
        (b.segment_index, b.ttl) for b in plan.breakpoints
    ]  # scaling every price by 10 changes no decision, only the figures
    assert dear.expected_cost_without == pytest.approx(10 * plan.expected_cost_without, rel=1e-12)
    assert dear.expected_cost_with == pytest.approx(10 * plan.expected_cost_with, rel=1e-12)
    assert simulate(prompts, gaps_s=30, output_tokens=20).total_cost == pytest.approx(10 * report.total_cost, rel=1e-12)


def test_openai_prices_without_a_write_price_bill_writes_at_input() -> None:
    register_price(model="acme-openai-model", provider="openai", input="2", output="8", cache_read="0.5")
    cache = prices_for("acme-openai-model")
    assert (cache.input, cache.cache_read, cache.output) == (2.0, 0.5, 8.0)
    assert all(cache.write_price(ttl) == 2.0 for ttl in ("in_memory", "24h", "30m"))
    explicit = CachePrices.openai(2.0, 0.5, 8.0, write=2.5)
    assert explicit.write_price("30m") == 2.5 and explicit.write_price("in_memory") == 2.5


# ----------------------------------------------------------------- one path per provider
@pytest.fixture(scope="module")
def prompts() -> dict[str, object]:
    claude = Assembler("claude-sonnet-4-5").assemble(query="q", system=_text(1500), tools=[TOOL], history=_history(3))
    gpt = Assembler("gpt-4o").assemble(query="q", system=_text(1500), tools=[TOOL], history=_history(3))
    local = Assembler("smollm2-135m-instruct").assemble(query="q", system=_text(300), history=_history(2))
    return {"anthropic": claude, "openai": gpt, "llamacpp": local}


def test_plan_cache_takes_each_provider_s_path(prompts: dict[str, object]) -> None:
    claude, gpt, local = prompts["anthropic"], prompts["openai"], prompts["llamacpp"]
    kw = {"remaining_calls": 3, "interval_s": 45.0}
    assert plan_cache(claude, **kw) == plan_anthropic(claude, **kw)  # type: ignore[arg-type]
    assert plan_cache(gpt, **kw) == plan_openai(gpt, **kw)  # type: ignore[arg-type]
    plan = plan_cache(local, **kw)  # type: ignore[arg-type]
    assert plan.provider == "llamacpp" and plan.breakpoints == () and plan.horizon_calls == 4
    assert plan.cacheable_tokens == prefix_info(local, provider="llamacpp").tokens > 0  # type: ignore[arg-type]
    assert plan.expected_cost_without == plan.expected_cost_with == 0.0
    assert plan.apply(local) == {**local.to_openai(), "cache_prompt": True}  # type: ignore[attr-defined, arg-type]
    assert plan.message_indices(local) == ()  # type: ignore[arg-type]
    assert plan_cache(local, cache_key="k", static_interval_s=5.0).provider == "llamacpp"  # type: ignore[arg-type]


def test_plan_cache_refuses_another_provider_s_options(prompts: dict[str, object]) -> None:
    claude, gpt = prompts["anthropic"], prompts["openai"]
    with pytest.raises(InvalidInputError, match="cache_key is an OpenAI option"):
        plan_cache(claude, cache_key="user-1")  # type: ignore[arg-type]
    for option in ("static_interval_s", "may_be_cached"):
        value: object = 30.0 if option == "static_interval_s" else True
        with pytest.raises(InvalidInputError, match="Anthropic options"):
            plan_cache(gpt, **{option: value})  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="unknown options"):
        plan_cache(gpt, ttl="5m")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="OpenAI rules"):
        plan_openai(claude)  # type: ignore[arg-type]


def test_simulation_prices_come_from_the_provider(prompts: dict[str, object]) -> None:
    gpt = prompts["openai"]
    local = simulate([gpt, gpt], provider="llamacpp", rules=rules_for("llamacpp"), output_tokens=10)  # type: ignore[list-item]
    assert local.provider == "llamacpp" and local.total_cost == 0.0
    assert local.calls[1].cached_tokens == segments(gpt, provider="llamacpp")[-1].end  # type: ignore[arg-type]
    remote = simulate([gpt, gpt], output_tokens=10)  # type: ignore[list-item]
    first = remote.calls[0]
    p = prices_for("gpt-4o")
    assert first.cost == pytest.approx(
        (first.uncached_tokens * p.input + first.written_tokens * p.write_price("in_memory") + 10 * p.output) / 1e6,
        rel=1e-12,
    )


def test_providers_are_objects_looked_up_by_name() -> None:
    assert {name: type(p) for name, p in cache_providers().items()} == {
        "anthropic": AnthropicCache,
        "openai": OpenAICache,
        "llamacpp": LlamaCppCache,
    }
    assert isinstance(provider_for("anthropic:claude-sonnet-4-5"), AnthropicCache)
    assert isinstance(provider_for("gpt-4o-2024-08-06"), OpenAICache)
    assert isinstance(provider_for("smollm2-135m-instruct"), LlamaCppCache)
    assert isinstance(provider_for("mystery-model"), OpenAICache)  # no rules: rendered the OpenAI way
    assert cache_provider("anthropic").system_first and not cache_provider("openai").system_first
    assert cache_provider("anthropic").rules("claude-haiku-4-5").min_cacheable_tokens == 4096
    assert cache_provider("llamacpp").prices("smollm2-135m-instruct").cost(uncached=10**6, output=10**6) == 0.0
    with pytest.raises(UnknownNameError, match="register_cache_provider"):
        cache_provider("acme")
    with pytest.raises(InvalidInputError, match="CacheProvider"):
        register_cache_provider("anthropic")  # type: ignore[arg-type]


class _Recorder(LlamaCppCache):
    name = "recorder-test"

    def apply(self, plan: CachePlan, prompt: object) -> dict[str, object]:
        return {"recorded": plan.model}


def test_a_registered_provider_gets_the_calls(prompts: dict[str, object]) -> None:
    gpt = prompts["openai"]
    with pytest.raises(UnknownNameError, match="recorder-test"):
        simulate([gpt], provider="recorder-test")  # type: ignore[list-item]
    recorder = register_cache_provider(_Recorder())
    try:
        assert isinstance(recorder, CacheProvider) and cache_provider("recorder-test") is recorder
        plan = CachePlan(
            provider="recorder-test",
            model="gpt-4o",
            cacheable_tokens=0,
            horizon_calls=1,
            expected_cost_without=0.0,
            expected_cost_with=0.0,
        )
        assert plan.apply(gpt) == {"recorded": "gpt-4o"}  # type: ignore[arg-type]
        report = simulate([gpt, gpt], provider="recorder-test")  # type: ignore[list-item]
        assert report.provider == "recorder-test" and report.total_cost == 0.0
        assert report.calls[1].cached_tokens > 0
    finally:
        provider_module._providers.pop("recorder-test", None)
