"""Feed the ledger from LangChain: a callback handler for chat models and LLMs (extra ``langchain``).

::

    from ctxkit.telemetry import Ledger
    from ctxkit.telemetry.langchain import LedgerCallbackHandler

    ledger = Ledger()
    llm.invoke("hi", config={"callbacks": [LedgerCallbackHandler(ledger, workflow="qa")]})

Tokens come from the message's ``usage_metadata`` (LangChain's standard format:
``input_tokens`` including cached ones, ``input_token_details.cache_read`` /
``cache_creation``, ``output_token_details.reasoning``), else from the provider's
``llm_output["token_usage"]`` (OpenAI format). A call with neither is recorded with
``usage_reported=False`` and an unknown cost. The workflow comes from
``metadata["ctxkit_workflow"]`` when set, else from the handler. Only the run's tags
and metadata are kept (scrubbed of secrets), never the invocation parameters.
"""

from __future__ import annotations

import threading
import time
from typing import Any
from uuid import UUID

from ctxkit._optional import require
from ctxkit.errors import BudgetError
from ctxkit.secrets import get_logger
from ctxkit.telemetry.ledger import Ledger
from ctxkit.usage import Usage

require("langchain_core.callbacks", feature="the LangChain callback", extra="langchain", package="langchain-core")

from langchain_core.callbacks import BaseCallbackHandler  # noqa: E402
from langchain_core.outputs import ChatGeneration, LLMResult  # noqa: E402

__all__ = ["LedgerCallbackHandler"]

logger = get_logger("ctxkit.telemetry")


class _Run:
    __slots__ = ("first", "metadata", "model", "operation", "provider", "start", "workflow")

    def __init__(self, model: str, provider: str, workflow: str, metadata: dict[str, Any], operation: str) -> None:
        self.start = time.perf_counter()
        self.first: float | None = None
        self.model = model
        self.provider = provider
        self.workflow = workflow
        self.metadata = metadata
        self.operation = operation


def _model_name(serialized: dict[str, Any] | None, metadata: dict[str, Any], kwargs: dict[str, Any]) -> str:
    params = kwargs.get("invocation_params") or {}
    for value in (
        metadata.get("ls_model_name"),
        params.get("model"),
        params.get("model_name"),
        ((serialized or {}).get("kwargs") or {}).get("model"),
        ((serialized or {}).get("kwargs") or {}).get("model_name"),
        params.get("_type"),
    ):
        if isinstance(value, str) and value:
            return value
    return "unknown"


class LedgerCallbackHandler(BaseCallbackHandler):
    """Records every LangChain chat-model / LLM run in a :class:`~ctxkit.telemetry.Ledger`.

    Budget errors (``action="raise"``) propagate to the caller; any other failure inside
    the handler is logged and never breaks the user's chain.
    """

    raise_error = True  # so that WorkflowBudgetExceededError reaches the caller
    run_inline = True  # cheap and non-blocking: run in the event loop of async calls, so timings are true

    def __init__(self, ledger: Ledger, *, workflow: str = "default", task_id: str | None = None) -> None:
        super().__init__()
        self.ledger = ledger
        self.workflow = workflow
        self.task_id = task_id
        self._runs: dict[UUID, _Run] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ start
    def _start(
        self,
        serialized: dict[str, Any] | None,
        run_id: UUID,
        tags: list[str] | None,
        metadata: dict[str, Any] | None,
        kwargs: dict[str, Any],
        operation: str,
    ) -> None:
        try:
            meta = dict(metadata or {})
            run = _Run(
                model=_model_name(serialized, meta, kwargs),
                provider=str(meta.get("ls_provider") or ""),
                workflow=str(meta.get("ctxkit_workflow") or self.workflow),
                metadata={"tags": list(tags or []), **meta},
                operation=operation,
            )
            with self._lock:
                self._runs[run_id] = run
        except Exception as exc:
            logger.warning("ctxkit LangChain callback could not start run %s: %s", run_id, type(exc).__name__)

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._start(serialized, run_id, tags, metadata, kwargs, "chat")

    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._start(serialized, run_id, tags, metadata, kwargs, "text_completion")

    def on_llm_new_token(self, token: Any, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            run = self._runs.get(run_id)
            if run is not None and run.first is None:
                run.first = time.perf_counter()

    # ------------------------------------------------------------------ end
    @staticmethod
    def _usage(response: LLMResult) -> tuple[Usage | None, str | None]:
        usage: Usage | None = None
        model: str | None = None
        for generations in response.generations:
            for gen in generations:
                if isinstance(gen, ChatGeneration):
                    meta = getattr(gen.message, "usage_metadata", None)
                    if meta:
                        u = Usage.from_langchain(dict(meta))
                        usage = u if usage is None else usage + u
                    rmeta = getattr(gen.message, "response_metadata", None) or {}
                    model = model or rmeta.get("model_name") or rmeta.get("model")
        out = response.llm_output or {}
        if usage is None:
            token_usage = out.get("token_usage") or out.get("usage")
            if isinstance(token_usage, dict) and token_usage:
                usage = Usage.from_openai(token_usage)
        model = model or out.get("model_name") or out.get("model")
        return usage, model if isinstance(model, str) else None

    def _finish(self, run_id: UUID, *, response: LLMResult | None, error: BaseException | None) -> None:
        with self._lock:
            run = self._runs.pop(run_id, None)
        if run is None:
            return
        now = time.perf_counter()
        latency = now - run.start
        ttft = None if run.first is None else min(run.first - run.start, latency)
        try:
            usage, model = self._usage(response) if response is not None else (None, None)
            self.ledger.record(
                model=model or run.model,
                workflow=run.workflow,
                usage=usage,
                provider=run.provider,
                backend="langchain",
                latency_s=latency,
                ttft_s=ttft,
                error=error,
                task_id=self.task_id,
                operation=run.operation,
                metadata=run.metadata,
            )
        except BudgetError:
            raise
        except Exception as exc:
            logger.warning("ctxkit LangChain callback could not record run %s: %s", run_id, type(exc).__name__)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        self._finish(run_id, response=response, error=None)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._finish(run_id, response=None, error=error)
