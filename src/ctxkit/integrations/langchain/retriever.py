"""``CtxkitRetriever``: a LangChain retriever over :class:`ctxkit.retrieval.Retriever` (a budget-packed set)."""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field

from ctxkit.errors import InvalidInputError
from ctxkit.integrations.langchain.convert import chunk_to_document

__all__ = ["CtxkitRetriever"]


class CtxkitRetriever(BaseRetriever):
    """A LangChain retriever over :class:`ctxkit.retrieval.Retriever`: a budget-packed set of documents.

    Each call returns the chunks :meth:`ctxkit.retrieval.Retriever.retrieve` packs into
    ``budget_tokens`` (hybrid search, near-duplicate removal, MMR), at most ``k`` of
    them. ``k`` and ``budget_tokens`` can be overridden per call
    (``retriever.invoke(q, k=3)``). Scores land in ``metadata["relevance_score"]``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    retriever: Any = Field(exclude=True, description="a ctxkit.retrieval.Retriever")
    budget_tokens: int = Field(
        default=1024,
        ge=0,
        description="token budget of the retrieved section (the documents packed), not of the whole prompt",
    )
    k: int | None = Field(default=None, ge=1)
    mode: Literal["hybrid", "vector", "lexical"] | None = None
    filter: dict[str, Any] | None = None

    def _options(self, kwargs: dict[str, Any]) -> tuple[int, int | None, dict[str, Any]]:
        budget = int(kwargs.pop("budget_tokens", self.budget_tokens))
        k = kwargs.pop("k", self.k)
        opts: dict[str, Any] = {"mode": kwargs.pop("mode", self.mode), "filter": kwargs.pop("filter", self.filter)}
        if kwargs:
            raise InvalidInputError(
                f"unknown retriever options {sorted(kwargs)}; known: k, budget_tokens, mode, filter"
            )
        return budget, k, opts

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        budget, k, opts = self._options(kwargs)
        chunks = self.retriever.retrieve(query, budget, **opts)
        return [chunk_to_document(c) for c in chunks[:k]]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        budget, k, opts = self._options(kwargs)
        chunks = await self.retriever.aretrieve(query, budget, **opts)
        return [chunk_to_document(c) for c in chunks[:k]]
