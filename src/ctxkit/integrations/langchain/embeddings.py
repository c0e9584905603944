"""``CtxkitEmbeddings``: LangChain ``Embeddings`` over a ctxkit embedder."""

from __future__ import annotations

from typing import Any

from langchain_core.embeddings import Embeddings

__all__ = ["CtxkitEmbeddings"]


class CtxkitEmbeddings(Embeddings):
    """LangChain ``Embeddings`` over a ctxkit embedder (default: offline all-MiniLM-L6-v2, extra ``retrieval``).

    Vectors are L2-normalized float32 as the ctxkit embedder returns them; repeated texts
    come from its content-hash cache.
    """

    def __init__(self, embedder: Any = None) -> None:
        if embedder is None:
            from ctxkit.retrieval.embeddings import SentenceTransformerEmbedder

            embedder = SentenceTransformerEmbedder()
        self.embedder = embedder

    def __repr__(self) -> str:
        return f"CtxkitEmbeddings({self.embedder!r})"

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [[float(x) for x in row] for row in self.embedder.embed(list(texts))]

    def embed_query(self, text: str) -> list[float]:
        return [float(x) for x in self.embedder.embed_query(text)]
