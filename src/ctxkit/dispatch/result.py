"""What a backend call returns: :class:`Result` (text, usage, timings, logprobs) and stream events."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any, Literal

from pydantic import ConfigDict, Field

from ctxkit._model import CtxkitModel
from ctxkit.dispatch.decision import RouteDecision
from ctxkit.messages import ToolCall
from ctxkit.pricing import cost
from ctxkit.usage import Usage

__all__ = ["FinishReason", "Result", "StreamEvent", "TokenLogprob", "price_usage"]

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error", "unknown"]


class TokenLogprob(CtxkitModel):
    """One generated token and its log-probability (natural log)."""

    model_config = ConfigDict(frozen=True)

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


class Result(CtxkitModel):
    """The answer of one model call.

    ``usage`` follows :class:`ctxkit.usage.Usage` (input inclusive of cached tokens).
    ``latency_s`` is wall time from request to the last byte; ``ttft_s`` the time to
    the first generated text (equal to ``latency_s`` for non-streamed calls that do not
    expose it). ``cost`` is ``None`` when the price of ``model`` is unknown, never 0.
    """

    model_config = ConfigDict(frozen=True)

    text: str
    finish_reason: FinishReason = "unknown"
    usage: Usage = Field(default_factory=Usage)
    model: str = ""
    backend: str = ""
    latency_s: float = Field(default=0.0, ge=0)
    ttft_s: float | None = Field(default=None, ge=0)
    logprobs: tuple[TokenLogprob, ...] | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    cost: Decimal | None = None
    usage_estimated: bool = Field(
        default=False, description="the provider sent no usage (some servers omit it when streaming); counted locally"
    )
    local: bool = False
    attempts: int = Field(default=1, ge=1, description="calls made, retries included")
    decision: RouteDecision | None = Field(default=None, description="the routing decision that chose this backend")
    raw: dict[str, Any] | None = Field(default=None, repr=False, description="the provider's response, if kept")
    cached: Literal["exact", "semantic"] | None = Field(
        default=None, description="answered by the response cache (no model call): an exact or a semantic hit"
    )
    saved_cost: Decimal | None = Field(
        default=None, description="for a cache hit: what the call that filled the entry cost (None: unknown)"
    )
    cache_source: str | None = Field(default=None, description="for a cache hit: the request id that filled the entry")

    @property
    def mean_logprob(self) -> float | None:
        """Mean log-probability of the generated tokens (``None`` without logprobs)."""
        if not self.logprobs:
            return None
        return sum(t.logprob for t in self.logprobs) / len(self.logprobs)

    @property
    def perplexity(self) -> float | None:
        m = self.mean_logprob
        return None if m is None else math.exp(-m)


class StreamEvent(CtxkitModel):
    """One piece of a streamed answer.

    ``kind`` is ``"text"`` for a text delta (``text``, optionally ``logprobs``),
    ``"tool_call"`` for a completed tool call, and ``"done"`` for the final event,
    which carries the full :class:`Result` (usage, timings, finish reason).
    """

    model_config = ConfigDict(frozen=True)

    kind: Literal["text", "tool_call", "done"]
    text: str = ""
    logprobs: tuple[TokenLogprob, ...] = ()
    tool_call: ToolCall | None = None
    result: Result | None = None


def price_usage(usage: Usage, model: str) -> Decimal | None:
    """Cost of ``usage`` on ``model`` from the price book (:mod:`ctxkit.pricing`); ``None`` when unknown."""

    return cost(usage, model)
