"""Adapters that make ctxkit a native component of other frameworks.

* :mod:`ctxkit.integrations.langchain` (extra ``langchain``): ``ChatCtxkit``,
  ``CtxkitPrompt``, ``CtxkitCompressor``, ``CtxkitRetriever``, message conversion,
  and the ledger's ``LedgerCallbackHandler``;
* :mod:`ctxkit.integrations.llamaindex` (extra ``llamaindex``): ``CtxkitLLM``,
  ``CtxkitNodePostprocessor``, ``CtxkitChatMemory``, node <-> chunk conversion.

Import the submodule you need; this package imports neither framework.
"""

__all__: list[str] = []
