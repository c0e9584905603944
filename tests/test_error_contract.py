"""Regression tests for the reproducers of issue 14: typed errors at the boundary, nothing silently wrong."""

from __future__ import annotations

import io
import logging
import math
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ctxkit import Budget, Message, SectionBudget, Usage
from ctxkit.assembly import Assembler
from ctxkit.cache import plan_cache
from ctxkit.compress import TruncateToolOutputs
from ctxkit.dispatch import Dispatcher
from ctxkit.dispatch.backends.base import Request
from ctxkit.dispatch.backends.function import FunctionBackend
from ctxkit.dispatch.errors import AllBackendsFailedError, BackendHTTPError
from ctxkit.errors import CtxkitError, InvalidInputError, ResourceError
from ctxkit.secrets import get_logger
from ctxkit.telemetry import Ledger
from ctxkit.telemetry.report import percentile


def _ledger(**kw: Any) -> Ledger:
    return Ledger(**kw)


# ---------------------------------------------------------------------- 8: the error contract
def test_dispatcher_run_rejects_a_negative_max_tokens() -> None:
    d = Dispatcher({"f": FunctionBackend(lambda m: "ok")})
    with pytest.raises(InvalidInputError, match="max_tokens"):
        d.run("hi", max_tokens=-1)
    request = Request(messages=(Message.user("hi"),))
    with pytest.raises(InvalidInputError, match="max_tokens"):  # a Request is validated again with new options
        d.run(request, max_tokens=0)


def test_budget_for_model_rejects_a_zero_input_limit() -> None:
    with pytest.raises(InvalidInputError, match="max_input_tokens"):
        Budget.for_model("gpt-4o", max_input_tokens=0)
    with pytest.raises(InvalidInputError, match="section 'system'"):
        Budget.for_model("gpt-4o", sections={"system": 5})  # type: ignore[dict-item]


def test_models_raise_invalid_input_which_is_also_a_value_error() -> None:
    with pytest.raises(InvalidInputError, match="field role, got 'bogus'") as info:
        Message(role="bogus")  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError) and isinstance(info.value, CtxkitError)
    assert info.value.errors[0]["loc"] == ("role",)
    assert info.value.__context__ is None and info.value.__cause__ is None  # the raw input is not kept
    with pytest.raises(InvalidInputError, match="min_tokens"):
        SectionBudget(min_tokens=5, max_tokens=3)
    with pytest.raises(InvalidInputError, match="Usage"):
        Usage.model_validate({"input_tokens": -1})
    with pytest.raises(InvalidInputError, match="Usage"):
        Usage.model_validate_json('{"input_tokens": "many"}')
    with pytest.raises(InvalidInputError, match=r"field sections\.system\.min_tokens"):
        Budget(context_window=100, sections={"system": {"min_tokens": -1}})  # type: ignore[dict-item]


def test_a_misspelt_field_is_an_error_not_a_zero() -> None:
    with pytest.raises(InvalidInputError, match="input_token"):
        Usage(input_token=5)  # type: ignore[call-arg]


def test_message_from_openai_names_the_malformed_tool_call() -> None:
    with pytest.raises(InvalidInputError, match=r"tool_calls\[0\]"):
        Message.from_openai({"role": "assistant", "tool_calls": [{"id": "x"}]})
    with pytest.raises(InvalidInputError, match="role"):
        Message.from_openai({"content": "no role"})
    ok = Message.from_openai(
        {"role": "assistant", "tool_calls": [{"id": "x", "type": "function", "function": {"name": "f"}}]}
    )
    assert ok.tool_calls[0].name == "f" and ok.tool_calls[0].arguments == "{}"


@pytest.mark.parametrize("parse", [Usage.from_openai, Usage.from_anthropic, Usage.from_langchain])
def test_usage_parsers_reject_counts_that_are_not_counts(parse: Any) -> None:
    for bad in (
        {"prompt_tokens": "n/a", "input_tokens": "n/a", "output_tokens": 1},
        {"input_tokens": -3, "prompt_tokens": -3},
        {"input_tokens": 2.5, "prompt_tokens": 2.5},
        {"input_tokens": float("nan"), "prompt_tokens": float("inf")},
    ):
        with pytest.raises(InvalidInputError, match="token count"):
            parse(bad)
    with pytest.raises(InvalidInputError, match="usage dict"):
        parse(["not", "a", "dict"])
    assert Usage.from_openai({"prompt_tokens": 3.0, "completion_tokens": None}).input_tokens == 3


def test_self_referencing_metadata_is_a_typed_error_not_a_recursion_error() -> None:
    ledger = _ledger()
    meta: dict[str, Any] = {"a": 1}
    meta["self"] = meta
    with pytest.raises(InvalidInputError, match="contains itself"):
        ledger.record(model="gpt-4o", usage=Usage(), metadata=meta)
    assert len(ledger) == 0


def test_truncate_tool_outputs_checks_its_marker_when_built() -> None:
    with pytest.raises(InvalidInputError, match="marker"):
        TruncateToolOutputs(10, marker="{bogus}")
    with pytest.raises(InvalidInputError, match="marker"):
        TruncateToolOutputs(10, marker="{")
    TruncateToolOutputs(10, marker="[cut {cut} of {total}{where}] {{literal}}")


def test_provider_errors_are_scrubbed_even_when_they_echo_the_key() -> None:
    key = "sk-proj-ECHOED0key0abcdefghijklmnopqrstuv"
    err = BackendHTTPError(f"401: bad header Authorization: Bearer {key}", backend="openai", status_code=401)
    both = AllBackendsFailedError({"openai": err, "other": ValueError(f"api_key={key}")})
    for text in (str(err), repr(err), str(both), repr(both), str(err.args)):
        assert key not in text and "[REDACTED]" in text
    assert both.status_code is None or both.status_code == 401


def test_request_repr_hides_headers_in_extra() -> None:
    r = Request(messages=(Message.user("hi"),), extra={"extra_headers": {"api-key": "azure-opaque-1234567"}})
    assert "azure-opaque-1234567" not in repr(r) and "azure-opaque-1234567" not in str(r)
    assert r.extra["extra_headers"]["api-key"] == "azure-opaque-1234567"


def test_ctxkit_loggers_scrub_their_records(caplog: pytest.LogCaptureFixture) -> None:
    log = get_logger("ctxkit.test.contract")
    with caplog.at_level(logging.INFO, logger="ctxkit.test.contract"):
        log.info("calling %s", "https://x.example/v1?api_key=opaque-777777&model=m")
    assert "opaque-777777" not in caplog.text and "model=m" in caplog.text


# ---------------------------------------------------------------------- 9: silently wrong
def test_negative_cost_is_rejected() -> None:
    ledger = _ledger()
    with pytest.raises(InvalidInputError, match="cost"):
        ledger.record(model="gpt-4o", usage=Usage(), cost=-5)
    with pytest.raises(InvalidInputError, match="cost"):
        ledger.record(model="gpt-4o", usage=Usage(), cost=Decimal("NaN"))
    assert len(ledger) == 0


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_non_finite_latency_is_rejected_at_record_time(value: float) -> None:
    ledger = _ledger()
    with pytest.raises(InvalidInputError, match="latency_s"):
        ledger.record(model="gpt-4o", usage=Usage(), latency_s=value)
    with pytest.raises(InvalidInputError, match="ttft_s"):
        ledger.record(model="gpt-4o", usage=Usage(), latency_s=1.0, ttft_s=value)
    with pytest.raises(InvalidInputError, match="finite"):
        ledger.record(model="gpt-4o", usage=Usage(), metadata={"score": value})


def test_records_round_trip_through_jsonl_unchanged() -> None:
    ledger = _ledger()
    rec = ledger.record(model="gpt-4o", usage=Usage(input_tokens=3), latency_s=0.25, metadata={"x": [1, 2.5]})
    buf = io.StringIO()
    ledger.to_jsonl(buf)
    (back,) = Ledger.from_jsonl(io.StringIO(buf.getvalue())).records
    assert back == rec


def test_ledger_path_is_checked_when_the_ledger_is_made(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="does not exist"):
        Ledger(path=tmp_path / "missing" / "calls.jsonl")
    with pytest.raises(InvalidInputError, match="folder"):
        Ledger(path=tmp_path)


def test_a_record_that_cannot_be_written_is_not_kept(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    ledger = Ledger(path=folder / "calls.jsonl")
    ledger.record(model="gpt-4o", usage=Usage(input_tokens=1))
    shutil.rmtree(folder)  # the disk goes away after the ledger was made
    with pytest.raises(ResourceError, match="not recorded"):
        ledger.record(model="gpt-4o", usage=Usage(input_tokens=2))
    assert len(ledger) == 1 and ledger.records[0].usage.input_tokens == 1


def test_deep_metadata_is_rejected_at_record_time() -> None:
    deep: Any = "leaf"
    for _ in range(300):
        deep = {"k": deep}
    ledger = _ledger()
    with pytest.raises(InvalidInputError, match="nests deeper"):
        ledger.record(model="gpt-4o", usage=Usage(), metadata={"deep": deep})
    assert len(ledger) == 0


@pytest.mark.parametrize("interval", [math.nan, math.inf, -1.0, [1.0, math.nan]])
def test_plan_cache_rejects_every_bad_interval_alike(interval: Any) -> None:
    prompt = Assembler("claude-sonnet-4").assemble(system="Be brief.", query="hi")
    remaining = 2 if isinstance(interval, list) else 10
    with pytest.raises(InvalidInputError, match="interval_s"):
        plan_cache(prompt, interval_s=interval, remaining_calls=remaining)
    with pytest.raises(InvalidInputError, match="interval_s"):
        plan_cache(prompt.model_copy(update={"model": "llamacpp:x"}), interval_s=interval, remaining_calls=remaining)


@pytest.mark.parametrize("q", [-50, 100.5, math.nan, math.inf])
def test_percentile_rejects_q_outside_0_100(q: float) -> None:
    with pytest.raises(InvalidInputError, match="0 to 100"):
        percentile([1.0, 2.0, 3.0], q)
    assert percentile([1.0, 2.0, 3.0], 100) == 3.0 and percentile([1.0, 2.0, 3.0], 0) == 1.0
