"""Ledger.record's input is one typed model, CallFacts; the keyword form builds it, and old ledger files still load."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctxkit.errors import InvalidInputError
from ctxkit.pricing import PriceBook
from ctxkit.telemetry import CallFacts, CallRecord, Ledger, WorkflowBudgetExceededError
from ctxkit.usage import Usage

OLD_FILE = Path(__file__).parent / "data" / "ledger_v0.jsonl"  # written by Ledger.to_jsonl before CallFacts existed
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class _Decision:
    route = "local"
    reason = "short query"
    router = "rules"
    escalated = True


# the calls that wrote OLD_FILE, in order, as the keyword form of that time took them
OLD_CALLS: list[dict[str, Any]] = [
    {
        "model": "gpt-4o-mini",
        "workflow": "qa",
        "usage": Usage(input_tokens=1000, cache_read_tokens=600, output_tokens=100),
        "latency_s": 0.5,
        "ttft_s": 0.1,
        "timestamp": T0,
        "task_id": "t1",
        "success": True,
    },
    {"model": "acme-xl", "workflow": "qa", "usage": Usage(input_tokens=10, output_tokens=1), "timestamp": T0},
    {"model": "gpt-4o", "usage": None, "error": ValueError("boom"), "timestamp": T0},
    {
        "model": "smollm2-135m-instruct",
        "usage": Usage(input_tokens=5, output_tokens=2),
        "decision": _Decision(),
        "attempts": 2,
        "timestamp": T0,
        "sections": {"system": 3, "query": 2},
        "uncompressed_input_tokens": 9,
    },
    {
        "model": "gpt-4o",
        "usage": {"input_tokens": 100, "output_tokens": 3},
        "cost": "0.5",
        "retrieved_ids": ["a", "b"],
        "gold_ids": {"b"},
        "metadata": {"k": [1, 2], "api_key": "secret"},
        "operation": "embeddings",
        "timestamp": T0,
    },
    {
        "model": "gpt-4o",
        "workflow": "qa",
        "usage": Usage(),
        "response_cache": "exact",
        "saved_cost": Decimal("0.01"),
        "cost": Decimal(0),
        "timestamp": T0,
    },
]


def _ledger() -> Ledger:
    return Ledger(price_book=PriceBook.builtin())


def _without_id(record: CallRecord) -> dict[str, Any]:
    return record.model_dump(exclude={"id"})


def test_a_ledger_file_written_before_call_facts_loads_unchanged() -> None:
    lines = OLD_FILE.read_text(encoding="utf-8").splitlines(keepends=True)
    ledger = Ledger.from_jsonl(OLD_FILE, price_book=PriceBook.builtin())
    assert len(ledger) == len(lines) == len(OLD_CALLS)
    out = io.StringIO()
    ledger.to_jsonl(out)
    assert out.getvalue() == "".join(lines), "a record read from an old file is written back differently"
    assert ledger.total_cost() is None  # acme-xl has no price: unknown, never 0
    assert ledger.report().rows


def test_the_same_calls_recorded_today_give_the_records_of_the_old_file() -> None:
    old = [json.loads(line) for line in OLD_FILE.read_text(encoding="utf-8").splitlines()]
    ledger = _ledger()
    for kw, before in zip(OLD_CALLS, old, strict=True):
        now = json.loads(ledger.record(**kw).model_dump_json())
        before.pop("id")
        now.pop("id")
        assert now == before, kw["model"]


@pytest.mark.parametrize("kw", OLD_CALLS, ids=lambda kw: str(kw["model"]))
def test_keywords_and_call_facts_record_the_same_call(kw: dict[str, Any]) -> None:
    ledger = _ledger()
    by_keywords = ledger.record(**kw)
    by_model = ledger.record(CallFacts(**kw))
    assert _without_id(by_keywords) == _without_id(by_model)


@given(
    model=st.sampled_from(["gpt-4o", "gpt-4o-mini", "acme-xl", "smollm2-135m-instruct"]),
    inp=st.integers(0, 10_000),
    out=st.integers(0, 1_000),
    reported=st.booleans(),
)
def test_cost_is_priced_only_when_not_given(model: str, inp: int, out: int, reported: bool) -> None:
    ledger = _ledger()
    usage = Usage(input_tokens=inp, output_tokens=out) if reported else None
    priced = ledger.record(model=model, usage=usage)
    price = PriceBook.builtin().get(model)
    expected = price.cost(usage) if (price is not None and usage is not None) else None
    assert priced.cost == expected
    assert ledger.record(model=model, usage=usage, cost=None).cost is None  # given as unknown: stays unknown
    assert ledger.record(model=model, usage=usage, cost="0.25").cost == Decimal("0.25")
    assert not CallFacts(model=model).cost_given and CallFacts(model=model, cost=None).cost_given


def test_every_fact_reaches_the_record_or_is_used_to_derive_it() -> None:
    facts = CallFacts(
        model="gpt-4o",
        workflow="w",
        usage=Usage(input_tokens=100, output_tokens=3),
        cost=Decimal("0.002"),
        backend="b",
        provider="p",
        latency_s=1.0,
        ttft_s=0.5,
        route="r",
        route_reason="why",
        escalated=True,
        attempts=3,
        local=True,
        cache_hit=False,
        uncompressed_input_tokens=300,
        sections={"system": 5},
        retrieval_hit=False,
        success=True,
        error="e",
        task_id="t1",
        operation="embeddings",
        timestamp=T0,
        metadata={"k": 1},
        response_cache="exact",
        saved_cost=Decimal("0.01"),
    )
    record = _ledger().record(facts)
    for name in CallFacts.model_fields:
        if name in CallRecord.model_fields:
            assert getattr(record, name) == getattr(facts, name), name
    derived_only = {"decision", "prompt", "retrieved_ids", "gold_ids"}  # inputs of route, sections, retrieval_hit
    assert set(CallFacts.model_fields) - set(CallRecord.model_fields) == derived_only


def test_facts_are_scrubbed_of_secrets_as_soon_as_they_are_built() -> None:
    facts = CallFacts(model="gpt-4o", metadata={"api_key": "sk-live-1234567890abcdef"}, error=KeyError("x"))
    assert "sk-live" not in repr(facts) and "sk-live" not in str(facts.metadata)
    assert facts.error is not None and facts.error.startswith("KeyError")


def test_bad_keyword_fields_are_clear_errors() -> None:
    ledger = _ledger()
    with pytest.raises(InvalidInputError, match=r"unknown field\(s\) \['bogus'\].*CallFacts"):
        ledger.record(model="gpt-4o", bogus=1)
    with pytest.raises(InvalidInputError, match="needs model="):
        ledger.record(usage=Usage())
    with pytest.raises(InvalidInputError, match="not both"):
        ledger.record(CallFacts(model="gpt-4o"), workflow="qa")
    with pytest.raises(InvalidInputError, match="retrieved_ids must be a list of ids"):
        ledger.record(model="gpt-4o", retrieved_ids="abc", gold_ids=["a"])
    with pytest.raises(InvalidInputError, match="metadata must be a mapping"):
        ledger.record(model="gpt-4o", metadata="x")
    with pytest.raises(InvalidInputError, match=r"usage must be a ctxkit\.Usage"):
        ledger.record(model="gpt-4o", usage=5)
    assert len(ledger) == 0


def test_preflight_prices_a_draft_built_from_call_facts() -> None:
    ledger = _ledger()
    ledger.set_budget(workflow="qa", max_cost_per_call="0.001", action="raise")
    ledger.preflight(workflow="qa", model="gpt-4o", input_tokens=100, max_output_tokens=10)  # 0.00035 USD: fits
    with pytest.raises(WorkflowBudgetExceededError, match="cost per call"):
        ledger.preflight(workflow="qa", model="gpt-4o", input_tokens=1_000, max_output_tokens=1_000)
    assert len(ledger) == 0, "a preflight draft is not kept"
