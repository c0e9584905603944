"""Exact pricing: the shipped price book, published billing examples, lookup rules, overrides."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxkit import pricing
from ctxkit.errors import InvalidInputError
from ctxkit.models import known_models
from ctxkit.pricing import ModelPrice, PriceBook, cost, cost_breakdown, get_price, load_prices, register_price
from ctxkit.usage import Usage

EXAMPLES = settings().max_examples  # the conftest profile (CTXKIT_HYPOTHESIS_EXAMPLES)


@pytest.fixture(autouse=True)
def _fresh_default_book() -> Iterator[None]:
    """Each test sees the shipped book; overrides made in a test do not leak."""
    pricing._default = None
    yield
    pricing._default = None


# ---------------------------------------------------------------------------- published examples
def test_openai_cached_tokens_example_gpt4o() -> None:
    # OpenAI's prompt-caching guide shows this usage object: 2006 prompt tokens, 1920 of them cached.
    # gpt-4o lists $2.50 input, $1.25 cached input, $10.00 output per 1M tokens:
    #   (2006-1920)*2.50 + 1920*1.25 + 300*10.00 = 215 + 2400 + 3000 = 5615 micro-dollars.
    usage = Usage.from_openai(
        {
            "prompt_tokens": 2006,
            "completion_tokens": 300,
            "total_tokens": 2306,
            "prompt_tokens_details": {"cached_tokens": 1920},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }
    )
    assert cost(usage, "gpt-4o") == Decimal("0.005615")
    # the peer mistake: pricing cached tokens as normal input
    assert cost(usage, "gpt-4o") != Decimal(2006 * 2.5 + 300 * 10) / 1_000_000


def test_openai_o1_cached_and_reasoning() -> None:
    # o1: $15 input, $7.50 cached input, $60 output; reasoning tokens are output tokens.
    usage = Usage.from_openai(
        {
            "prompt_tokens": 1000,
            "completion_tokens": 5000,
            "prompt_tokens_details": {"cached_tokens": 500},
            "completion_tokens_details": {"reasoning_tokens": 4000},
        }
    )
    expected = (Decimal(500) * 15 + Decimal(500) * Decimal("7.5") + Decimal(5000) * 60) / 1_000_000
    assert cost(usage, "o1") == expected == Decimal("0.31125")
    b = cost_breakdown(usage, "o1")
    assert b is not None and b.reasoning == Decimal("0.24") and b.output == Decimal("0.06")


def test_anthropic_cache_write_then_read_example() -> None:
    # Anthropic's prompt-caching example response on Claude Opus 4: first call writes 188086 tokens,
    # the second reads them. Opus 4: $15 input, $18.75 5m write, $1.50 cache hit, $75 output.
    first = Usage.from_anthropic(
        {"input_tokens": 21, "cache_creation_input_tokens": 188086, "cache_read_input_tokens": 0, "output_tokens": 393}
    )
    second = Usage.from_anthropic(
        {"input_tokens": 21, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 188086, "output_tokens": 393}
    )
    assert first.input_tokens == 21 + 188086 and first.uncached_input_tokens == 21
    # 21*15 + 188086*18.75 + 393*75 = 315 + 3526612.5 + 29475
    assert cost(first, "claude-opus-4-20250514") == Decimal("3.5564025")
    # 21*15 + 188086*1.50 + 393*75 = 315 + 282129 + 29475
    assert cost(second, "claude-opus-4-20250514") == Decimal("0.311919")
    # the peer mistake: a cache write counted twice (as input and as write)
    assert (
        cost(first, "claude-opus-4")
        != (Decimal(21 + 188086) * 15 + Decimal(188086) * Decimal("18.75") + Decimal(393) * 75) / 1_000_000
    )


def test_anthropic_one_hour_writes_cost_double_input() -> None:
    usage = Usage.from_anthropic(
        {
            "input_tokens": 50,
            "cache_creation_input_tokens": 1500,
            "cache_read_input_tokens": 0,
            "output_tokens": 10,
            "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 500},
        }
    )
    assert usage.cache_write_tokens == 1500
    assert usage.cache_write_1h_tokens == 500 and usage.cache_write_5m_tokens == 1000
    b = cost_breakdown(usage, "claude-sonnet-4-5")
    assert b is not None
    assert b.cache_write_5m == Decimal("0.00375")  # 1000 * 3.75
    assert b.cache_write_1h == Decimal("0.003")  # 500 * 6.00
    assert b.total == Decimal(50 * 3 + 1000 * Decimal("3.75") + 500 * 6 + 10 * 15) / 1_000_000


@pytest.mark.parametrize("name", [p.model for p in PriceBook.builtin().prices() if p.provider == "anthropic"])
def test_anthropic_multipliers_hold_for_every_model(name: str) -> None:
    # Anthropic documents: 5-minute writes 1.25x base input, 1-hour writes 2x, cache hits 0.1x.
    p = get_price(name)
    assert p is not None
    if name == "claude-3-haiku":
        # the one model whose published table rounds the multiples ($0.3125 -> $0.30, $0.025 -> $0.03)
        assert (p.cache_write_5m, p.cache_write_1h, p.cache_read) == (Decimal("0.30"), Decimal("0.50"), Decimal("0.03"))
        return
    assert p.cache_write_5m == p.input * Decimal("1.25")
    assert p.cache_read == p.input * Decimal("0.1")
    assert p.cache_write_1h is None or p.cache_write_1h == p.input * 2
    for tier in p.tiers:
        assert tier.cache_write_5m == tier.input * Decimal("1.25") and tier.cache_read == tier.input * Decimal("0.1")


def test_long_context_tier_prices_whole_request() -> None:
    small = Usage(input_tokens=200_000, output_tokens=1000)
    big = Usage(input_tokens=200_001, output_tokens=1000)
    assert cost(small, "claude-sonnet-4-5") == Decimal("0.615")  # 200000*3 + 1000*15
    assert cost(big, "claude-sonnet-4-5") == (Decimal(200_001) * 6 + Decimal(1000) * Decimal("22.5")) / 1_000_000


# ---------------------------------------------------------------------------- the book as data
def test_book_has_date_and_sources() -> None:
    book = PriceBook.builtin()
    assert book.as_of is not None and book.as_of.year >= 2025
    assert len(book) >= 30
    for p in book.prices():
        assert p.sources and all(s.startswith("https://") for s in p.sources), p.model
        assert p.as_of == book.as_of


def test_every_registered_model_has_a_price() -> None:
    missing = [m for m in known_models() if get_price(m) is None]
    assert missing == []


def test_prices_are_exact_decimals_from_strings() -> None:
    raw = json.loads(Path(pricing.__file__).with_name("data").joinpath("prices.json").read_text())
    assert all(isinstance(v["input"], str) for v in raw["models"].values())
    p = get_price("gpt-4o-mini")
    assert p is not None and p.cache_read == Decimal("0.075") and isinstance(p.cache_read, Decimal)


# ---------------------------------------------------------------------------- lookup rules
@pytest.mark.parametrize(
    ("model", "resolved"),
    [
        ("gpt-4o", "gpt-4o"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),  # its own (higher) price, not the family's
        ("openai:gpt-4.1-mini", "gpt-4.1-mini"),
        ("GPT-4O-MINI", "gpt-4o-mini"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-opus-4-0", "claude-opus-4"),
        ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
        ("anthropic.claude-3-5-sonnet-20241022-v2:0", "claude-3-5-sonnet"),
        ("us.anthropic.claude-sonnet-4-20250514-v1:0", "claude-sonnet-4"),
        ("openai/gpt-5-mini", "gpt-5-mini"),
    ],
)
def test_lookup_resolves(model: str, resolved: str) -> None:
    p = get_price(model)
    assert p is not None and p.model == resolved


@pytest.mark.parametrize("model", ["claude-opus-4-7", "gpt-4o-mini-tts", "gpt-6", "mistral-large", "", "o3-pro"])
def test_unknown_is_none_never_zero(model: str) -> None:
    assert get_price(model) is None
    assert cost(Usage(input_tokens=10, output_tokens=10), model) is None


def test_unpublished_bucket_makes_cost_unknown() -> None:
    # gpt-4-turbo has no cached-input price: cached tokens cannot be priced, so the cost is unknown
    assert cost(Usage(input_tokens=100, output_tokens=5), "gpt-4-turbo") == Decimal("0.00115")
    assert cost(Usage(input_tokens=100, cache_read_tokens=50, output_tokens=5), "gpt-4-turbo") is None
    # claude-3-5-sonnet has no published 1-hour write price
    u = Usage(input_tokens=100, cache_write_tokens=50, cache_write_1h_tokens=50)
    assert cost(u, "claude-3-5-sonnet") is None
    assert cost(Usage(input_tokens=100, cache_write_tokens=50), "claude-3-5-sonnet") is not None


def test_local_models_cost_zero_explicitly() -> None:
    u = Usage(input_tokens=1000, output_tokens=100)
    for model in ("smollm2-135m-instruct", "llamacpp:/models/x.gguf", "gguf:/tmp/m.gguf", "local:my-model"):
        p = get_price(model)
        assert p is not None and p.local, model
        assert cost(u, model) == Decimal(0)


# ---------------------------------------------------------------------------- overrides
def test_register_price_overrides_and_extends() -> None:
    register_price(model="my-finetune", provider="openai", input="0.30", output="1.20", cache_read="0.15")
    assert cost(Usage(input_tokens=1_000_000, cache_read_tokens=500_000, output_tokens=0), "my-finetune") == Decimal(
        "0.225"
    )
    register_price(ModelPrice(model="gpt-4o", input=Decimal(1), output=Decimal(2), cache_read=Decimal("0.5")))
    assert cost(Usage(input_tokens=1_000_000, output_tokens=1_000_000), "gpt-4o-2024-08-06") == Decimal(3)


def test_register_without_replace_refuses_existing() -> None:
    book = PriceBook.builtin()
    with pytest.raises(InvalidInputError, match="replace=True"):
        book.register(ModelPrice(model="gpt-4o", input=Decimal(1), output=Decimal(1)))


def test_load_prices_from_file(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(
        json.dumps(
            {
                "as_of": "2026-01-01",
                "models": {
                    "acme-1": {
                        "provider": "acme",
                        "input": "1.5",
                        "output": "2.5",
                        "sources": ["https://acme.example/pricing"],
                    },
                },
            }
        )
    )
    load_prices(path)
    assert cost(Usage(input_tokens=2_000_000, output_tokens=1_000_000), "acme-1") == Decimal("5.5")
    assert get_price("gpt-4o") is not None  # the shipped prices stay


@pytest.mark.parametrize(
    "data",
    [
        {"nope": 1},
        {"models": {"x": {"input": "1"}}},
        {"models": {"x": {"input": "-1", "output": "1"}}},
        {"as_of": "yesterday", "models": {}},
        {"models": {"x": "cheap"}},
    ],
)
def test_bad_price_data_is_a_clear_error(data: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        PriceBook.from_dict(data)


def test_float_rates_keep_their_decimal_value() -> None:
    p = ModelPrice(model="f", input=0.075, output=0.6)
    assert p.input == Decimal("0.075") and p.output == Decimal("0.6")


# ---------------------------------------------------------------------------- properties
usages = st.builds(
    lambda uncached, read, w5, w1, vis, reason: Usage(
        input_tokens=uncached + read + w5 + w1,
        cache_read_tokens=read,
        cache_write_tokens=w5 + w1,
        cache_write_1h_tokens=w1,
        output_tokens=vis + reason,
        reasoning_tokens=reason,
    ),
    *(st.integers(0, 150_000) for _ in range(4)),
    st.integers(0, 50_000),
    st.integers(0, 50_000),
)
anthropic_models = [p.model for p in PriceBook.builtin().prices() if p.provider == "anthropic" and p.cache_write_1h]


@settings(max_examples=EXAMPLES, deadline=None)
@given(usage=usages, model=st.sampled_from(anthropic_models))
def test_cost_matches_rational_arithmetic(usage: Usage, model: str) -> None:
    p = get_price(model)
    assert p is not None
    r = p.rates_for(usage)
    assert r.cache_read is not None and r.cache_write_5m is not None and r.cache_write_1h is not None

    def f(d: Decimal) -> Fraction:
        return Fraction(d)

    expected = (
        usage.uncached_input_tokens * f(r.input)
        + usage.cache_read_tokens * f(r.cache_read)
        + usage.cache_write_5m_tokens * f(r.cache_write_5m)
        + usage.cache_write_1h_tokens * f(r.cache_write_1h)
        + usage.output_tokens * f(r.output)
    ) / 1_000_000
    got = cost(usage, model)
    assert got is not None and Fraction(got) == expected


@settings(max_examples=EXAMPLES, deadline=None)
@given(a=usages, b=usages, model=st.sampled_from(["gpt-4o", "gpt-5", "o4-mini", "claude-haiku-4-5", "claude-opus-4-1"]))
def test_cost_is_additive_over_calls(a: Usage, b: Usage, model: str) -> None:
    ca, cb, cab = cost(a, model), cost(b, model), cost(a + b, model)
    assert ca is not None and cb is not None and cab is not None
    assert ca + cb == cab
    # caching never costs more than sending the same tokens uncached... except writes, which cost more
    plain = cost(Usage(input_tokens=a.input_tokens, output_tokens=a.output_tokens), model)
    assert plain is not None
    if a.cache_write_tokens == 0:
        assert ca <= plain


def test_reasoning_price_where_it_differs() -> None:
    book = PriceBook([ModelPrice(model="thinker", input=Decimal(1), output=Decimal(4), reasoning=Decimal(2))])
    u = Usage(input_tokens=1_000_000, output_tokens=3_000_000, reasoning_tokens=2_000_000)
    b = book.breakdown(u, "thinker")
    assert b is not None and (b.input, b.output, b.reasoning, b.total) == (1, 4, 4, 9)
    assert book.cost(u, "openai:thinker-2026-01-01") == 9


def test_usage_one_hour_split_is_backward_compatible() -> None:
    old = Usage(input_tokens=100, cache_write_tokens=40)
    assert old.cache_write_5m_tokens == 40 and old.cache_write_1h_tokens == 0
    assert (old + Usage(input_tokens=10, cache_write_tokens=10, cache_write_1h_tokens=10)).cache_write_1h_tokens == 10
    with pytest.raises(ValueError, match="cache_write_1h_tokens"):
        Usage(input_tokens=100, cache_write_tokens=10, cache_write_1h_tokens=20)
    assert Usage.from_anthropic({"input_tokens": 5, "output_tokens": 1}) == Usage(input_tokens=5, output_tokens=1)


def test_openai_responses_api_usage_shape() -> None:
    u = Usage.from_openai(
        {
            "input_tokens": 2006,
            "input_tokens_details": {"cached_tokens": 1920},
            "output_tokens": 300,
            "output_tokens_details": {"reasoning_tokens": 100},
        }
    )
    assert u == Usage(input_tokens=2006, cache_read_tokens=1920, output_tokens=300, reasoning_tokens=100)
    assert cost(u, "gpt-4o") == Decimal("0.005615")


@pytest.mark.parametrize("model", ["chatgpt-4o-latest", "gpt-3.5-turbo-0613", "gpt-4-1106-preview"])
def test_snapshots_with_their_own_old_prices_are_not_guessed(model: str) -> None:
    assert get_price(model) is None
