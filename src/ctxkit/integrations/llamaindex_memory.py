"""ctxkit's context editing as a LlamaIndex ``Memory`` (extra ``llamaindex``).

:class:`CtxkitMemory` is LlamaIndex's ``Memory`` (the API that replaced ``ChatMemoryBuffer``:
a chat store, memory blocks, a FIFO queue) whose ``get`` / ``aget`` — what an agent sends to
its LLM — go through an :class:`~ctxkit.agents.AgentContext` first: stale tool results are
offloaded to a content-addressed store and replaced by stubs, old thinking is cleared,
older turns may be compacted, and the request stays under ``max_input_tokens``. What the
memory stores is never changed (``get_all`` returns everything); :meth:`CtxkitMemory.tools`
are the ``expand`` / ``search_offloaded`` tools (LlamaIndex ``FunctionTool``) that give an
offloaded result back byte-exact::

    memory = CtxkitMemory.from_defaults(session_id="s1", token_limit=1_000_000)
    memory.configure(EditPolicy(max_input_tokens=30_000))
    agent = FunctionAgent(tools=[*my_tools, *memory.tools()], llm=llm)
    await agent.run("...", memory=memory)

Set LlamaIndex's own ``token_limit`` high: the FIFO queue drops whole messages by its
estimate, while ctxkit edits what is sent without dropping a call from its result.
"""

from __future__ import annotations

from typing import Any

from pydantic import PrivateAttr

from ctxkit.agents import AgentContext, EditPolicy, EditReport
from ctxkit.agents.store import OffloadStore
from ctxkit.compress.summarize import Summarizer
from ctxkit.errors import MissingDependencyError
from ctxkit.integrations._agents import edit_history, offload_functions
from ctxkit.integrations.llamaindex import to_ctxkit_message
from ctxkit.messages import Message
from ctxkit.tokenizers import ChatCounter

try:
    from llama_index.core.base.llms.types import ChatMessage, MessageRole, TextBlock
    from llama_index.core.memory import Memory
    from llama_index.core.tools import FunctionTool
except ImportError as exc:
    raise MissingDependencyError("the LlamaIndex memory integration", "llamaindex", package="llama-index-core") from exc

__all__ = ["CtxkitMemory"]


class CtxkitMemory(Memory):
    """LlamaIndex ``Memory`` whose ``get``/``aget`` apply ctxkit's context editing (see the module docstring)."""

    _ctx: AgentContext | None = PrivateAttr(default=None)
    _reports: list[EditReport] = PrivateAttr(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "CtxkitMemory"

    def configure(
        self,
        policy: EditPolicy | None = None,
        *,
        store: OffloadStore | None = None,
        counter: ChatCounter | str = "gpt-4o",
        summarizer: Summarizer | None = None,
        pricing_model: str = "claude-sonnet-4-5",
    ) -> CtxkitMemory:
        """Set the edit policy, store, counter and summarizer (defaults apply until called); returns ``self``."""
        self._ctx = AgentContext(
            policy, store=store, counter=counter, summarizer=summarizer, pricing_model=pricing_model
        )
        return self

    @property
    def context(self) -> AgentContext:
        """The :class:`~ctxkit.agents.AgentContext` that edits what ``get`` returns."""
        if self._ctx is None:
            self._ctx = AgentContext()
        return self._ctx

    @property
    def reports(self) -> list[EditReport]:
        """One report per ``get``."""
        return self._reports

    def tools(self) -> list[FunctionTool]:
        """``expand`` and ``search_offloaded`` as LlamaIndex function tools."""
        return [FunctionTool.from_defaults(fn=f) for f in offload_functions(self.context)]

    def edit(self, messages: list[ChatMessage]) -> list[ChatMessage]:
        """``messages`` as ctxkit edits them for this model call."""
        history = [to_ctxkit_message(m, index=i) for i, m in enumerate(messages)]

        def edited(k: int, m: Message) -> list[ChatMessage]:
            src = messages[k]
            if m.role != "tool":  # pragma: no cover - the policy edits only tool results and <think> text here
                kept = [b for b in src.blocks if not isinstance(b, TextBlock)]
                return [src.model_copy(update={"blocks": [TextBlock(text=m.content), *kept]})]
            return [src.model_copy(update={"blocks": [TextBlock(text=m.content)]})]

        return edit_history(
            self.context,
            history,
            reports=self._reports,
            summary=lambda text: ChatMessage(role=MessageRole.USER, content=text),  # a summary epoch
            unchanged=lambda k: [messages[k]],
            edited=edited,
        )

    async def aget(self, input: str | ChatMessage | None = None, **block_kwargs: Any) -> list[ChatMessage]:
        messages = await super().aget(input=input, **block_kwargs)
        if not messages:
            return messages
        return self.edit(messages)
