"""One model call: what the caller knows (:class:`CallFacts`) and what the ledger records (:class:`CallRecord`)."""

from __future__ import annotations

import html
from collections.abc import Hashable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import uuid4

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from ctxkit._model import CtxkitModel
from ctxkit.secrets import check_json_like, redact, redact_text
from ctxkit.usage import Usage

__all__ = ["CallFacts", "CallRecord", "Operation"]


Operation = Literal["chat", "text_completion", "embeddings", "generate_content"]


def _now() -> datetime:
    return datetime.now(UTC)


def _scrub_metadata(value: Any) -> Any:
    """Metadata as a JSON-like dict with secrets removed (``None`` is ``{}``)."""
    if value is None:
        return {}
    check_json_like(value, what="metadata")
    cleaned = redact(value)
    return cleaned if isinstance(cleaned, dict) else {"value": cleaned}


class CallFacts(CtxkitModel):
    """What the caller knows about one model call: the input of :meth:`~ctxkit.telemetry.Ledger.record`.

    The ledger derives the :class:`CallRecord` from it: ``cost`` is priced from ``usage`` on ``model``
    when it is not given (pass ``cost=None`` for "unknown"), ``provider`` and ``local`` default from the
    price book, ``decision`` (a :class:`ctxkit.dispatch.RouteDecision`) fills the route fields not given,
    ``prompt`` (the :class:`~ctxkit.assembly.AssembledPrompt` sent) fills ``sections`` when they are not
    given, and ``retrieved_ids`` with ``gold_ids`` set ``retrieval_hit`` when it is not given.
    ``usage=None`` means the caller had no token counts (the record says ``usage_reported=False``).
    """

    model_config = ConfigDict(frozen=True)

    model: str = Field(description="the model that answered")
    workflow: str = "default"
    usage: Usage | None = Field(default=None, description="a Usage or a mapping of token counts; None: not reported")
    cost: Decimal | None = Field(
        default=None, description="exact cost in USD; leave it out to price usage from the book (None: unknown)"
    )
    backend: str = ""
    provider: str = ""
    latency_s: float | None = None
    ttft_s: float | None = None
    decision: Any = Field(default=None, description="a ctxkit.dispatch.RouteDecision (route, reason, router)")
    route: str | None = None
    route_reason: str | None = None
    escalated: bool | None = None
    attempts: int = 1
    local: bool | None = None
    cache_hit: bool | None = None
    uncompressed_input_tokens: int | None = None
    prompt: Any = Field(default=None, description="the ctxkit.assembly.AssembledPrompt that was sent")
    sections: dict[str, int] | None = None
    retrieved_ids: tuple[Hashable, ...] | None = None
    gold_ids: tuple[Hashable, ...] | None = None
    retrieval_hit: bool | None = None
    success: bool | None = None
    error: str | None = Field(default=None, description="what went wrong; an exception becomes 'Type: message'")
    task_id: str | None = None
    operation: Operation = "chat"
    timestamp: datetime | None = Field(default=None, description="when the call ended; now when not given")
    metadata: dict[str, Any] | None = None
    response_cache: Literal["exact", "semantic"] | None = None
    saved_cost: Decimal | None = None

    @property
    def cost_given(self) -> bool:
        """``cost`` was passed (possibly as ``None``, "unknown"), so the ledger does not price ``usage``."""
        return "cost" in self.model_fields_set

    @field_validator("usage", mode="before")
    @classmethod
    def _usage(cls, value: Any) -> Any:
        if value is None or isinstance(value, Usage):
            return value
        if isinstance(value, Mapping):
            return dict(value)  # validated as a Usage by the field
        raise ValueError(f"usage must be a ctxkit.Usage or a mapping of token counts, not {type(value).__name__}")

    @field_validator("sections", "metadata", mode="before")
    @classmethod
    def _mapping(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise ValueError(f"{info.field_name} must be a mapping (dict), not {type(value).__name__}")
        if info.field_name == "metadata":
            return _scrub_metadata(value)
        return {str(k): v for k, v in value.items()}

    @field_validator("retrieved_ids", "gold_ids", mode="before")
    @classmethod
    def _ids(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return None
        if isinstance(value, str | bytes) or not isinstance(value, Iterable):
            raise ValueError(f"{info.field_name} must be a list of ids, not {type(value).__name__}")
        return tuple(value)

    @field_validator("error", mode="before")
    @classmethod
    def _error(cls, value: Any) -> Any:
        if isinstance(value, BaseException):
            return f"{type(value).__name__}: {value}"
        return None if value is None else str(value)

    @field_validator("route", "route_reason", "task_id", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return None if value is None else str(value)

    @field_validator("escalated", mode="before")
    @classmethod
    def _truthy(cls, value: Any) -> Any:
        return None if value is None else bool(value)


class CallRecord(CtxkitModel):
    """What one model call used, cost and achieved.

    ``usage`` follows :class:`ctxkit.usage.Usage` (input *includes* cached tokens).
    ``cost`` is exact; ``None`` means the price is unknown (never 0 for unknown).
    ``timestamp`` is when the call ended (UTC); it started ``latency_s`` earlier.
    ``usage_reported`` is False when the caller had no token counts (then ``usage`` is
    all zeros and ``cost`` is ``None``). Every text field (``metadata`` deeply, ``error``,
    ``route_reason``, names) is scrubbed of secrets when the record is built.
    """

    model_config = ConfigDict(frozen=True)

    id: str = Field(default_factory=lambda: str(uuid4()))
    timestamp: datetime = Field(default_factory=_now)
    workflow: str = "default"
    task_id: str | None = Field(default=None, description="groups the calls of one task (for cost per task)")
    operation: Operation = "chat"
    model: str
    backend: str = ""
    provider: str = ""
    local: bool = False
    route: str | None = None
    route_reason: str | None = None
    router: str | None = None
    escalated: bool = False
    attempts: int = Field(default=1, ge=1)
    usage: Usage = Field(default_factory=Usage)
    usage_reported: bool = True
    cost: Decimal | None = Field(
        default=None, ge=0, allow_inf_nan=False, description="exact cost in USD, never negative"
    )
    latency_s: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    ttft_s: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    cache_hit: bool | None = Field(default=None, description="defaults to usage.cache_read_tokens > 0")
    uncompressed_input_tokens: int | None = Field(
        default=None, ge=0, description="input tokens before compression (for the compression ratio and savings)"
    )
    sections: dict[str, Annotated[int, Field(ge=0)]] = Field(
        default_factory=dict, description="prompt tokens by section"
    )
    retrieval_hit: bool | None = Field(default=None, description="a gold item was retrieved (when labels exist)")
    success: bool | None = Field(default=None, description="the app's verdict on the task, when it reports one")
    error: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    response_cache: Literal["exact", "semantic"] | None = Field(
        default=None, description="answered by the response cache (no model call): usage is zero, cost 0"
    )
    saved_cost: Decimal | None = Field(
        default=None, ge=0, allow_inf_nan=False, description="a response-cache hit: what the original call cost"
    )

    @field_validator("metadata", mode="before")
    @classmethod
    def _scrub_metadata(cls, value: Any) -> Any:
        return _scrub_metadata(value)

    @field_validator("id", "error", "route_reason", "route", "router", "task_id", mode="before")
    @classmethod
    def _scrub_text(cls, value: Any) -> Any:
        return None if value is None else redact_text(str(value))

    @field_validator("workflow", "model", "backend", "provider", mode="before")
    @classmethod
    def _scrub_name(cls, value: Any) -> Any:
        return redact_text(value) if isinstance(value, str) else value

    @field_validator("sections", mode="before")
    @classmethod
    def _scrub_sections(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {redact_text(str(k)): v for k, v in value.items()}
        return value

    @field_validator("timestamp", mode="after")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @model_validator(mode="after")
    def _derive(self) -> CallRecord:
        if self.cache_hit is None:
            object.__setattr__(self, "cache_hit", self.usage.cache_read_tokens > 0)
        if self.ttft_s is not None and self.latency_s is not None and self.ttft_s > self.latency_s + 1e-9:
            raise ValueError("ttft_s cannot exceed latency_s: the first token arrives before the call ends")
        return self

    @property
    def compression_ratio(self) -> float | None:
        """Uncompressed input tokens / sent input tokens (2.0 = half the tokens sent); ``None`` if unknown."""
        if self.uncompressed_input_tokens is None or self.usage.input_tokens == 0:
            return None
        return self.uncompressed_input_tokens / self.usage.input_tokens

    @property
    def started_at(self) -> datetime:
        return self.timestamp - timedelta(seconds=self.latency_s or 0.0)

    def _repr_html_(self) -> str:
        u = self.usage
        cost = "unknown" if self.cost is None else f"${self.cost}"
        rows = [
            ("workflow", self.workflow),
            ("model", self.model),
            ("backend", self.backend),
            ("route", f"{self.route or ''} {('— ' + self.route_reason) if self.route_reason else ''}"),
            (
                "tokens",
                f"in {u.input_tokens} (cache read {u.cache_read_tokens}, write {u.cache_write_tokens}), "
                f"out {u.output_tokens} (reasoning {u.reasoning_tokens})",
            ),
            ("cost", cost),
            ("latency", "" if self.latency_s is None else f"{self.latency_s:.3f} s"),
            ("ttft", "" if self.ttft_s is None else f"{self.ttft_s:.3f} s"),
            ("success", "" if self.success is None else str(self.success)),
            ("error", self.error or ""),
        ]
        body = "".join(f"<tr><th style='text-align:left'>{k}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
        return f"<div><b>CallRecord</b> <code>{html.escape(self.id)}</code><table>{body}</table></div>"
