"""Context editing for tool-heavy agent loops: offload, clear, compact, never orphan.

:class:`AgentContext` applies an :class:`EditPolicy` to the history of one agent
conversation before each model call; offloaded tool results live in an
:class:`OffloadStore` (:class:`FileOffloadStore` by default) and come back exactly
through the ``expand`` tool. Framework adapters: :mod:`ctxkit.integrations.langchain_agents`
(LangChain v1 middleware), :mod:`ctxkit.integrations.openai_agents` (OpenAI Agents SDK)
and :mod:`ctxkit.integrations.llamaindex_memory` (LlamaIndex ``Memory``).
"""

from ctxkit.agents.policy import (
    EXPAND_TOOL,
    SEARCH_TOOL,
    STUB_PREFIX,
    AgentContext,
    EditPolicy,
    EditReport,
    PreparedContext,
    strip_thinking,
)
from ctxkit.agents.store import (
    FileOffloadStore,
    MemoryOffloadStore,
    OffloadStore,
    SearchHit,
    content_id,
    resolve_id,
    search_offloaded,
)

__all__ = [
    "EXPAND_TOOL",
    "SEARCH_TOOL",
    "STUB_PREFIX",
    "AgentContext",
    "EditPolicy",
    "EditReport",
    "FileOffloadStore",
    "MemoryOffloadStore",
    "OffloadStore",
    "PreparedContext",
    "SearchHit",
    "content_id",
    "resolve_id",
    "search_offloaded",
    "strip_thinking",
]
