"""The budget retriever: documents in, scored chunks (or a budgeted prompt) out.

One request through :meth:`Retriever.retrieve`:

1. **candidates** — the query is embedded and searched in the vector index; with
   ``hybrid=True`` BM25 is searched too and both rankings are fused by reciprocal rank
   fusion (RRF);
2. **near-duplicates** — candidates whose embeddings have cosine >= ``dedupe_threshold``
   with a better candidate are dropped;
3. **diversity** — the rest is ordered by maximal marginal relevance (MMR);
4. **budget** — with ``packing="evidence"`` (the default), candidates worth
   ``evidence_pool`` times the budget go to :class:`~ctxkit.retrieval.EvidencePacker`, which
   scores their sentences against the query and packs the best by value per token, each
   passage's title kept with its sentences (see :mod:`ctxkit.retrieval.evidence`). With
   ``packing="chunks"`` whole chunks are taken in that order while their cost (the
   ``<document>`` block the assembler renders for them, counted whole by the retriever's
   tokenizer; a ``metadata["tokens"]`` supplied by the caller is never trusted) fits
   ``budget_tokens``; a chunk too big for what is left is skipped and smaller later ones may still fit.

The returned :class:`~ctxkit.messages.Chunk` objects carry the relevance score (cosine,
or the RRF score when hybrid), the source span and ``metadata["tokens"]`` (the
retriever tokenizer's count of the text), and go straight into
:class:`~ctxkit.assembly.Assembler` (:meth:`Retriever.assemble` does both).

**Threads.** One lock guards the chunk store, the document map, the vector index and
BM25 together: writes (:meth:`Retriever.add_documents`, :meth:`Retriever.add_chunks`,
:meth:`Retriever.delete_documents`) change them in one step, and a search reads the
index and the chunks it names in one step, so a concurrent reader sees the retriever
before or after a write, never in between. Embedding happens outside the lock.

**Persistence.** :meth:`Retriever.save` writes the whole retriever to one file, atomically, and
:meth:`Retriever.load` rebuilds it in another process, with nothing re-embedded; the file
format and its typed manifest live in :mod:`ctxkit.retrieval.store`. The BM25 side is not
stored: it always holds the stored chunks' texts (in store order) and is rebuilt from them
on the first hybrid search after a load.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ctxkit import __version__
from ctxkit._inputs import reject_bare_string
from ctxkit.assembly import AssembledPrompt, Assembler
from ctxkit.assembly.context import block_cost
from ctxkit.budget import Budget, as_budget
from ctxkit.errors import InvalidInputError, StoreFormatError
from ctxkit.messages import Chunk, Message
from ctxkit.retrieval.chunking import Chunker, Document
from ctxkit.retrieval.embeddings import Embedder, SentenceTransformerEmbedder
from ctxkit.retrieval.evidence import EvidencePacker, EvidenceWeights
from ctxkit.retrieval.index import BaseVectorIndex, FaissIndex, Filter, VectorIndex
from ctxkit.retrieval.lexical import BM25Index
from ctxkit.retrieval.rank import mmr, near_duplicates, rrf_fuse
from ctxkit.retrieval.store import (
    STORE_VERSION,
    BM25Settings,
    ChunkerSettings,
    EmbedderInfo,
    IndexInfo,
    RankingSettings,
    StoreManifest,
    open_store,
    write_store,
)
from ctxkit.tokenizers import Tokenizer, get_tokenizer, specs_of
from ctxkit.tokenizers.chat import base_tokens_for

__all__ = ["Packing", "Retriever", "SearchMode"]

SearchMode = Literal["hybrid", "vector", "lexical"]
Packing = Literal["evidence", "chunks"]
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


def _tokenizer_spec(tok: Tokenizer, given: str | None, what: str) -> str:
    """A spec that :func:`~ctxkit.tokenizers.get_tokenizer` resolves to ``tok`` in a new process.

    The spec the retriever was built with when it still names ``tok``; else any spec the
    tokenizer registry created ``tok`` from, preferring ``kind:argument`` specs over model
    names. A tokenizer built by hand has no spec and cannot be saved.
    """
    if given is not None and get_tokenizer(given) is tok:
        return given
    specs = specs_of(tok)
    if not specs:
        raise InvalidInputError(
            f"cannot save the Retriever: the {what} tokenizer {tok.name!r} was not built from a spec, so a "
            "new process could not rebuild it. Build it with a spec or model name (e.g. "
            "tokenizer='tiktoken:cl100k_base', or register_tokenizer() a factory for it)"
        )
    return specs[0]


class Retriever:
    """Chunk, embed, index and retrieve for a token budget.

    Defaults: :class:`~ctxkit.retrieval.SentenceTransformerEmbedder` (all-MiniLM-L6-v2,
    offline), :class:`~ctxkit.retrieval.FaissIndex` (exact, HNSW when large), a 256-token
    :class:`~ctxkit.retrieval.Chunker`, and ``tokenizer`` (a spec or model name) for every
    token count.

    ``hybrid=True`` (the default) also keeps a BM25 index and makes ``mode="hybrid"`` (dense
    + BM25 fused by RRF, BM25 weighted by ``lexical_weight``) the default mode; on HotpotQA
    dev it put the evidence in the packed context at least as often as dense retrieval
    alone at every budget (``benchmarks/evidence.py``). ``hybrid=False`` keeps dense MiniLM
    only. ``mmr_lambda`` trades relevance (1.0) for diversity (lower).

    ``packing="evidence"`` (the default) packs the best sentences of ``evidence_pool``
    times the budget's worth of candidates, with their passage titles
    (:class:`~ctxkit.retrieval.EvidencePacker`, weights ``evidence``); ``packing="chunks"``
    packs whole chunks. Either can be chosen per call.
    """

    def __init__(
        self,
        embedder: Embedder | None = None,
        index: VectorIndex | None = None,
        *,
        chunker: Chunker | None = None,
        tokenizer: str | Tokenizer = "tiktoken:cl100k_base",
        hybrid: bool = True,
        rrf_k: int = 60,
        lexical_weight: float = 1.0,
        mmr_lambda: float = 0.9,
        dedupe_threshold: float | None = 0.95,
        candidates: int = 50,
        packing: Packing = "evidence",
        evidence: EvidenceWeights | None = None,
        evidence_pool: float = 4.0,
    ) -> None:
        if embedder is None:
            embedder = SentenceTransformerEmbedder()
        if index is None:
            index = FaissIndex(embedder.dim)
        if index.dim != embedder.dim:
            raise InvalidInputError(f"the index has {index.dim} dimensions but the embedder makes {embedder.dim}")
        if candidates < 1:
            raise InvalidInputError(f"candidates must be at least 1, got {candidates}")
        if packing not in ("evidence", "chunks"):
            raise InvalidInputError(f"packing must be 'evidence' or 'chunks', not {packing!r}")
        if not evidence_pool >= 1.0:
            raise InvalidInputError(
                f"evidence_pool must be >= 1 (candidates' tokens per budget token), got {evidence_pool}"
            )
        self.embedder = embedder
        self.index = index
        self.tokenizer = get_tokenizer(tokenizer)
        self._tokenizer_spec = tokenizer if isinstance(tokenizer, str) else None
        self.chunker = chunker or Chunker(256, 32, tokenizer=self.tokenizer)
        self.lexical: BM25Index | None = BM25Index() if hybrid else None
        self.rrf_k = rrf_k
        self.lexical_weight = lexical_weight
        self.mmr_lambda = mmr_lambda
        self.dedupe_threshold = dedupe_threshold
        self.candidates = candidates
        self.packing: Packing = packing
        self.evidence_pool = float(evidence_pool)
        self.evidence = EvidencePacker(embedder, self.tokenizer, weights=evidence)
        self._chunks: dict[str, Chunk] = {}
        self._by_doc: dict[str, list[str]] = {}
        # Guards _chunks, _by_doc, the vector index and BM25 together: a write (add, replace,
        # delete) changes all of them under it, and a search reads the index and the chunks
        # it names under it, so a reader never sees an id whose chunk is gone.
        self._lock = threading.RLock()

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
        tqdm bar with chunks per second. A replaced document's old chunks go and its new ones
        come in one step: a concurrent :meth:`retrieve` sees the old version or the new one.
        """
        reject_bare_string(documents, "add_documents(documents)", "add_documents([text])")
        docs = [_as_document(d, n) for n, d in enumerate(documents)]
        ids = [d.id for d in docs]
        if len(set(ids)) != len(ids):
            raise InvalidInputError("document ids must be unique within one call")
        chunks = self.chunker.split_documents(docs)
        ready, vecs = self._prepare(chunks, progress=progress)
        self._commit(ready, vecs, replaced_docs=ids)
        return ready

    def add_chunks(self, chunks: Sequence[Chunk], *, progress: bool = True, batch: int = 1024) -> None:
        """Embed and index ready-made chunks (each needs a unique ``id``); same ids are replaced.

        ``metadata["tokens"]`` of every stored chunk is set to the retriever tokenizer's count of
        its text: a count given by the caller is replaced, never trusted.
        """
        reject_bare_string(chunks, "add_chunks(chunks)", "add_chunks([chunk])")
        ready, vecs = self._prepare(chunks, progress=progress, batch=batch)
        self._commit(ready, vecs)

    def _prepare(
        self, chunks: Sequence[Chunk], *, progress: bool, batch: int = 1024
    ) -> tuple[list[Chunk], npt.NDArray[np.float32]]:
        """Checked chunks with ctxkit's token counts, and their vectors (the slow part, outside the lock)."""
        chunks = list(chunks)
        for n, c in enumerate(chunks):
            if not isinstance(c, Chunk):
                raise InvalidInputError(f"chunks[{n}] is a {type(c).__name__}, not a ctxkit Chunk")
            if not c.id:
                raise InvalidInputError(f"chunks[{n}] has no id; give every chunk a unique id")
        if len({c.id for c in chunks}) != len(chunks):
            raise InvalidInputError("chunk ids must be unique within one call")
        counts = self.tokenizer.count_many([c.text for c in chunks])
        ready = [
            c if c.metadata.get("tokens") == n else c.model_copy(update={"metadata": {**c.metadata, "tokens": n}})
            for c, n in zip(chunks, counts, strict=True)
        ]
        bar = None
        if progress and ready:
            from tqdm.auto import tqdm  # type: ignore[import-untyped]

            bar = tqdm(total=len(ready), unit="chunk", desc="ingest", leave=False)
        try:
            parts = [
                self.embedder.embed([c.text for c in ready[s : s + batch]], progress=bar)
                for s in range(0, len(ready), batch)
            ]
        finally:
            if bar is not None:
                bar.close()
        vecs = np.concatenate(parts) if parts else np.empty((0, self.embedder.dim), dtype=np.float32)
        return ready, vecs

    def _commit(self, ready: list[Chunk], vecs: npt.NDArray[np.float32], *, replaced_docs: Sequence[str] = ()) -> None:
        """Under the lock: drop the replaced documents' chunks that are not in ``ready``, then store ``ready``."""
        with self._lock:
            new_ids = {c.id for c in ready}
            stale = [cid for d in replaced_docs for cid in self._by_doc.get(d, ()) if cid not in new_ids]
            self._delete_chunk_ids(stale)
            if not ready:
                return
            metas = [{**c.metadata, "doc_id": c.doc_id} for c in ready]
            self.index.upsert([c.id for c in ready], vecs, metas)
            if self.lexical is not None:
                self.lexical.upsert([c.id for c in ready], [c.text for c in ready], metas)
            for c in ready:
                old = self._chunks.get(c.id)
                if old is not None and old.doc_id != c.doc_id:  # the id moved to another document
                    prev = self._by_doc.get(old.doc_id)
                    if prev is not None and c.id in prev:
                        prev.remove(c.id)
                        if not prev:
                            del self._by_doc[old.doc_id]
                if old is None or old.doc_id != c.doc_id:
                    self._by_doc.setdefault(c.doc_id, []).append(c.id)
                self._chunks[c.id] = c

    def delete_documents(self, doc_ids: Iterable[str]) -> int:
        """Remove every chunk of the given documents; returns how many chunks went."""
        reject_bare_string(doc_ids, "delete_documents(doc_ids)", "delete_documents([doc_id])")
        wanted = list(doc_ids)
        for n, d in enumerate(wanted):
            if not isinstance(d, str):
                raise InvalidInputError(f"doc_ids[{n}] is a {type(d).__name__}; document ids are str")
        with self._lock:
            ids = [cid for d in wanted for cid in self._by_doc.get(d, ())]
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
            with self._lock:
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

    def _ranked_locked(
        self, query: str, qv: npt.NDArray[np.float32] | None, k: int, flt: Filter | None, mode: SearchMode
    ) -> list[tuple[str, float]]:
        """Ranked ids of the indexes; the caller holds the lock."""
        dense = self.index.search(qv, k, filter=flt) if qv is not None else []
        lexical = self.lexical
        if mode == "vector" or lexical is None:
            return [(h.id, h.score) for h in dense]
        lex = lexical.search(query, k, filter=flt)
        if mode == "lexical":
            return [(h.id, h.score) for h in lex]
        fused = rrf_fuse([[h.id for h in dense], [h.id for h in lex]], k=self.rrf_k, weights=[1.0, self.lexical_weight])
        return fused[:k]

    def _snapshot(
        self, query: str, k: int, flt: Filter | None, mode: SearchMode, *, vectors: bool
    ) -> tuple[list[Chunk], list[float], npt.NDArray[np.float32] | None, npt.NDArray[np.float32] | None]:
        """One consistent read: the ranked stored chunks, their scores, the query vector and (if asked) theirs.

        The query is embedded outside the lock; the index search and the reads of the chunks
        and vectors it names happen under it, so none of them can be deleted in between.
        """
        if not isinstance(query, str):
            raise InvalidInputError(f"query must be a str, got {type(query).__name__}")
        qv = self.embedder.embed_query(query) if mode != "lexical" else None
        with self._lock:
            ranked = [(i, sc) for i, sc in self._ranked_locked(query, qv, k, flt, mode) if i in self._chunks]
            chunks = [self._chunks[i] for i, _ in ranked]
            vecs = self.index.get_vectors([i for i, _ in ranked]) if vectors and ranked else None
        return chunks, [sc for _, sc in ranked], qv, vecs

    def _ranked(self, query: str, k: int, flt: Filter | None, mode: SearchMode) -> tuple[list[tuple[str, float]], Any]:
        chunks, scores, qv, _ = self._snapshot(query, k, flt, mode, vectors=False)
        return [(c.id, sc) for c, sc in zip(chunks, scores, strict=True)], qv

    def search(
        self, query: str, k: int = 10, *, filter: Filter | None = None, mode: SearchMode | None = None
    ) -> list[Chunk]:
        """The ``k`` best chunks for ``query``, best first, each with its score."""
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise InvalidInputError(f"k must be a positive int, got {k!r}")
        chunks, scores, _, _ = self._snapshot(query, k, filter, self._resolve_mode(mode), vectors=False)
        return [c.model_copy(update={"score": float(sc)}) for c, sc in zip(chunks, scores, strict=True)]

    def chunk_cost(self, chunk: Chunk) -> int:
        """Tokens ``chunk`` takes in an assembled prompt: its ``<document>`` block, counted whole.

        The cost is :func:`ctxkit.assembly.context.block_cost`, the function the
        :class:`~ctxkit.assembly.Assembler` charges with, counted by the retriever's tokenizer
        (cached by content). ``metadata["tokens"]`` is not read: a count supplied with a chunk
        never decides whether a budget holds.
        """
        return block_cost(self.tokenizer, chunk)

    def retrieve(
        self,
        query: str,
        budget_tokens: int,
        *,
        filter: Filter | None = None,
        mode: SearchMode | None = None,
        candidates: int | None = None,
        diversity: bool = True,
        packing: Packing | None = None,
        tokenizer: str | Tokenizer | None = None,
    ) -> list[Chunk]:
        """Scored chunks for ``query`` whose total cost fits ``budget_tokens`` (see the module docstring).

        ``budget_tokens`` is the token budget of the retrieved section alone (the chunks' blocks), not
        of a whole prompt; :meth:`assemble` takes the whole prompt's budget and works this out from it.
        Costs are counted by ``tokenizer`` (a spec, a model name or a tokenizer; default the
        retriever's own), so ``budget_tokens`` is in that tokenizer's tokens: :meth:`assemble`
        passes the assembler's, whose model the prompt is for.
        """
        tok = self.tokenizer if tokenizer is None else get_tokenizer(tokenizer)
        if not isinstance(budget_tokens, int) or isinstance(budget_tokens, bool) or budget_tokens < 0:
            raise InvalidInputError(f"budget_tokens must be an int >= 0, got {budget_tokens!r}")
        bad_candidates = not isinstance(candidates, int) or isinstance(candidates, bool) or candidates < 1
        if candidates is not None and bad_candidates:
            raise InvalidInputError(f"candidates must be a positive int or None, got {candidates!r}")
        packing = packing or self.packing
        if packing not in ("evidence", "chunks"):
            raise InvalidInputError(f"packing must be 'evidence' or 'chunks', not {packing!r}")
        mode = self._resolve_mode(mode)
        n_cand = candidates or max(self.candidates, budget_tokens // 32)
        want_vecs = self.dedupe_threshold is not None or diversity
        found, found_scores, qv, vecs = self._snapshot(query, n_cand, filter, mode, vectors=want_vecs)
        if not found or budget_tokens == 0:
            return []
        scores = np.asarray(found_scores, dtype=np.float32)
        order = list(range(len(found)))
        if vecs is not None and (self.dedupe_threshold is not None or (diversity and len(found) > 1)):
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
        if packing == "evidence":
            ranked = [(found[j], float(scores[j])) for j in order]
            return self._pack_evidence(query, ranked, budget_tokens, qv, tok)
        out: list[Chunk] = []
        room = budget_tokens
        for j in order:
            c = found[j]
            cost = block_cost(tok, c)
            if cost <= room:
                out.append(c.model_copy(update={"score": float(max(scores[j], 0.0))}))
                room -= cost
                if room < 16:
                    break
        return out

    def _pack_evidence(
        self, query: str, ranked: list[tuple[Chunk, float]], budget: int, qv: Any, tok: Tokenizer
    ) -> list[Chunk]:
        """Candidates (best first, from the search's snapshot) worth ``evidence_pool`` times the budget, packed
        sentence by sentence; every cost counted by ``tok``."""
        cands: list[Chunk] = []
        pool = 0
        for c, s in ranked:
            if pool >= self.evidence_pool * budget:
                break
            cands.append(c.model_copy(update={"score": max(s, 0.0)}))
            pool += block_cost(tok, c)
        packer = self.evidence
        if tok is not packer.tokenizer:
            packer = EvidencePacker(self.embedder, tok, weights=packer.weights)
        return packer.pack(query, cands, budget, query_vector=qv).chunks

    async def aretrieve(self, query: str, budget_tokens: int, **kw: Any) -> list[Chunk]:
        """:meth:`retrieve` in a worker thread, for async callers (``budget_tokens``: the retrieved section's)."""
        return await asyncio.to_thread(self.retrieve, query, budget_tokens, **kw)

    async def aadd_documents(self, documents: Iterable[DocumentLike], *, progress: bool = False) -> list[Chunk]:
        """:meth:`add_documents` in a worker thread, for async callers."""
        reject_bare_string(documents, "aadd_documents(documents)", "aadd_documents([text])")
        docs = list(documents)
        return await asyncio.to_thread(self.add_documents, docs, progress=progress)

    # ------------------------------------------------------------------ one call: assemble
    def assemble(
        self,
        query: str,
        *,
        model: str = "gpt-4o",
        budget: Budget | int | None = None,
        assembler: Assembler | None = None,
        system: str | None = None,
        history: Sequence[Message] = (),
        memory: str | None = None,
        filter: Filter | None = None,
        mode: SearchMode | None = None,
        packing: Packing | None = None,
    ) -> AssembledPrompt:
        """Retrieve for what the budget leaves after the other sections, then assemble the prompt.

        ``budget`` is the whole prompt's: a :class:`~ctxkit.budget.Budget`, or an ``int``, the input
        limit in tokens (see :func:`~ctxkit.budget.as_budget`); left out, the assembler's. The retrieved
        section gets what the budget's ``retrieved`` cap and the other sections leave.
        """
        asm = assembler or Assembler(model, budget)
        bud = asm.budget if budget is None else as_budget(budget, asm.model, base=asm.budget)
        limit = bud.input_limit
        counter = asm.counter
        others = [Message.user(query), *history]
        if system:
            others.append(Message.system(system))
        if memory:
            others.append(Message.system(f"{asm.memory_header}\n{memory}"))
        used = base_tokens_for(counter, "system" if system else None) + sum(counter.message_tokens(m) for m in others)
        room = min(bud.sections["retrieved"].cap(limit), limit - used) - asm.context_cost()
        chunks = (
            self.retrieve(query, room, filter=filter, mode=mode, packing=packing, tokenizer=counter.tokenizer)
            if room > 0
            else []
        )
        return asm.assemble(query=query, system=system, history=history, memory=memory, chunks=chunks, budget=bud)

    def prompt(self, query: str, **kwargs: Any) -> AssembledPrompt:
        """Deprecated: the same as :meth:`assemble`, which it calls (the glossary's verb is *assemble*)."""
        warnings.warn(
            "Retriever.prompt() is deprecated; call Retriever.assemble() (same arguments, same result)",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.assemble(query, **kwargs)

    # ------------------------------------------------------------------ persistence
    def _manifest(self, index: BaseVectorIndex) -> StoreManifest:
        """Everything but the chunks and the vectors: what :meth:`load` needs to rebuild the rest."""
        tok_spec = _tokenizer_spec(self.tokenizer, self._tokenizer_spec, "retriever's")
        ch = self.chunker
        lex = self.lexical
        return StoreManifest(
            version=STORE_VERSION,
            ctxkit_version=__version__,
            embedder=EmbedderInfo(name=self.embedder.name, dim=self.embedder.dim),
            tokenizer=tok_spec,
            chunker=ChunkerSettings(
                target_tokens=ch.target_tokens,
                overlap_tokens=ch.overlap_tokens,
                max_tokens=ch.max_tokens,
                markdown=ch.markdown,
                tokenizer=_tokenizer_spec(ch.tokenizer, tok_spec, "chunker's"),
            ),
            hybrid=lex is not None,
            bm25=None if lex is None else BM25Settings(k1=lex.k1, b=lex.b, stopwords=lex.stopwords),
            ranking=RankingSettings(
                rrf_k=self.rrf_k,
                lexical_weight=self.lexical_weight,
                mmr_lambda=self.mmr_lambda,
                dedupe_threshold=self.dedupe_threshold,
                candidates=self.candidates,
                packing=self.packing,
                evidence_pool=self.evidence_pool,
                evidence=self.evidence.weights,
            ),
            index=IndexInfo(kind=type(index).__name__, dim=index.dim),
            chunks=len(self._chunks),
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the whole retriever to one file, atomically; :meth:`load` rebuilds it.

        Stored (layout and why one file in :mod:`ctxkit.retrieval.store`): a format version, the
        embedder's ``name`` and ``dim`` (the embedder itself is code and is passed again to
        :meth:`load`), the vector index through its own
        :meth:`~ctxkit.retrieval.BaseVectorIndex.save`, every chunk with all its fields, the
        document -> chunk ids map, the chunker and tokenizer specs, the BM25 parameters and the
        ranking settings. Nothing is re-embedded on load. An interrupted save leaves the previous
        store (or none), never a half-written one that loads. The price of one zip file: the
        serialized index is held in memory while saving and loading.

        Raises :class:`~ctxkit.errors.InvalidInputError` when a part cannot be rebuilt in
        another process: an index with no file format of its own (a
        :class:`~ctxkit.retrieval.QdrantIndex` persists inside Qdrant), a
        :class:`~ctxkit.retrieval.Chunker` subclass, or a tokenizer built by hand rather
        than from a spec. Adds and deletes from other threads may run during a save: it stores
        the retriever as it was at one instant. The only temporary is the sibling file
        ``.<name>.tmp-<pid>-<thread>``; one left by a killed save is removed by the next save or
        load of the same path. Returns the path.
        """
        target = Path(path)
        if target.is_dir():
            raise InvalidInputError(
                f"{target} is a folder; a Retriever saves to one file, e.g. {target / 'retriever.ctx'}"
            )
        index = self.index
        if not isinstance(index, BaseVectorIndex):
            raise InvalidInputError(
                f"cannot save a Retriever over a {type(index).__name__}: only indexes with their own file "
                "format (NumpyIndex, FaissIndex) are stored in the file. A QdrantIndex persists in Qdrant itself"
            )
        if type(self.chunker) is not Chunker:
            raise InvalidInputError(
                f"cannot save a Retriever with a {type(self.chunker).__name__}: only the settings of a plain "
                "Chunker are stored, so load() could not rebuild it"
            )
        with self._lock:  # one consistent snapshot; the file is written after the lock is released
            manifest = self._manifest(index)
            index_bytes = index.to_bytes()
            chunks = list(self._chunks.values())
            by_doc = {d: list(ids) for d, ids in self._by_doc.items()}
        write_store(target, manifest, chunks, by_doc, index_bytes)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, embedder: Embedder | None = None) -> Retriever:
        """Rebuild a retriever written by :meth:`save`; it searches and retrieves exactly as the original.

        ``embedder`` must be the one that built the store (same ``name`` and ``dim``), or
        :class:`~ctxkit.errors.InvalidInputError` is raised: stored vectors only compare
        with queries embedded by the same model. Left out, the default
        :class:`~ctxkit.retrieval.SentenceTransformerEmbedder` is built, and only when the
        store was made with it. The vector index, chunks, chunker, tokenizer and settings
        come from the file; the BM25 side of a hybrid retriever is refilled from the stored
        chunk texts (and built on the first hybrid search). A missing, truncated, corrupt or
        unknown-version file, or one with a malformed manifest, raises
        :class:`~ctxkit.errors.StoreFormatError` (a :class:`~ctxkit.errors.ResourceError`).
        """
        src = Path(path)
        with open_store(src) as store:
            manifest = store.manifest
            emb = store.embedder(embedder)
            chunk_tok = store.chunker_tokenizer()
            chunks, by_doc, index = store.contents()
        cfg, ranking = manifest.chunker, manifest.ranking
        try:
            chunker = Chunker(
                cfg.target_tokens,
                cfg.overlap_tokens,
                max_tokens=cfg.max_tokens,
                tokenizer=chunk_tok,
                markdown=cfg.markdown,
            )
            r = cls(
                emb,
                index,
                chunker=chunker,
                tokenizer=manifest.tokenizer,
                rrf_k=ranking.rrf_k,
                lexical_weight=ranking.lexical_weight,
                mmr_lambda=ranking.mmr_lambda,
                dedupe_threshold=ranking.dedupe_threshold,
                candidates=ranking.candidates,
                hybrid=manifest.bm25 is not None,
                packing=ranking.packing,
                evidence=ranking.evidence,
                evidence_pool=ranking.evidence_pool,
            )
        except ValueError as exc:  # InvalidInputError from the constructors, or a plain ValueError
            raise StoreFormatError(
                f"{src} has invalid settings in its manifest ({exc}); save the Retriever again"
            ) from exc
        r._chunks = {c.id: c for c in chunks}
        r._by_doc = by_doc
        bm25 = manifest.bm25
        if bm25 is not None:
            r.lexical = BM25Index(k1=bm25.k1, b=bm25.b, stopwords=bm25.stopwords)
            r.lexical.upsert(
                [c.id for c in chunks], [c.text for c in chunks], [{**c.metadata, "doc_id": c.doc_id} for c in chunks]
            )
        return r
