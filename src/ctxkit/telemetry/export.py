"""Exports of call records: pandas DataFrame (extra ``viz``) and OpenTelemetry spans (extra ``otel``).

Spans follow the OpenTelemetry GenAI semantic conventions: name ``"{operation} {model}"``,
kind CLIENT, start/end from the call's timing, and the ``gen_ai.*`` attributes
(``gen_ai.operation.name``, ``gen_ai.provider.name``, ``gen_ai.request.model``,
``gen_ai.usage.input_tokens``, ``gen_ai.usage.output_tokens``,
``gen_ai.usage.cache_read.input_tokens``, ``gen_ai.usage.cache_creation.input_tokens``,
``gen_ai.usage.reasoning.output_tokens``, ``gen_ai.response.time_to_first_chunk``,
``error.type``). ctxkit's own figures go under ``ctxkit.*`` (workflow, cost, route...).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ctxkit import __version__
from ctxkit._optional import require
from ctxkit.telemetry.record import CallRecord

__all__ = ["OTelExporter", "record_to_row", "records_to_dataframe", "span_attributes"]


def record_to_row(r: CallRecord) -> dict[str, Any]:
    """A flat dict of one record (exact ``cost`` as Decimal, ``cost_usd`` as float for plotting)."""
    u = r.usage
    return {
        "id": r.id,
        "timestamp": r.timestamp,
        "workflow": r.workflow,
        "task_id": r.task_id,
        "model": r.model,
        "backend": r.backend,
        "provider": r.provider,
        "local": r.local,
        "route": r.route,
        "route_reason": r.route_reason,
        "escalated": r.escalated,
        "attempts": r.attempts,
        "input_tokens": u.input_tokens,
        "uncached_input_tokens": u.uncached_input_tokens,
        "cache_read_tokens": u.cache_read_tokens,
        "cache_write_tokens": u.cache_write_tokens,
        "cache_write_1h_tokens": u.cache_write_1h_tokens,
        "output_tokens": u.output_tokens,
        "reasoning_tokens": u.reasoning_tokens,
        "usage_reported": r.usage_reported,
        "cost": r.cost,
        "cost_usd": None if r.cost is None else float(r.cost),
        "latency_s": r.latency_s,
        "ttft_s": r.ttft_s,
        "cache_hit": r.cache_hit,
        "uncompressed_input_tokens": r.uncompressed_input_tokens,
        "compression_ratio": r.compression_ratio,
        "retrieval_hit": r.retrieval_hit,
        "success": r.success,
        "error": r.error,
        "sections": json.dumps(r.sections, sort_keys=True),
        "metadata": json.dumps(r.metadata, sort_keys=True),
    }


def records_to_dataframe(records: Sequence[CallRecord]) -> Any:
    """One row per record (see :func:`record_to_row`); needs pandas (``pip install 'ctxkit[viz]'``)."""
    pd = require("pandas", feature="telemetry DataFrame export", extra="viz")
    rows = [record_to_row(r) for r in records]
    if not rows:
        return pd.DataFrame(columns=list(record_to_row(CallRecord(model="-")).keys()))
    return pd.DataFrame(rows)


def span_attributes(r: CallRecord) -> dict[str, Any]:
    """The span attributes of one record: GenAI semantic-convention names plus ``ctxkit.*``."""
    u = r.usage
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": r.operation,
        "gen_ai.provider.name": r.provider or r.backend or "unknown",
        "gen_ai.request.model": r.model,
        "gen_ai.response.model": r.model,
        "ctxkit.workflow": r.workflow,
        "ctxkit.record_id": r.id,
        "ctxkit.cache_hit": bool(r.cache_hit),
        "ctxkit.escalated": r.escalated,
        "ctxkit.attempts": r.attempts,
        "ctxkit.local": r.local,
        "ctxkit.usage_reported": r.usage_reported,
    }
    if r.usage_reported:
        attrs.update(
            {
                "gen_ai.usage.input_tokens": u.input_tokens,
                "gen_ai.usage.output_tokens": u.output_tokens,
                "gen_ai.usage.cache_read.input_tokens": u.cache_read_tokens,
                "gen_ai.usage.cache_creation.input_tokens": u.cache_write_tokens,
                "gen_ai.usage.reasoning.output_tokens": u.reasoning_tokens,
            }
        )
    if r.ttft_s is not None:
        attrs["gen_ai.response.time_to_first_chunk"] = r.ttft_s
    optional: dict[str, Any] = {
        "ctxkit.backend": r.backend or None,
        "ctxkit.task_id": r.task_id,
        "ctxkit.route": r.route,
        "ctxkit.route.reason": r.route_reason,
        "ctxkit.router": r.router,
        "ctxkit.cost": None if r.cost is None else str(r.cost),
        "ctxkit.cost_usd": None if r.cost is None else float(r.cost),
        "ctxkit.latency_s": r.latency_s,
        "ctxkit.compression_ratio": r.compression_ratio,
        "ctxkit.uncompressed_input_tokens": r.uncompressed_input_tokens,
        "ctxkit.retrieval_hit": r.retrieval_hit,
        "ctxkit.success": r.success,
    }
    attrs.update({k: v for k, v in optional.items() if v is not None})
    for name, tokens in r.sections.items():
        attrs[f"ctxkit.section.{name}.tokens"] = tokens
    if r.error is not None:
        attrs["error.type"] = r.error.split(":", 1)[0] or "error"
    return attrs


class OTelExporter:
    """A ledger hook that emits one CLIENT span per record through an OpenTelemetry tracer.

    ``tracer_provider`` defaults to the global one. Use it live with
    ``ledger.add_hook(OTelExporter(provider))`` or after the fact with ``ledger.to_otel(provider)``.
    """

    def __init__(self, tracer_provider: Any = None) -> None:
        trace = require(
            "opentelemetry.trace", feature="OpenTelemetry export", extra="otel", package="opentelemetry-api"
        )

        self._trace = trace
        self._tracer = trace.get_tracer("ctxkit", __version__, tracer_provider=tracer_provider)

    def __call__(self, record: CallRecord) -> None:
        trace = self._trace
        end_ns = int(record.timestamp.timestamp() * 1e9)
        start_ns = end_ns - int((record.latency_s or 0.0) * 1e9)
        span = self._tracer.start_span(
            f"{record.operation} {record.model}",
            kind=trace.SpanKind.CLIENT,
            attributes=span_attributes(record),
            start_time=start_ns,
        )
        if record.error is not None:
            span.set_status(trace.Status(trace.StatusCode.ERROR, record.error))
        span.end(end_time=end_ns)
