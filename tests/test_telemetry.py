"""The ledger: recording, budgets, reports, exports (JSONL, DataFrame, OTel), HTML and plots."""

from __future__ import annotations

import io
import json
import threading
import warnings
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxkit.errors import BudgetError, InvalidInputError
from ctxkit.pricing import PriceBook
from ctxkit.telemetry import (
    BudgetWarning,
    CallRecord,
    Ledger,
    OTelExporter,
    WorkflowBudget,
    WorkflowBudgetExceededError,
    percentile,
)
from ctxkit.usage import Usage

EXAMPLES = settings().max_examples  # the conftest profile (CTXKIT_HYPOTHESIS_EXAMPLES)
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _ledger(**kw: object) -> Ledger:
    return Ledger(price_book=PriceBook.builtin(), **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- recording
def test_record_prices_from_the_book() -> None:
    ledger = _ledger()
    r = ledger.record(
        model="gpt-4o-mini",
        workflow="qa",
        usage=Usage(input_tokens=1000, cache_read_tokens=600, output_tokens=100),
        latency_s=0.5,
        ttft_s=0.1,
    )
    # 400*0.15 + 600*0.075 + 100*0.60 = 60 + 45 + 60 micro-dollars
    assert r.cost == Decimal("0.000165")
    assert r.cache_hit is True and r.provider == "openai" and not r.local
    assert len(ledger) == 1 and ledger.records[0] is r


def test_record_unknown_model_and_unreported_usage_have_no_cost() -> None:
    ledger = _ledger()
    unknown = ledger.record(model="acme-xl", usage=Usage(input_tokens=10, output_tokens=1))
    blind = ledger.record(model="gpt-4o", usage=None)
    assert unknown.cost is None and unknown.usage_reported
    assert blind.cost is None and not blind.usage_reported
    assert ledger.total_cost() is None
    local = ledger.record(model="smollm2-135m-instruct", usage=Usage(input_tokens=10, output_tokens=1))
    assert local.cost == Decimal(0) and local.local


def test_record_accepts_explicit_cost_decision_and_gold_labels() -> None:
    from ctxkit.dispatch.decision import RouteDecision

    ledger = _ledger()
    decision = RouteDecision(route="strong", reason="low confidence 0.41 < 0.6", router="cascade", escalated=True)
    r = ledger.record(
        model="gpt-4.1",
        usage={"input_tokens": 100, "output_tokens": 10},
        cost=Decimal("0.5"),
        decision=decision,
        retrieved_ids=["d3", "d7"],
        gold_ids={"d7"},
    )
    assert r.cost == Decimal("0.5") and r.route == "strong" and r.escalated and r.router == "cascade"
    assert r.route_reason == "low confidence 0.41 < 0.6" and r.retrieval_hit is True


def test_record_result_from_dispatcher() -> None:
    from ctxkit.dispatch.decision import RouteDecision
    from ctxkit.dispatch.result import Result

    result = Result(
        text="hi",
        usage=Usage(input_tokens=50, output_tokens=5),
        model="smollm2-135m-instruct",
        backend="llamacpp",
        latency_s=0.2,
        ttft_s=0.05,
        local=True,
        decision=RouteDecision(route="local", reason="easy"),
    )
    r = _ledger().record_result(result, workflow="chat", success=True)
    assert (r.model, r.backend, r.latency_s, r.ttft_s, r.route, r.cost, r.success) == (
        "smollm2-135m-instruct",
        "llamacpp",
        0.2,
        0.05,
        "local",
        Decimal(0),
        True,
    )


def test_bad_records_are_clear_errors() -> None:
    ledger = _ledger()
    with pytest.raises(InvalidInputError, match="model"):
        ledger.record(usage=Usage())
    with pytest.raises(InvalidInputError, match="ttft_s"):
        ledger.record(model="gpt-4o", usage=Usage(), latency_s=0.1, ttft_s=0.5)
    with pytest.raises(InvalidInputError, match="usage"):
        ledger.record(model="gpt-4o", usage={"input_tokens": 1, "cache_read_tokens": 5})
    with pytest.raises(InvalidInputError):
        ledger.record("not a record")  # type: ignore[arg-type]


def test_track_times_the_call_and_records_errors() -> None:
    ledger = _ledger()
    with ledger.track(model="gpt-4o-mini", workflow="w") as call:
        call.first_token()
        call.usage = Usage(input_tokens=10, output_tokens=2)
        call.set(success=True)
    ok = ledger.records[-1]
    assert ok.latency_s is not None and ok.ttft_s is not None and ok.ttft_s <= ok.latency_s and ok.success
    with pytest.raises(RuntimeError), ledger.track(model="gpt-4o-mini", workflow="w"):
        raise RuntimeError("upstream 503")
    failed = ledger.records[-1]
    assert failed.error == "RuntimeError: upstream 503" and not failed.usage_reported and failed.cost is None


def test_report_success_by_task() -> None:
    ledger = _ledger()
    ledger.record(model="gpt-4o-mini", usage=Usage(input_tokens=1), task_id="t1")
    ledger.record(model="gpt-4o", usage=Usage(input_tokens=1), task_id="t1")
    assert ledger.report_success("t1") == 2
    assert all(r.success for r in ledger.records)
    with pytest.raises(InvalidInputError):
        ledger.report_success("nope")


def test_concurrent_recording_keeps_every_record() -> None:
    ledger = _ledger()

    def work() -> None:
        for _ in range(50):
            ledger.record(model="gpt-4o-mini", usage=Usage(input_tokens=100, output_tokens=10))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ledger) == 400
    assert ledger.total_cost() == 400 * Decimal("0.000021")
    assert len({r.id for r in ledger}) == 400


# ---------------------------------------------------------------------------- budgets
def test_budget_warns_with_the_crossing_record() -> None:
    ledger = _ledger()
    ledger.set_budget(workflow="qa", max_input_tokens_per_call=1000)
    ledger.record(model="gpt-4o-mini", workflow="qa", usage=Usage(input_tokens=1000))
    ledger.record(model="gpt-4o-mini", workflow="other", usage=Usage(input_tokens=5000))
    with pytest.warns(BudgetWarning, match="input tokens per call") as caught:
        big = ledger.record(model="gpt-4o-mini", workflow="qa", usage=Usage(input_tokens=1001))
    w = caught[0].message
    assert isinstance(w, BudgetWarning) and w.record is big and w.violation.value == 1001
    assert len(ledger) == 3


def test_budget_raises_after_recording() -> None:
    ledger = _ledger(budgets=[WorkflowBudget(workflow="*", max_cost_per_call=Decimal("0.01"), action="raise")])
    with pytest.raises(WorkflowBudgetExceededError) as info:
        ledger.record(model="gpt-4o", usage=Usage(input_tokens=10_000, output_tokens=10))  # $0.0251
    err = info.value
    assert isinstance(err, BudgetError) and err.kind == "cost_per_call"
    assert err.value == Decimal("0.0251") and err.limit == Decimal("0.01")
    assert err.record is ledger.records[-1]


def test_daily_budget_fires_on_the_crossing_call() -> None:
    ledger = _ledger()
    ledger.set_budget(workflow="qa", max_cost_per_day="0.05", action="warn")
    call = {"model": "gpt-4o", "workflow": "qa", "usage": Usage(input_tokens=10_000)}  # $0.025 each
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ledger.record(**call, timestamp=T0)  # type: ignore[arg-type]
        ledger.record(**call, timestamp=T0 + timedelta(minutes=1))  # type: ignore[arg-type]  # exactly at the limit
    with pytest.warns(BudgetWarning, match="cost per day") as caught:
        third = ledger.record(**call, timestamp=T0 + timedelta(minutes=2))  # type: ignore[arg-type]
    assert caught[0].message.record is third  # type: ignore[union-attr]
    with warnings.catch_warnings():  # warn mode tells once per crossing
        warnings.simplefilter("error")
        ledger.record(**call, timestamp=T0 + timedelta(minutes=3))  # type: ignore[arg-type]
        ledger.record(**call, timestamp=T0 + timedelta(days=1))  # type: ignore[arg-type]  # a new day
    assert ledger.day_cost("qa", T0) == Decimal("0.100")

    strict = _ledger()
    strict.set_budget(workflow="qa", max_cost_per_day="0.04", action="raise")
    strict.record(**call, timestamp=T0)  # type: ignore[arg-type]
    for minute in (1, 2):  # over the limit: every later call of the day raises
        with pytest.raises(WorkflowBudgetExceededError):
            strict.record(**call, timestamp=T0 + timedelta(minutes=minute))  # type: ignore[arg-type]


def test_tokens_per_call_budget_counts_output() -> None:
    ledger = _ledger(budgets=[WorkflowBudget(workflow="w", max_tokens_per_call=100, action="raise")])
    ledger.record(model="gpt-4o", workflow="w", usage=Usage(input_tokens=60, output_tokens=40))
    with pytest.raises(WorkflowBudgetExceededError, match="tokens per call"):
        ledger.record(model="gpt-4o", workflow="w", usage=Usage(input_tokens=60, output_tokens=41))


def test_bad_budget_is_a_clear_error() -> None:
    with pytest.raises(InvalidInputError):
        _ledger().set_budget(workflow="w", max_cost_per_day="-1")


# ---------------------------------------------------------------------------- reports
def _sample_ledger() -> Ledger:
    ledger = _ledger()
    for i, lat in enumerate([0.1, 0.2, 0.3, 0.4, 1.0]):
        ledger.record(
            model="gpt-4o-mini",
            workflow="qa",
            latency_s=lat,
            ttft_s=lat / 2,
            task_id=f"q{i}",
            usage=Usage(input_tokens=1000, cache_read_tokens=800 if i else 0, output_tokens=100),
            uncompressed_input_tokens=3000,
            success=i != 4,
            timestamp=T0 + timedelta(minutes=i),
        )
    ledger.record(
        model="gpt-4o",
        workflow="qa",
        latency_s=2.0,
        usage=Usage(input_tokens=1000, output_tokens=100),
        uncompressed_input_tokens=1000,
        escalated=True,
        task_id="q4",
        success=True,
        timestamp=T0 + timedelta(minutes=6),
    )
    ledger.record(
        model="smollm2-135m-instruct",
        workflow="chat",
        latency_s=0.05,
        usage=Usage(input_tokens=200, output_tokens=20),
        timestamp=T0 + timedelta(minutes=7),
    )
    return ledger


def test_report_figures() -> None:
    rep = _sample_ledger().report(baseline_model="gpt-5")
    mini = rep.row("qa", "gpt-4o-mini")
    assert mini.calls == 5 and mini.usage.input_tokens == 5000 and mini.usage.cache_read_tokens == 3200
    assert mini.cached_share == pytest.approx(0.64)
    # first call: 1000*0.15 + 100*0.6 = 210; others: 200*0.15 + 800*0.075 + 100*0.6 = 150 (micro-dollars)
    assert mini.cost == Decimal("0.00081")
    assert mini.latency_p50_s == pytest.approx(0.3) and mini.latency_p95_s == pytest.approx(0.88)
    assert mini.ttft_p50_s == pytest.approx(0.15)
    assert mini.successful_tasks == 4 and mini.tasks == 5
    assert mini.cost_per_successful_task == Decimal("0.00081") / 4
    assert mini.compression_ratio == pytest.approx(3.0)
    assert mini.escalation_rate == 0
    big = rep.row("qa", "gpt-4o")
    assert big.escalation_rate == 1 and big.cost == Decimal("0.0035")
    total = rep.total
    assert total.calls == 7 and total.escalations == 1
    # task q4 failed on the mini model then succeeded after escalation: its last verdict counts
    assert total.successful_tasks == 5
    assert total.cost == Decimal("0.00081") + Decimal("0.0035") + 0
    assert total.cost_per_successful_task == total.cost / 5


def test_report_savings_are_exact_steps() -> None:
    rep = _sample_ledger().report(baseline_model="gpt-5")
    s = rep.savings
    assert s.actual == Decimal("0.00431")
    # no cache: mini calls 1000*0.15+100*0.6 = 210 each -> 1050; gpt-4o 3500; local 0
    assert s.uncached == Decimal("0.00455")
    assert s.from_caching == Decimal("0.00024")
    # uncompressed: mini 3000*0.15+60 = 510 each -> 2550; gpt-4o unchanged 3500
    assert s.uncompressed == Decimal("0.00605")
    # on gpt-5: mini calls 3000*1.25 + 100*10 = 4750 each -> 23750; gpt-4o call 1000*1.25+1000 = 2250;
    # local call 200*1.25 + 20*10 = 450
    assert s.baseline == Decimal("0.02645")
    assert s.total == s.baseline - s.actual
    assert s.from_caching + s.from_compression + s.from_routing == s.total  # type: ignore[operator]
    assert s.share == pytest.approx(float(s.total / s.baseline))


def test_report_claims_no_savings_on_failed_tasks_and_prices_local_calls() -> None:
    """A local model's wrong answers are not "free savings" (issue #15): failed tasks save nothing."""
    ledger = _ledger()
    for i, ok in enumerate([True, False, False]):
        ledger.record(
            model="smollm2-135m-instruct",
            workflow="qa",
            task_id=f"t{i}",
            latency_s=2.5,
            usage=Usage(input_tokens=1000, output_tokens=100),
            success=ok,
            timestamp=T0 + timedelta(minutes=i),
        )
    s = ledger.report(baseline_model="gpt-5").savings
    # one success: 1000*1.25 + 100*10 = 2250 micro-dollars saved on gpt-5; the two failures save nothing
    assert s.actual == Decimal(0) and s.baseline == Decimal("0.00225") and s.total == Decimal("0.00225")
    assert s.failed_tasks == 2 and s.failed_baseline == Decimal("0.0045")
    assert s.local_calls == 3 and s.local_as_baseline == Decimal("0.00675") and s.local_compute_s == 7.5
    text = str(ledger.report(baseline_model="gpt-5"))
    assert "Not counted as savings: 2 failed task(s)" in text and "Local calls: 3, not free" in text
    # a task that failed on the local model and then succeeded on escalation is not a failed task
    ledger.record(model="gpt-4o", workflow="qa", task_id="t1", usage=Usage(input_tokens=1000), success=True)
    assert ledger.report(baseline_model="gpt-5").savings.failed_tasks == 1
    # no baseline model: nothing to price the local prompts on
    assert ledger.report().savings.local_as_baseline is None


def test_report_is_readable_text_and_html() -> None:
    rep = _sample_ledger().report(baseline_model="gpt-5")
    text = str(rep)
    assert "gpt-4o-mini" in text and "Savings vs uncompressed, uncached calls on gpt-5" in text
    assert "Prices as of" in text
    page = rep._repr_html_()
    assert page.startswith("<div>") and "<table>" in page and "gpt-4o-mini" in page
    unknown = _ledger()
    unknown.record(model="acme-xl", workflow="x<script>", usage=Usage(input_tokens=5))
    assert "unpriced" in str(unknown.report())
    assert "<script>" not in unknown.report()._repr_html_() and "<script>" not in unknown._repr_html_()


def test_report_by_workflow_only() -> None:
    rep = _sample_ledger().report(by=("workflow",))
    assert [(r.workflow, r.model) for r in rep.rows] == [("chat", "*"), ("qa", "*")]
    with pytest.raises(InvalidInputError):
        _sample_ledger().report(by=("colour",))


@settings(max_examples=EXAMPLES, deadline=None)
@given(xs=st.lists(st.floats(0, 1e4, allow_nan=False), min_size=1, max_size=60), q=st.sampled_from([0, 50, 95, 100]))
def test_percentile_matches_numpy(xs: list[float], q: float) -> None:
    import numpy as np

    assert percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)), rel=1e-9, abs=1e-9)


# ---------------------------------------------------------------------------- exports
def test_jsonl_roundtrip_is_exact(tmp_path: Path) -> None:
    ledger = _sample_ledger()
    path = tmp_path / "calls.jsonl"
    assert ledger.to_jsonl(path) == 7
    lines = path.read_text().splitlines()
    assert len(lines) == 7 and json.loads(lines[0])["cost"] == "0.00021"
    back = Ledger.from_jsonl(path)
    assert back.records == ledger.records
    buf = io.StringIO()
    ledger.to_jsonl(buf)
    assert buf.getvalue() == path.read_text()
    path.write_text("{not json}\n")
    with pytest.raises(InvalidInputError, match="line 1"):
        Ledger.from_jsonl(path)


def test_jsonl_sink_appends_as_calls_happen(tmp_path: Path) -> None:
    path = tmp_path / "live.jsonl"
    ledger = _ledger(path=path)
    ledger.record(model="gpt-4o", usage=Usage(input_tokens=3))
    ledger.record(model="gpt-4o", usage=Usage(input_tokens=4))
    assert [CallRecord.model_validate_json(x).usage.input_tokens for x in path.read_text().splitlines()] == [3, 4]


def test_dataframe_export() -> None:
    df = _sample_ledger().to_dataframe()
    assert len(df) == 7
    assert {"workflow", "model", "input_tokens", "cache_read_tokens", "cost", "cost_usd", "latency_s"} <= set(df)
    assert df["cost"].iloc[0] == Decimal("0.00021") and df["cost_usd"].iloc[0] == pytest.approx(0.00021)
    assert df.groupby("workflow")["input_tokens"].sum().to_dict() == {"chat": 200, "qa": 6000}
    rep_df = _sample_ledger().report().to_dataframe()
    assert list(rep_df["model"]) == ["smollm2-135m-instruct", "gpt-4o", "gpt-4o-mini", "*"]


def test_otel_spans_follow_genai_conventions() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind, StatusCode

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    ledger = _ledger(hooks=[OTelExporter(provider)])
    r = ledger.record(
        model="claude-sonnet-4-5",
        workflow="rag",
        latency_s=1.5,
        ttft_s=0.4,
        timestamp=T0,
        usage=Usage(
            input_tokens=5000, cache_read_tokens=4000, cache_write_tokens=500, output_tokens=200, reasoning_tokens=50
        ),
        route="strong",
        route_reason="long context",
        sections={"system": 300, "retrieved": 4000},
    )
    ledger.record(model="gpt-4o", error=RuntimeError("HTTP 500"), usage=None, timestamp=T0)
    spans = exporter.get_finished_spans()
    assert len(spans) == 2
    span = spans[0]
    assert span.name == "chat claude-sonnet-4-5" and span.kind == SpanKind.CLIENT
    a = dict(span.attributes or {})
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "anthropic"
    assert a["gen_ai.request.model"] == "claude-sonnet-4-5"
    assert a["gen_ai.usage.input_tokens"] == 5000 and a["gen_ai.usage.output_tokens"] == 200
    assert a["gen_ai.usage.cache_read.input_tokens"] == 4000
    assert a["gen_ai.usage.cache_creation.input_tokens"] == 500
    assert a["gen_ai.usage.reasoning.output_tokens"] == 50
    assert a["gen_ai.response.time_to_first_chunk"] == 0.4
    assert a["ctxkit.workflow"] == "rag" and a["ctxkit.route"] == "strong" and a["ctxkit.cost"] == str(r.cost)
    assert a["ctxkit.section.retrieved.tokens"] == 4000
    assert span.end_time - span.start_time == 1_500_000_000  # type: ignore[operator]
    assert span.end_time == int(T0.timestamp() * 1e9)
    err = spans[1]
    assert err.status.status_code == StatusCode.ERROR and dict(err.attributes or {})["error.type"] == "RuntimeError"
    assert "gen_ai.usage.input_tokens" not in dict(err.attributes or {})  # unknown usage is not reported as 0
    # the same spans after the fact
    exporter.clear()
    assert ledger.to_otel(provider) == 2 and len(exporter.get_finished_spans()) == 2


def test_failing_hook_does_not_lose_records() -> None:
    def broken(_: CallRecord) -> None:
        raise OSError("collector down")

    ledger = _ledger(hooks=[broken])
    ledger.record(model="gpt-4o", usage=Usage(input_tokens=1))
    assert len(ledger) == 1


# ---------------------------------------------------------------------------- notebook
def test_html_reprs() -> None:
    ledger = _sample_ledger()
    page = ledger._repr_html_()
    assert "<b>Ledger</b>: 7 calls" in page and "gpt-4o-mini" in page
    assert "<b>CallRecord</b>" in ledger.records[0]._repr_html_()
    assert repr(ledger).startswith("Ledger(7 calls, cost=0.00431")


@pytest.fixture
def agg() -> object:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    yield plt
    plt.close("all")


def test_plots_render_to_png(tmp_path: Path, agg: object) -> None:
    from ctxkit.assembly import Assembler
    from ctxkit.messages import Chunk, Message
    from ctxkit.telemetry import plot_cost_over_time, plot_tokens_by_section

    prompt = Assembler("gpt-4o-mini").assemble(
        query="What did the essay say about startups?",
        system="You answer from the given passages.",
        history=[Message.user("hello"), Message.assistant("hi, ask me anything")],
        chunks=[Chunk(id=f"c{i}", text=f"Passage {i} about startups and growth. " * 20) for i in range(5)],
    )
    ledger = _sample_ledger()
    ledger.record(
        model="gpt-4o-mini",
        workflow="rag",
        prompt=prompt,
        usage=Usage(input_tokens=prompt.total_tokens),
        timestamp=T0 + timedelta(minutes=9),
    )
    assert ledger.records[-1].sections == {n: s.used for n, s in prompt.sections.items()}

    ax = plot_tokens_by_section(prompt)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(prompt.sections)
    ax2 = plot_cost_over_time(ledger.records)
    assert {line.get_label() for line in ax2.get_lines()} == {"chat", "qa", "rag"}
    ax3 = ledger.plot_tokens_by_section()
    for i, a in enumerate((ax, ax2, ax3)):
        out = tmp_path / f"plot{i}.png"
        a.figure.savefig(out)
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000


def test_preflight_stops_a_call_before_it_is_sent() -> None:
    ledger = _ledger()
    ledger.set_budget(workflow="qa", max_input_tokens_per_call=8000, max_cost_per_day="0.03", action="raise")
    ledger.preflight(workflow="qa", model="gpt-4o", input_tokens=8000, max_output_tokens=500)  # fits: $0.025
    with pytest.raises(WorkflowBudgetExceededError, match="input tokens per call") as info:
        ledger.preflight(workflow="qa", model="gpt-4o", input_tokens=8001)
    assert info.value.record.metadata == {"preflight": True}
    ledger.record(model="gpt-4o", workflow="qa", usage=Usage(input_tokens=8000))  # $0.02 spent today
    with pytest.raises(WorkflowBudgetExceededError, match="cost per day"):
        ledger.preflight(workflow="qa", model="gpt-4o", input_tokens=4000, max_output_tokens=100)  # +$0.011
    ledger.preflight(workflow="qa", model="acme-unpriced", input_tokens=100)  # unknown price: only token limits apply
    assert len(ledger) == 1  # preflight never records
