"""Adapters that make ctxkit a native component of other frameworks.

* :mod:`ctxkit.integrations.langchain` (extra ``langchain``): ``ChatCtxkit``,
  ``CtxkitPrompt``, ``CtxkitCompressor``, ``CtxkitRetriever``, message conversion,
  and the ledger's ``LedgerCallbackHandler``;
* :mod:`ctxkit.integrations.llamaindex` (extra ``llamaindex``): ``CtxkitLLM``,
  ``CtxkitNodePostprocessor``, ``CtxkitChatMemory``, node <-> chunk conversion;
* agent runners (extra ``agents``): :mod:`ctxkit.integrations.langchain_agents`
  (``CtxkitAgentMiddleware`` for LangChain v1 ``create_agent``),
  :mod:`ctxkit.integrations.openai_agents` (``CtxkitInputFilter`` for the OpenAI Agents SDK)
  and :mod:`ctxkit.integrations.llamaindex_memory` (``CtxkitMemory``, a LlamaIndex ``Memory``).

Import the submodule you need; this package imports neither framework.
"""

__all__: list[str] = []
