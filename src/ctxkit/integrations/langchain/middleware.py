"""ctxkit's context editing as LangChain v1 agent middleware (extra ``agents``).

::

    from langchain.agents import create_agent
    from ctxkit.agents import EditPolicy
    from ctxkit.integrations.langchain_agents import CtxkitAgentMiddleware

    agent = create_agent(model, tools=[...], middleware=[CtxkitAgentMiddleware(EditPolicy(max_input_tokens=100_000))])

:class:`CtxkitAgentMiddleware` wraps every model call (``wrap_model_call`` /
``awrap_model_call``): it converts the request's messages to ctxkit messages, lets an
:class:`~ctxkit.agents.AgentContext` edit them (offload stale tool results to a
content-addressed store, clear old thinking, compact, keep under ``max_input_tokens``
counting the system prompt and the tools) and sends the edited request. Messages it did
not edit go out as the very objects the agent state holds; the state itself is never
rewritten, so the edit is reversible, and the ``expand`` / ``search_offloaded`` tools it
registers give the model any offloaded result back, byte-exact.

For Anthropic chat models (``ChatAnthropic``) it also marks the prompt cache, as
``AnthropicPromptCachingMiddleware`` does (``model_settings["cache_control"]``), with the
TTL you choose: the edited request keeps a byte-stable prefix between edit batches, so
those marks keep hitting.

One middleware instance serves one conversation at a time (its edits are remembered
and re-applied so the prefix stays stable); a different history simply starts over.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import BaseTool, StructuredTool

from ctxkit.agents import AgentContext, EditPolicy, EditReport
from ctxkit.agents.store import OffloadStore
from ctxkit.compress.summarize import Summarizer
from ctxkit.errors import InvalidInputError, MissingDependencyError
from ctxkit.integrations._agents import edit_history, offload_functions
from ctxkit.integrations.langchain.convert import to_ctxkit_message, tool_spec
from ctxkit.messages import Message, ToolSpec
from ctxkit.tokenizers import ChatCounter

try:  # the agents extra (langchain v1); langchain-core is checked by the package
    from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
except ImportError as exc:
    raise MissingDependencyError("the LangChain agent middleware", "agents", package="langchain") from exc

__all__ = ["CtxkitAgentMiddleware", "thinking_text"]

_THINKING_BLOCKS = frozenset({"reasoning", "thinking"})


def thinking_text(message: AIMessage) -> str:
    """The reasoning an AI message carries (content blocks or ``reasoning_content``), as plain text."""
    parts: list[str] = []
    if isinstance(message.content, list):
        for block in message.content:
            if isinstance(block, dict) and block.get("type") in _THINKING_BLOCKS:
                parts.append(str(block.get("thinking") or block.get("reasoning") or block.get("text") or ""))
    extra = message.additional_kwargs.get("reasoning_content")
    if isinstance(extra, str):
        parts.append(extra)
    return "\n".join(p for p in parts if p)


def _without_thinking(message: AIMessage) -> AIMessage:
    content: Any = message.content
    if isinstance(content, list):
        content = [b for b in content if not (isinstance(b, dict) and b.get("type") in _THINKING_BLOCKS)]
    extra = {k: v for k, v in message.additional_kwargs.items() if k != "reasoning_content"}
    return message.model_copy(update={"content": content, "additional_kwargs": extra})


def _to_ctxkit(message: BaseMessage, index: int) -> Message:
    m = to_ctxkit_message(message, index=index)
    if isinstance(message, AIMessage):
        think = thinking_text(message)
        if think:  # counted and clearable like any <think> block
            m = m.model_copy(update={"content": f"<think>{think}</think>{m.content}"})
    return m


class CtxkitAgentMiddleware(AgentMiddleware):
    """Context editing, budget and cache marks for ``create_agent`` (see the module docstring).

    ``policy`` says what to edit and when; ``store`` keeps offloaded results (default a
    :class:`~ctxkit.agents.FileOffloadStore` in a temporary directory); ``counter`` counts
    tokens (a model name or a ChatCounter, e.g. the local GGUF's); ``summarizer`` enables
    compaction; ``anthropic_cache`` marks the prompt cache (``None``: only for Anthropic
    models) with ``cache_ttl``; ``tools=False`` registers no ``expand``/``search_offloaded``.
    """

    def __init__(
        self,
        policy: EditPolicy | None = None,
        *,
        store: OffloadStore | None = None,
        counter: ChatCounter | str = "gpt-4o",
        summarizer: Summarizer | None = None,
        pricing_model: str = "claude-sonnet-4-5",
        anthropic_cache: bool | None = None,
        cache_ttl: str = "5m",
        tools: bool = True,
    ) -> None:
        super().__init__()
        if cache_ttl not in ("5m", "1h"):
            raise InvalidInputError(f"cache_ttl must be '5m' or '1h' (Anthropic's TTLs), not {cache_ttl!r}")
        self.context = AgentContext(
            policy, store=store, counter=counter, summarizer=summarizer, pricing_model=pricing_model
        )
        self.anthropic_cache = anthropic_cache
        self.cache_ttl = cache_ttl
        self.reports: list[EditReport] = []
        self.tools: list[BaseTool] = self._tools() if tools else []

    def __repr__(self) -> str:
        return f"CtxkitAgentMiddleware({self.context!r})"

    def _tools(self) -> list[BaseTool]:
        expand, search = offload_functions(self.context)
        described = zip((expand, search), self.context.tools, strict=True)
        return [StructuredTool.from_function(f, name=spec.name, description=spec.description) for f, spec in described]

    @property
    def last_report(self) -> EditReport | None:
        """What the latest model call's edit did."""
        return self.reports[-1] if self.reports else None

    def edit(self, request: ModelRequest[Any]) -> ModelRequest[Any]:
        """The request with ctxkit's edits applied (pure: the agent state is not touched)."""
        lead = [request.system_message] if request.system_message is not None else []
        history = [_to_ctxkit(m, i) for i, m in enumerate([*lead, *request.messages])]
        tools: list[ToolSpec] = []
        for t in request.tools:
            try:
                tools.append(tool_spec(t))
            except Exception:  # provider built-in tools (dicts without a schema) are not counted
                continue

        def edited(k: int, m: Message) -> list[AnyMessage]:
            src = request.messages[k]
            if isinstance(src, ToolMessage):
                return [src.model_copy(update={"content": m.content})]
            if not isinstance(src, AIMessage):  # pragma: no cover - the policy edits only tool results and thinking
                raise InvalidInputError(f"ctxkit edited a {type(src).__name__}, which it never should; please report")
            return [_without_thinking(src)]

        # the system message is counted and travels in request.system_message; a summary epoch is a human message
        out = edit_history(
            self.context,
            history,
            reports=self.reports,
            tools=tools,
            lead=len(lead),
            summary=lambda text: HumanMessage(content=text),
            unchanged=lambda k: [request.messages[k]],
            edited=edited,
        )
        new = request.override(messages=out)
        if self._wants_cache(request):
            settings = dict(request.model_settings)
            settings["cache_control"] = {"type": "ephemeral", "ttl": self.cache_ttl}
            new = new.override(model_settings=settings)
        return new

    def _wants_cache(self, request: ModelRequest[Any]) -> bool:
        if self.anthropic_cache is not None:
            return self.anthropic_cache
        return "anthropic" in getattr(request.model, "_llm_type", "")

    def wrap_model_call(
        self, request: ModelRequest[Any], handler: Callable[[ModelRequest[Any]], ModelResponse[Any]]
    ) -> ModelResponse[Any]:
        return handler(self.edit(request))

    async def awrap_model_call(
        self, request: ModelRequest[Any], handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]]
    ) -> ModelResponse[Any]:
        # the edit may summarize with a local model: keep the event loop free
        return await handler(await asyncio.to_thread(self.edit, request))
