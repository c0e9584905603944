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

from ctxkit._optional import require

require("llama_index.core", feature="the LlamaIndex memory integration", extra="llamaindex", package="llama-index-core")

from llama_index.core.base.llms.types import ChatMessage, MessageRole, TextBlock  # noqa: E402
from llama_index.core.memory import Memory  # noqa: E402
from llama_index.core.tools import FunctionTool  # noqa: E402
from pydantic import PrivateAttr  # noqa: E402

from ctxkit.agents import AgentContext, EditPolicy, EditReport  # noqa: E402
from ctxkit.agents.store import OffloadStore  # noqa: E402
from ctxkit.compress.summarize import Summarizer  # noqa: E402
from ctxkit.integrations.llamaindex import to_ctxkit_message  # noqa: E402
from ctxkit.tokenizers import ChatCounter  # noqa: E402

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
        ctx = self.context

        def expand(id: str) -> str:
            """Get back the exact full text of an offloaded tool result; pass the id shown in its stub."""
            return ctx.expand(id)

        def search_offloaded(query: str) -> str:
            """Find lines in offloaded tool results that contain every word of the query."""
            return ctx.search(query)

        return [FunctionTool.from_defaults(fn=expand), FunctionTool.from_defaults(fn=search_offloaded)]

    def edit(self, messages: list[ChatMessage]) -> list[ChatMessage]:
        """``messages`` as ctxkit edits them for this model call."""
        history = [to_ctxkit_message(m, index=i) for i, m in enumerate(messages)]
        prepared = self.context.prepare(history)
        self._reports.append(prepared.report)
        out: list[ChatMessage] = []
        for m, origin in zip(prepared.messages, prepared.origin, strict=True):
            if origin is None:
                out.append(ChatMessage(role=MessageRole.USER, content=m.content))  # a summary epoch
            elif m == history[origin]:
                out.append(messages[origin])
            elif m.role == "tool":
                src = messages[origin]
                out.append(src.model_copy(update={"blocks": [TextBlock(text=m.content)]}))
            else:  # pragma: no cover - the policy edits only tool results and <think> text here
                src = messages[origin]
                kept = [b for b in src.blocks if not isinstance(b, TextBlock)]
                out.append(src.model_copy(update={"blocks": [TextBlock(text=m.content), *kept]}))
        return out

    async def aget(self, input: str | ChatMessage | None = None, **block_kwargs: Any) -> list[ChatMessage]:
        messages = await super().aget(input=input, **block_kwargs)
        if not messages:
            return messages
        return self.edit(messages)
