"""Secrets never leave through telemetry: plant fake keys everywhere and search every output."""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctxkit.pricing import PriceBook
from ctxkit.telemetry import (
    CallRecord,
    Ledger,
    OTelExporter,
    RedactingFilter,
    WorkflowBudget,
    add_secret,
    redact,
    redact_text,
)
from ctxkit.usage import Usage

OPENAI_KEY = "sk-proj-PLANTED0openai0KEY0abcdefghijklmnop"
ANTHROPIC_KEY = "sk-ant-api03-PLANTED0anthropic0KEY0qrstuvwxyz0123"
ENV_KEY = "corp-gateway-PLANTED-7f3a9c21e8"  # no recognisable shape: caught because it is in the environment
CUSTOM = "hunter2-PLANTED-password"  # no shape, not in env: caught because it was registered
PLANTED = [OPENAI_KEY, ANTHROPIC_KEY, ENV_KEY, CUSTOM, "PLANTED"]


def _clean(text: str) -> None:
    for secret in PLANTED:
        assert secret not in text, f"secret {secret[:12]}... leaked"


@pytest.fixture
def leaky_ledger(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> Ledger:
    monkeypatch.setenv("CORP_GATEWAY_API_KEY", ENV_KEY)
    add_secret(CUSTOM)
    caplog.set_level(logging.DEBUG, logger="ctxkit")

    def broken_hook(record: CallRecord) -> None:
        raise RuntimeError(f"collector rejected auth {OPENAI_KEY}")

    ledger = Ledger(
        price_book=PriceBook.builtin(),
        budgets=[WorkflowBudget(workflow="leaky", max_input_tokens_per_call=10)],
        hooks=[broken_hook],
    )
    metadata: dict[str, Any] = {
        "headers": {
            "Authorization": f"Bearer {OPENAI_KEY}",
            "x-api-key": ANTHROPIC_KEY,
            "Content-Type": "application/json",
        },
        "api_key": OPENAI_KEY,
        "client": {
            "base_url": "https://api.example.com",
            "anthropic_api_key": ANTHROPIC_KEY,
            "default_headers": [("Proxy-Authorization", f"Basic {ENV_KEY}")],
        },
        "note": f"retried with key {ANTHROPIC_KEY} after {ENV_KEY} failed; password {CUSTOM}",
        "max_tokens": 256,
    }
    with pytest.warns(UserWarning, match="input tokens per call"):
        ledger.record(
            model="gpt-4o-mini",
            workflow="leaky",
            usage=Usage(input_tokens=100, cache_read_tokens=50, output_tokens=5),
            latency_s=0.4,
            ttft_s=0.1,
            metadata=metadata,
            route="remote",
            route_reason=f"escalated; token {OPENAI_KEY}",
            timestamp=datetime(2026, 3, 1, tzinfo=UTC),
            sections={"system": 40, "query": 60},
        )
    ledger.record(
        model="claude-haiku-4-5",
        workflow="other",
        usage=None,
        error=PermissionError(f"401 invalid x-api-key {ANTHROPIC_KEY} (env {ENV_KEY})"),
    )
    return ledger


def test_record_keeps_structure_but_not_secrets(leaky_ledger: Ledger) -> None:
    r = leaky_ledger.records[0]
    assert r.metadata["headers"]["Authorization"] == "[REDACTED]"
    assert r.metadata["headers"]["Content-Type"] == "application/json"
    assert r.metadata["max_tokens"] == 256 and r.metadata["client"]["base_url"] == "https://api.example.com"
    assert r.usage.input_tokens == 100 and r.cost == Decimal("0.00001425")  # 50*0.15 + 50*0.075 + 5*0.60
    _clean(repr(r) + str(r) + r.model_dump_json() + str(r.model_dump()) + r._repr_html_())


def test_every_output_is_clean(leaky_ledger: Ledger, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    outputs: list[str] = [repr(leaky_ledger), leaky_ledger._repr_html_(), repr(leaky_ledger.records)]
    rep = leaky_ledger.report(baseline_model="gpt-5")
    outputs += [str(rep), rep._repr_html_(), repr(rep), rep.model_dump_json()]
    path = tmp_path / "calls.jsonl"
    leaky_ledger.to_jsonl(path)
    outputs.append(path.read_text())
    buf = io.StringIO()
    leaky_ledger.to_jsonl(buf)
    outputs.append(buf.getvalue())
    df = leaky_ledger.to_dataframe()
    outputs += [df.to_csv(), df.to_json(), df.to_string(), df._repr_html_()]
    outputs.append(rep.to_dataframe().to_csv())

    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    OTelExporter(provider)  # constructing it leaks nothing either
    leaky_ledger.to_otel(provider)
    finished = spans.get_finished_spans()
    assert len(finished) == 2
    outputs += [s.to_json() for s in finished]

    ax = leaky_ledger.plot_cost_over_time()
    ax.figure.savefig(tmp_path / "cost.svg")
    outputs.append((tmp_path / "cost.svg").read_text())
    plt.close("all")

    # logs: the budget warning and the failing hook were both logged
    logged = [*caplog.get_records("setup"), *caplog.get_records("call")]
    assert any("budget" in rec.getMessage() for rec in logged)
    assert any("hook" in rec.getMessage() for rec in logged)
    outputs += [rec.getMessage() for rec in logged]
    outputs += [str(rec.args) for rec in logged]

    assert leaky_ledger.records[1].error is not None and "401 invalid" in leaky_ledger.records[1].error
    for out in outputs:
        _clean(out)


def test_langchain_metadata_secrets_are_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    from langchain_core.language_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    from ctxkit.telemetry.langchain import LedgerCallbackHandler

    ledger = Ledger(price_book=PriceBook.builtin())
    msg = AIMessage(
        content="hi",
        usage_metadata={"input_tokens": 3, "output_tokens": 1, "total_tokens": 4},
        response_metadata={"model_name": "gpt-4o-mini"},
    )
    GenericFakeChatModel(messages=iter([msg])).invoke(
        "hello",
        config={
            "callbacks": [LedgerCallbackHandler(ledger)],
            "tags": [f"key={OPENAI_KEY}"],
            "metadata": {"openai_api_key": OPENAI_KEY, "headers": {"authorization": f"Bearer {ANTHROPIC_KEY}"}},
        },
    )
    (r,) = ledger.records
    assert r.metadata["openai_api_key"] == "[REDACTED]"
    _clean(r.model_dump_json() + ledger._repr_html_())


def test_redacting_log_filter(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("ctxkit.test.redact")
    log.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger="ctxkit.test.redact"):
        log.info("calling with %s and %s", f"Authorization: Bearer {OPENAI_KEY}", {"x-api-key": ANTHROPIC_KEY})
    assert caplog.records and "[REDACTED]" in caplog.records[0].getMessage()
    _clean(caplog.text)


def test_token_counts_are_not_secrets() -> None:
    data = {
        "input_tokens": 5,
        "max_tokens": 9,
        "cache_read_tokens": 1,
        "tokenizer": "o200k",
        "cache_key": "abc",
        "token": "tok-value",
        "api_key": None,
    }
    out = redact(data)
    assert out["input_tokens"] == 5 and out["max_tokens"] == 9 and out["cache_key"] == "abc"
    assert out["token"] == "[REDACTED]" and out["api_key"] is None


@given(
    prefix=st.text(max_size=20),
    suffix=st.text(max_size=20),
    body=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-", min_size=20, max_size=60),
)
def test_key_shaped_text_is_always_removed(prefix: str, suffix: str, body: str) -> None:
    for key in (f"sk-{body}", f"sk-ant-api03-{body}"):
        assert key not in redact_text(f"{prefix} {key}{suffix}")  # starting a word: any body
    key = f"sk-proj-{body}"  # real keys carry digits and capitals ("proj-" alone does not make it one)
    if any(c.isdigit() or c.isupper() for c in body):
        assert key not in redact_text(f"{prefix}{key}{suffix}")  # glued to a word


def test_words_that_merely_contain_sk_dash_survive() -> None:
    for text in ("task-summarization-pipeline", "desk-reservation-service-v", "risk-assessment-workflow"):
        assert redact_text(text) == text


def test_every_text_field_of_a_record_is_scrubbed() -> None:
    r = CallRecord(
        model="gpt-4o",
        workflow=f"wf {OPENAI_KEY}",
        task_id=f"t-{ANTHROPIC_KEY}",
        route=OPENAI_KEY,
        router=OPENAI_KEY,
        backend=f"proxy Bearer {OPENAI_KEY}",
        sections={f"s {OPENAI_KEY}": 3},
    )
    _clean(r.model_dump_json())
    assert r.workflow == "wf [REDACTED]"
