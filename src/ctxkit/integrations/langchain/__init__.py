"""ctxkit inside LangChain (extra ``langchain``): native components over ctxkit's stages.

Adopting ctxkit in an existing LCEL chain takes two changed lines::

    from ctxkit.integrations.langchain import ChatCtxkit, CtxkitPrompt

    prompt = CtxkitPrompt(model="smollm2-135m-instruct", budget=512, system="Answer briefly.")  # was ChatPromptTemplate
    llm = ChatCtxkit(model="llamacpp:default", max_tokens=64)                               # was another chat model
    chain = {"context": retriever, "question": RunnablePassthrough()} | prompt | llm | StrOutputParser()

What is here:

* :func:`to_ctxkit_messages` / :func:`from_ctxkit_message` — message conversion both
  ways, tool calls and tool results included;
* :class:`ChatCtxkit` — a ``BaseChatModel`` over :class:`ctxkit.dispatch.Dispatcher`
  (routing, fallbacks, retries, residency) with streaming, ``bind_tools`` and
  ``usage_metadata`` (``input_token_details.cache_read`` from llama.cpp's prefix reuse);
* :class:`CtxkitPrompt` — a Runnable that assembles a budgeted, cache-friendly prompt
  (:class:`ctxkit.Assembler`) from the chain's input dict;
* :class:`CtxkitCompressor` — a ``BaseDocumentCompressor`` that packs (and optionally
  prunes) retrieved documents to a token budget, for ``ContextualCompressionRetriever``;
* :class:`CtxkitRetriever` — a ``BaseRetriever`` over :class:`ctxkit.retrieval.Retriever`
  returning a budget-packed set;
* :class:`CtxkitEmbeddings` — LangChain ``Embeddings`` over a ctxkit embedder (offline
  all-MiniLM-L6-v2 by default, cached by content hash);
* :class:`LedgerCallbackHandler` — re-exported from :mod:`ctxkit.telemetry.langchain`;
* :class:`CtxkitAgentMiddleware` — context editing for LangChain v1 ``create_agent``, in
  :mod:`ctxkit.integrations.langchain.middleware` (extra ``agents``; not imported here).

One module per family: :mod:`~ctxkit.integrations.langchain.convert` (messages, documents,
usage, tools), :mod:`~ctxkit.integrations.langchain.chat_model`,
:mod:`~ctxkit.integrations.langchain.prompt`, :mod:`~ctxkit.integrations.langchain.compressor`,
:mod:`~ctxkit.integrations.langchain.retriever`, :mod:`~ctxkit.integrations.langchain.embeddings`
and :mod:`~ctxkit.integrations.langchain.middleware`. Importing this package (or any of them)
without ``langchain-core`` raises :class:`~ctxkit.errors.MissingDependencyError` naming the extra.
"""

from __future__ import annotations

# First, before any module that imports LangChain: the extra's check (MissingDependencyError naming it).
from ctxkit.integrations.langchain import _extra as _extra
from ctxkit.integrations.langchain.chat_model import ChatCtxkit
from ctxkit.integrations.langchain.compressor import CtxkitCompressor
from ctxkit.integrations.langchain.convert import (
    chunk_to_document,
    document_to_chunk,
    from_ctxkit_message,
    from_ctxkit_messages,
    to_ctxkit_message,
    to_ctxkit_messages,
    tool_spec,
    usage_metadata,
)
from ctxkit.integrations.langchain.embeddings import CtxkitEmbeddings
from ctxkit.integrations.langchain.prompt import AssembledPromptValue, CtxkitPrompt
from ctxkit.integrations.langchain.prompt import ContextLike as ContextLike  # a module attribute, as before
from ctxkit.integrations.langchain.retriever import CtxkitRetriever
from ctxkit.telemetry.langchain import LedgerCallbackHandler

__all__ = [
    "AssembledPromptValue",
    "ChatCtxkit",
    "CtxkitCompressor",
    "CtxkitEmbeddings",
    "CtxkitPrompt",
    "CtxkitRetriever",
    "LedgerCallbackHandler",
    "chunk_to_document",
    "document_to_chunk",
    "from_ctxkit_message",
    "from_ctxkit_messages",
    "to_ctxkit_message",
    "to_ctxkit_messages",
    "usage_metadata",
]

_tool_spec = tool_spec  # the name it had when this package was one module (the agent benchmark and tests use it)
