"""Feed the ledger from LlamaIndex's instrumentation events (extra ``llamaindex``).

::

    from ctxkit.telemetry import Ledger
    from ctxkit.telemetry.llamaindex import instrument_llamaindex

    ledger = Ledger()
    handler = instrument_llamaindex(ledger, workflow="rag")   # every LLM call from now on
    ...
    handler.detach()

The handler listens to ``LLMChat*`` and ``LLMCompletion*`` start / in-progress / end
events. Tokens come from the response's ``raw`` payload (an OpenAI ``usage`` with
``prompt_tokens_details.cached_tokens``, or an Anthropic one with
``cache_read_input_tokens``), else from ``additional_kwargs``
(``prompt_tokens`` / ``completion_tokens``, as llama-index-llms-openai sets them).
A response with neither is recorded with ``usage_reported=False`` and unknown cost.

An LLM call made *inside* another one (LlamaIndex's chat-over-completion adapters
call ``complete`` from ``chat``) is one model call, recorded once: a span handler
tracks the span tree, so a call whose ancestor is an open LLM call is skipped. The
same span handler records a call that raised (its span is dropped with the error).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ctxkit._optional import require
from ctxkit.errors import BudgetError
from ctxkit.secrets import get_logger
from ctxkit.telemetry.ledger import Ledger
from ctxkit.usage import Usage

require(
    "llama_index.core.instrumentation",
    feature="the LlamaIndex event handler",
    extra="llamaindex",
    package="llama-index-core",
)

from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]  # noqa: E402
from llama_index.core.instrumentation.event_handlers import BaseEventHandler  # noqa: E402
from llama_index.core.instrumentation.events import BaseEvent  # noqa: E402
from llama_index.core.instrumentation.events.llm import (  # noqa: E402
    LLMChatEndEvent,
    LLMChatInProgressEvent,
    LLMChatStartEvent,
    LLMCompletionEndEvent,
    LLMCompletionInProgressEvent,
    LLMCompletionStartEvent,
)
from llama_index.core.instrumentation.span.simple import SimpleSpan  # type: ignore[attr-defined]  # noqa: E402
from llama_index.core.instrumentation.span_handlers import BaseSpanHandler  # noqa: E402
from pydantic import PrivateAttr  # noqa: E402

__all__ = ["LedgerEventHandler", "instrument_llamaindex", "usage_from_llamaindex"]

logger = get_logger("ctxkit.telemetry")


def _as_dict(obj: Any) -> dict[str, Any]:
    if obj is None:
        return {}
    if isinstance(obj, dict):
        return obj
    for attr in ("model_dump", "to_dict", "dict"):
        fn = getattr(obj, attr, None)
        if callable(fn):
            try:
                value = fn()
            except Exception:
                continue
            if isinstance(value, dict):
                return value
    return {}


def usage_from_llamaindex(response: Any) -> Usage | None:
    """Token usage of a LlamaIndex ``ChatResponse`` / ``CompletionResponse``, or ``None`` if it has none."""
    raw = _as_dict(getattr(response, "raw", None))
    usage = _as_dict(raw.get("usage")) if raw else {}
    if usage:
        if "prompt_tokens" in usage or "input_tokens_details" in usage:
            return Usage.from_openai(usage)
        if "input_tokens" in usage and ("cache_read_input_tokens" in usage or "cache_creation_input_tokens" in usage):
            return Usage.from_anthropic(usage)
        if "input_tokens" in usage:
            return Usage.from_langchain(usage)
    extra = getattr(response, "additional_kwargs", None) or {}
    if "prompt_tokens" in extra or "completion_tokens" in extra:
        return Usage.from_openai(extra)
    return None


class LedgerEventHandler(BaseEventHandler):
    """A LlamaIndex event handler that records each LLM call in a ledger."""

    ledger: Any
    workflow: str = "default"
    task_id: str | None = None
    _starts: dict[str, tuple[float, str, str]] = PrivateAttr(default_factory=dict)
    _first: dict[str, float] = PrivateAttr(default_factory=dict)
    _parents: dict[str, str | None] = PrivateAttr(default_factory=dict)
    _nested: set[str] = PrivateAttr(default_factory=set)
    _lock: Any = PrivateAttr(default_factory=threading.RLock)
    _tracker: Any = PrivateAttr(default=None)

    @classmethod
    def class_name(cls) -> str:
        return "CtxkitLedgerEventHandler"

    def _inside_open_call(self, span_id: str) -> bool:
        seen: set[str] = set()
        parent = self._parents.get(span_id)
        while parent is not None and parent not in seen:
            if parent in self._starts:
                return True
            seen.add(parent)
            parent = self._parents.get(parent)
        return False

    def handle(self, event: BaseEvent, **kwargs: Any) -> Any:
        key = event.span_id
        if key is None:
            return None
        try:
            if isinstance(event, LLMChatStartEvent | LLMCompletionStartEvent):
                md = event.model_dict or {}
                model = str(md.get("model") or md.get("model_name") or md.get("class_name") or "unknown")
                op = "chat" if isinstance(event, LLMChatStartEvent) else "text_completion"
                with self._lock:
                    if self._inside_open_call(key):
                        self._nested.add(key)
                    else:
                        self._starts[key] = (time.perf_counter(), model, op)
            elif isinstance(event, LLMChatInProgressEvent | LLMCompletionInProgressEvent):
                with self._lock:
                    self._first.setdefault(key, time.perf_counter())
            elif isinstance(event, LLMChatEndEvent | LLMCompletionEndEvent):
                self._end(key, event)
        except BudgetError:
            raise
        except Exception as exc:
            logger.warning("ctxkit LlamaIndex handler failed on %s: %s", type(event).__name__, type(exc).__name__)
        return None

    def _span_opened(self, span_id: str, parent: str | None) -> None:
        with self._lock:
            self._parents[span_id] = parent

    def _span_closed(self, span_id: str, err: BaseException | None) -> None:
        with self._lock:
            self._parents.pop(span_id, None)
            if err is None or span_id not in self._starts:
                return  # a streamed call ends later, with its end event
            self._nested.discard(span_id)
            t0, model, op = self._starts.pop(span_id)
            first = self._first.pop(span_id, None)
        latency = time.perf_counter() - t0
        try:
            self.ledger.record(
                model=model,
                workflow=self.workflow,
                usage=None,
                backend="llamaindex",
                latency_s=latency,
                ttft_s=None if first is None else min(first - t0, latency),
                task_id=self.task_id,
                operation=op,
                error=err,
            )
        except BudgetError:
            raise
        except Exception as exc:
            logger.warning("ctxkit LlamaIndex handler could not record a failed call: %s", type(exc).__name__)

    def _end(self, key: str, event: LLMChatEndEvent | LLMCompletionEndEvent) -> None:
        now = time.perf_counter()
        with self._lock:
            if key in self._nested:
                self._nested.discard(key)
                return
            start = self._starts.pop(key, None)
            first = self._first.pop(key, None)
        if start is None:
            return
        t0, model, op = start
        latency = now - t0
        ttft = None if first is None else min(first - t0, latency)
        response = event.response
        usage = usage_from_llamaindex(response) if response is not None else None
        raw = _as_dict(getattr(response, "raw", None))
        if model == "unknown" and raw.get("model"):
            model = str(raw["model"])
        self.ledger.record(
            model=model,
            workflow=self.workflow,
            usage=usage,
            backend="llamaindex",
            latency_s=latency,
            ttft_s=ttft,
            task_id=self.task_id,
            operation=op,
            error=None if response is not None else "no response",
        )

    def attach(self) -> LedgerEventHandler:
        """Start recording: add this handler (and its span tracker) to LlamaIndex's root dispatcher."""
        dispatcher = get_dispatcher()
        if self._tracker is None:
            tracker = _SpanTracker()
            tracker._owner = self
            self._tracker = tracker
        if self not in dispatcher.event_handlers:
            dispatcher.add_event_handler(self)
        if self._tracker not in dispatcher.span_handlers:
            dispatcher.add_span_handler(self._tracker)
        return self

    def detach(self) -> None:
        """Stop recording: remove this handler from the root dispatcher."""
        dispatcher = get_dispatcher()
        if self in dispatcher.event_handlers:
            dispatcher.event_handlers.remove(self)
        if self._tracker is not None and self._tracker in dispatcher.span_handlers:
            dispatcher.span_handlers.remove(self._tracker)


class _SpanTracker(BaseSpanHandler[SimpleSpan]):
    """Feeds the span tree (parents, drops) to a :class:`LedgerEventHandler`."""

    _owner: Any = PrivateAttr(default=None)

    @classmethod
    def class_name(cls) -> str:
        return "CtxkitSpanTracker"

    def new_span(
        self,
        id_: str,
        bound_args: Any,
        instance: Any = None,
        parent_span_id: str | None = None,
        tags: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> SimpleSpan | None:
        self._owner._span_opened(id_, parent_span_id)
        return SimpleSpan(id_=id_, parent_id=parent_span_id, tags=tags or {})

    def prepare_to_exit_span(
        self, id_: str, bound_args: Any, instance: Any = None, result: Any = None, **kwargs: Any
    ) -> SimpleSpan | None:
        self._owner._span_closed(id_, None)
        return self.open_spans.get(id_)

    def prepare_to_drop_span(
        self, id_: str, bound_args: Any, instance: Any = None, err: BaseException | None = None, **kwargs: Any
    ) -> SimpleSpan | None:
        self._owner._span_closed(id_, err)
        return self.open_spans.get(id_)


def instrument_llamaindex(
    ledger: Ledger, *, workflow: str = "default", task_id: str | None = None
) -> LedgerEventHandler:
    """Attach a :class:`LedgerEventHandler` to LlamaIndex's root dispatcher; returns it (``.detach()`` to stop)."""
    return LedgerEventHandler(ledger=ledger, workflow=workflow, task_id=task_id).attach()
