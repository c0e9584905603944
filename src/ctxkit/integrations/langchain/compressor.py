"""``CtxkitCompressor``: a document compressor that packs (and optionally prunes) documents to a token budget."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from langchain_core.runnables.config import run_in_executor
from pydantic import ConfigDict, Field

from ctxkit.integrations._common import DEFAULT_SCORE_KEYS, PackReport, pack_texts, score_from_metadata

__all__ = ["CtxkitCompressor"]


class CtxkitCompressor(BaseDocumentCompressor):
    """Packs retrieved documents into a token budget, maximizing their summed relevance.

    Scores come from each document's metadata (``score_keys``, e.g. a reranker's
    ``relevance_score``), else from its rank. The exact 0/1 knapsack runs when
    affordable (:func:`ctxkit.assembly.pack`). With a ``pruner``
    (:class:`ctxkit.compress.TokenPruner` or any ``TextCompressor``), documents that do
    not fit whole are pruned to ``prune_rate`` with the query as the question and packed
    into the room left; such documents carry ``metadata["ctxkit_pruned"] = True``.
    Kept documents keep the retriever's order. ``last_report`` holds what was dropped.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    budget_tokens: int = Field(
        default=1024,
        ge=0,
        description="token budget of the retrieved section (the documents packed), not of the whole prompt",
    )
    tokenizer: str = "gpt-4o"
    per_document_tokens: int = Field(default=0, ge=0, description="tokens of the wrapper each document gets")
    score_keys: tuple[str, ...] = DEFAULT_SCORE_KEYS
    pruner: Any = Field(default=None, exclude=True)
    prune_rate: float = Field(default=0.5, gt=0, le=1)
    last_report: PackReport | None = Field(default=None, exclude=True)

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        docs = list(documents)
        scores = [score_from_metadata(d.metadata, i, self.score_keys) for i, d in enumerate(docs)]
        report = pack_texts(
            [d.page_content for d in docs],
            scores,
            self.budget_tokens,
            tokenizer=self.tokenizer,
            per_item_tokens=self.per_document_tokens,
            pruner=self.pruner,
            prune_rate=self.prune_rate,
            question=query,
        )
        self.last_report = report
        out: list[Document] = []
        for item in report.kept:
            d = docs[item.index]
            meta = {**d.metadata, "ctxkit_tokens": item.tokens}
            if item.pruned:
                meta["ctxkit_pruned"] = True
                meta["ctxkit_original_tokens"] = item.original_tokens
            out.append(Document(page_content=item.text, metadata=meta, id=d.id))
        return out

    async def acompress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        return await run_in_executor(None, self.compress_documents, documents, query, callbacks)
