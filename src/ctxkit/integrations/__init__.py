"""Adapters that make ctxkit a native component of other frameworks.

* :mod:`ctxkit.integrations.langchain` (extra ``langchain``; a package, one module per
  family): ``ChatCtxkit``, ``CtxkitPrompt``, ``CtxkitCompressor``, ``CtxkitRetriever``,
  ``CtxkitEmbeddings``, message conversion, and the ledger's ``LedgerCallbackHandler``;
* :mod:`ctxkit.integrations.llamaindex` (extra ``llamaindex``): ``CtxkitLLM``,
  ``CtxkitNodePostprocessor``, ``CtxkitChatMemory``, node <-> chunk conversion;
* agent runners (extra ``agents``): :mod:`ctxkit.integrations.langchain_agents`
  (``CtxkitAgentMiddleware`` for LangChain v1 ``create_agent``, from
  :mod:`ctxkit.integrations.langchain.middleware`),
  :mod:`ctxkit.integrations.openai_agents` (``CtxkitInputFilter`` for the OpenAI Agents SDK)
  and :mod:`ctxkit.integrations.llamaindex_memory` (``CtxkitMemory``, a LlamaIndex ``Memory``);
  they share :mod:`ctxkit.integrations._agents`.

Import the submodule you need; this package imports neither framework.
"""

__all__: list[str] = []
