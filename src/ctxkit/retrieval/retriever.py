"""The budget retriever: documents in, scored chunks (or a budgeted prompt) out.

One request through :meth:`Retriever.retrieve`:

1. **candidates** — the query is embedded and searched in the vector index; with
   ``hybrid=True`` BM25 is searched too and both rankings are fused by reciprocal rank
   fusion (RRF);
2. **near-duplicates** — candidates whose embeddings have cosine >= ``dedupe_threshold``
   with a better candidate are dropped;
3. **diversity** — the rest is ordered by maximal marginal relevance (MMR);
4. **budget** — chunks are taken in that order while their tokens (text plus the
   assembler's per-chunk wrapper) fit ``budget_tokens``; a chunk too big for what is left
   is skipped and smaller later ones may still fit.

The returned :class:`~ctxkit.messages.Chunk` objects carry the relevance score (cosine,
or the RRF score when hybrid), the source span and ``metadata["tokens"]``, and go
straight into :class:`~ctxkit.assembly.Assembler` (:meth:`Retriever.prompt` does both).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from ctxkit.assembly import AssembledPrompt, Assembler
from ctxkit.budget import Budget
from ctxkit.errors import InvalidInputError
from ctxkit.messages import Chunk, Message
from ctxkit.retrieval.chunking import Chunker, Document
from ctxkit.retrieval.embeddings import Embedder
from ctxkit.retrieval.index import Filter, VectorIndex
from ctxkit.retrieval.lexical import BM25Index
from ctxkit.retrieval.rank import mmr, near_duplicates, rrf_fuse
from ctxkit.tokenizers import Tokenizer, get_tokenizer

__all__ = ["Retriever", "SearchMode"]

SearchMode = Literal["hybrid", "vector", "lexical"]
DocumentLike = Document | str | Mapping[str, Any]


def _as_document(d: DocumentLike, n: int) -> Document:
    if isinstance(d, Document):
        return d
    if isinstance(d, str):
        return Document(id=hashlib.sha256(d.encode()).hexdigest()[:16], text=d)
    if isinstance(d, Mapping):
        try:
            return Document(**d)
        except Exception as exc:
            raise InvalidInputError(f"documents[{n}] is not a valid Document: {exc}") from exc
    raise InvalidInputError(f"documents[{n}] is a {type(d).__name__}; pass Document, str or a mapping")


class Retriever:
    """Chunk, embed, index and retrieve for a token budget.

    Defaults: :class:`~ctxkit.retrieval.SentenceTransformerEmbedder` (all-MiniLM-L6-v2,
    offline), :class:`~ctxkit.retrieval.FaissIndex` (exact, HNSW when large), a 256-token
    :class:`~ctxkit.retrieval.Chunker`, and ``tokenizer`` (a spec or model name) for every
    token count.

    ``hybrid=True`` also keeps a BM25 index and makes ``mode="hybrid"`` (dense + BM25 fused
    by RRF, BM25 weighted by ``lexical_weight``) the default mode. It is off by default
    because on the benchmark's real QA set (ShareGPT questions) dense MiniLM alone was as
    good or better at small budgets; turn it on for keyword-heavy queries (identifiers,
    names, error codes). ``mmr_lambda`` trades relevance (1.0) for diversity (lower).
    """

    def __init__(
        self,
        embedder: Embedder | None = None,
        index: VectorIndex | None = None,
        *,
        chunker: Chunker | None = None,
        tokenizer: str | Tokenizer = "tiktoken:cl100k_base",
        hybrid: bool = False,
        rrf_k: int = 60,
        lexical_weight: float = 1.0,
        mmr_lambda: float = 0.9,
        dedupe_threshold: float | None = 0.95,
        candidates: int = 50,
    ) -> None:
        if embedder is None:
            from ctxkit.retrieval.embeddings import SentenceTransformerEmbedder

            embedder = SentenceTransformerEmbedder()
        if index is None:
            from ctxkit.retrieval.index import FaissIndex

            index = FaissIndex(embedder.dim)
        if index.dim != embedder.dim:
            raise InvalidInputError(f"the index has {index.dim} dimensions but the embedder makes {embedder.dim}")
        if candidates < 1:
            raise InvalidInputError(f"candidates must be at least 1, got {candidates}")
        self.embedder = embedder
        self.index = index
        self.tokenizer = get_tokenizer(tokenizer)
        self.chunker = chunker or Chunker(256, 32, tokenizer=self.tokenizer)
        self.lexical: BM25Index | None = BM25Index() if hybrid else None
        self.rrf_k = rrf_k
        self.lexical_weight = lexical_weight
        self.mmr_lambda = mmr_lambda
        self.dedupe_threshold = dedupe_threshold
        self.candidates = candidates
        self._chunks: dict[str, Chunk] = {}
        self._by_doc: dict[str, list[str]] = {}
        self._wrapper_cache: dict[tuple[str, str], int] = {}

    def __repr__(self) -> str:
        return (
            f"Retriever(embedder={self.embedder.name!r}, index={type(self.index).__name__}, "
            f"chunks={len(self._chunks)}, hybrid={self.lexical is not None})"
        )

    def __len__(self) -> int:
        return len(self._chunks)

    # ------------------------------------------------------------------ ingest
    def add_documents(self, documents: Iterable[DocumentLike], *, progress: bool = True) -> list[Chunk]:
        """Chunk, embed and index documents; a document id seen before is replaced.

        Unchanged chunk texts are served from the embedding cache. ``progress`` shows a
        tqdm bar with chunks per second.
        """
        docs = [_as_document(d, n) for n, d in enumerate(documents)]
        ids = [d.id for d in docs]
        if len(set(ids)) != len(ids):
            raise InvalidInputError("document ids must be unique within one call")
        chunks = self.chunker.split_documents(docs)
        stale = [cid for d in docs for cid in self._by_doc.get(d.id, ())]
        new_ids = {c.id for c in chunks}
        self._delete_chunk_ids([c for c in stale if c not in new_ids])
        self.add_chunks(chunks, progress=progress)
        return chunks

    def add_chunks(self, chunks: Sequence[Chunk], *, progress: bool = True, batch: int = 1024) -> None:
        """Embed and index ready-made chunks (each needs a unique ``id``); same ids are replaced."""
        for n, c in enumerate(chunks):
            if not isinstance(c, Chunk):
                raise InvalidInputError(f"chunks[{n}] is a {type(c).__name__}, not a ctxkit Chunk")
            if not c.id:
                raise InvalidInputError(f"chunks[{n}] has no id; give every chunk a unique id")
        if len({c.id for c in chunks}) != len(chunks):
            raise InvalidInputError("chunk ids must be unique within one call")
        missing = [c for c in chunks if "tokens" not in c.metadata]
        counts = self.tokenizer.count_many([c.text for c in missing])
        counted = {c.id: n for c, n in zip(missing, counts, strict=True)}
        ready = [
            c if c.id not in counted else c.model_copy(update={"metadata": {**c.metadata, "tokens": counted[c.id]}})
            for c in chunks
        ]
        bar = None
        if progress and ready:
            from tqdm.auto import tqdm  # type: ignore[import-untyped]

            bar = tqdm(total=len(ready), unit="chunk", desc="ingest", leave=False)
        try:
            for s in range(0, len(ready), batch):
                part = ready[s : s + batch]
                vecs = self.embedder.embed([c.text for c in part], progress=bar)
                metas = [{**c.metadata, "doc_id": c.doc_id} for c in part]
                self.index.upsert([c.id for c in part], vecs, metas)
                if self.lexical is not None:
                    self.lexical.upsert([c.id for c in part], [c.text for c in part], metas)
                for c in part:
                    old = self._chunks.get(c.id)
                    if old is None or old.doc_id != c.doc_id:
                        self._by_doc.setdefault(c.doc_id, []).append(c.id)
                    self._chunks[c.id] = c
        finally:
            if bar is not None:
                bar.close()

    def delete_documents(self, doc_ids: Iterable[str]) -> int:
        """Remove every chunk of the given documents; returns how many chunks went."""
        ids = [cid for d in doc_ids for cid in self._by_doc.get(d, ())]
        return self._delete_chunk_ids(ids)

    def _delete_chunk_ids(self, ids: list[str]) -> int:
        if not ids:
            return 0
        self.index.delete(ids)
        if self.lexical is not None:
            self.lexical.delete(ids)
        n = 0
        for cid in ids:
            c = self._chunks.pop(cid, None)
            if c is not None:
                n += 1
                lst = self._by_doc.get(c.doc_id)
                if lst is not None:
                    lst.remove(cid)
                    if not lst:
                        del self._by_doc[c.doc_id]
        return n

    def get_chunk(self, id: str) -> Chunk:
        """The stored chunk with ``id``."""
        try:
            return self._chunks[id]
        except KeyError as exc:
            raise InvalidInputError(f"no chunk with id {id!r}") from exc

    # ------------------------------------------------------------------ search
    def _resolve_mode(self, mode: SearchMode | None) -> SearchMode:
        if mode is None:
            return "hybrid" if self.lexical is not None else "vector"
        if mode not in ("hybrid", "vector", "lexical"):
            raise InvalidInputError(f"mode must be 'hybrid', 'vector' or 'lexical', not {mode!r}")
        if mode != "vector" and self.lexical is None:
            raise InvalidInputError(f"mode {mode!r} needs BM25: build the Retriever with hybrid=True")
        return mode

    def _ranked(self, query: str, k: int, flt: Filter | None, mode: SearchMode) -> tuple[list[tuple[str, float]], Any]:
        if not isinstance(query, str):
            raise InvalidInputError(f"query must be a str, got {type(query).__name__}")
        qv = self.embedder.embed_query(query) if mode != "lexical" else None
        dense = self.index.search(qv, k, filter=flt) if qv is not None else []
        if mode == "vector":
            return [(h.id, h.score) for h in dense], qv
        assert self.lexical is not None
        lex = self.lexical.search(query, k, filter=flt)
        if mode == "lexical":
            return [(h.id, h.score) for h in lex], qv
        fused = rrf_fuse([[h.id for h in dense], [h.id for h in lex]], k=self.rrf_k, weights=[1.0, self.lexical_weight])
        return fused[:k], qv

    def search(
        self, query: str, k: int = 10, *, filter: Filter | None = None, mode: SearchMode | None = None
    ) -> list[Chunk]:
        """The ``k`` best chunks for ``query``, best first, each with its score."""
        if not isinstance(k, int) or k < 1:
            raise InvalidInputError(f"k must be a positive int, got {k!r}")
        ranked, _ = self._ranked(query, k, filter, self._resolve_mode(mode))
        return [self._chunks[i].model_copy(update={"score": float(s)}) for i, s in ranked if i in self._chunks]

    def chunk_cost(self, chunk: Chunk) -> int:
        """Tokens ``chunk`` takes in an assembled prompt: its text plus the ``<document>`` wrapper."""
        key = (chunk.id, chunk.title)
        wrap = self._wrapper_cache.get(key)
        if wrap is None:
            title = f' title="{chunk.title}"' if chunk.title else ""
            wrap = self.tokenizer.count(f'<document id="{chunk.id}"{title}>\n\n</document>\n') + 1
            self._wrapper_cache[key] = wrap
        tokens = chunk.metadata.get("tokens")
        text_tokens = tokens if isinstance(tokens, int) else self.tokenizer.count(chunk.text)
        return int(text_tokens) + wrap

    def retrieve(
        self,
        query: str,
        budget_tokens: int,
        *,
        filter: Filter | None = None,
        mode: SearchMode | None = None,
        candidates: int | None = None,
        diversity: bool = True,
    ) -> list[Chunk]:
        """Scored chunks for ``query`` whose total cost fits ``budget_tokens`` (see the module docstring)."""
        if not isinstance(budget_tokens, int) or budget_tokens < 0:
            raise InvalidInputError(f"budget_tokens must be an int >= 0, got {budget_tokens!r}")
        mode = self._resolve_mode(mode)
        n_cand = candidates or max(self.candidates, budget_tokens // 32)
        ranked, qv = self._ranked(query, n_cand, filter, mode)
        ranked = [(i, s) for i, s in ranked if i in self._chunks]
        if not ranked or budget_tokens == 0:
            return []
        ids = [i for i, _ in ranked]
        scores = np.asarray([s for _, s in ranked], dtype=np.float32)
        order = list(range(len(ids)))
        if self.dedupe_threshold is not None or (diversity and len(ids) > 1):
            vecs = self.index.get_vectors(ids)
            if self.dedupe_threshold is not None:
                order = near_duplicates(vecs, threshold=self.dedupe_threshold)
            if diversity and len(order) > 1:
                sub = np.asarray(order)
                picked = mmr(
                    qv if qv is not None else vecs[0],
                    vecs[sub],
                    len(sub),
                    lambda_=self.mmr_lambda,
                    relevance=scores[sub] if mode != "vector" else None,
                )
                order = sub[picked].tolist()
        out: list[Chunk] = []
        room = budget_tokens
        for j in order:
            c = self._chunks[ids[j]]
            cost = self.chunk_cost(c)
            if cost <= room:
                out.append(c.model_copy(update={"score": float(max(scores[j], 0.0))}))
                room -= cost
                if room < 16:
                    break
        return out

    async def aretrieve(self, query: str, budget_tokens: int, **kw: Any) -> list[Chunk]:
        """:meth:`retrieve` in a worker thread, for async callers."""
        return await asyncio.to_thread(self.retrieve, query, budget_tokens, **kw)

    async def aadd_documents(self, documents: Iterable[DocumentLike], *, progress: bool = False) -> list[Chunk]:
        """:meth:`add_documents` in a worker thread, for async callers."""
        docs = list(documents)
        return await asyncio.to_thread(self.add_documents, docs, progress=progress)

    # ------------------------------------------------------------------ one call: prompt
    def prompt(
        self,
        query: str,
        *,
        model: str = "gpt-4o",
        budget: Budget | None = None,
        assembler: Assembler | None = None,
        system: str | None = None,
        history: Sequence[Message] = (),
        memory: str | None = None,
        filter: Filter | None = None,
        mode: SearchMode | None = None,
    ) -> AssembledPrompt:
        """Retrieve for what the budget leaves after the other sections, then assemble the prompt."""
        asm = assembler or Assembler(model, budget)
        bud = budget or asm.budget
        limit = bud.input_limit
        counter = asm.counter
        others = [Message.user(query), *history]
        if system:
            others.append(Message.system(system))
        if memory:
            others.append(Message.system(f"{asm.memory_header}\n{memory}"))
        used = counter.base_tokens + sum(counter.message_tokens(m) for m in others)
        header = asm.counter.tokenizer.count(asm.context_header + "\n\n") + 1
        room = min(bud.sections["retrieved"].cap(limit), limit - used) - header
        chunks = self.retrieve(query, max(room, 0), filter=filter, mode=mode) if room > 0 else []
        return asm.assemble(query=query, system=system, history=history, memory=memory, chunks=chunks, budget=bud)
