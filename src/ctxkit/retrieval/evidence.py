"""Evidence packing: fill a token budget with the sentences that answer the query, not whole chunks.

:class:`EvidencePacker` takes more candidate chunks than fit the budget and:

1. **splits** them into sentences (:func:`ctxkit.compress.sentences.split_sentences`);
   chunks of one document that overlap are merged into one passage, each sentence once,
   in document order;
2. **scores** every sentence against the query, fusing on whole arrays:

   * dense: cosine between the query and the sentence embedded with its passage title
     (``"title: sentence"``, so "He was born in 1950." still knows who "he" is);
   * lexical: BM25 of the titled sentence among the candidate sentences, scaled by the best;
   * passage: the cosine and scaled BM25 of the whole passage, so the context of a relevant
     passage is lifted with it;
   * neighbour: a share of the better adjacent sentence's score;
   * lead: a bonus for a document's first sentence (it usually says what the passage is about);
   * bridge (a second hop): the best sentences of that first pass are searched for the titles
     of the other passages (case-insensitive, whole words); a passage they name is lifted.
     The second paragraph of a multi-hop question often shares few words with the question
     but is named in the first;
   * title: a passage whose title the query names is lifted (a trailing ``(band)`` is ignored,
     whole words only), so a comparison ("Shihad or Morningwood?") reaches both named passages
     and not a namesake ("Shihad discography");

3. **packs by value per token**, after **coverage**: the best sentence of each of the ``cover``
   best passages goes in first; then a sentence's value is ``exp((score - best) / temperature)``;
   the greedy step takes the sentence with the highest ``value / cost ** density`` that still
   fits, where the cost of a passage's first kept sentence includes its ``<document>``
   wrapper with the title (the title stays with what is kept from its passage and is paid for).
   With ``anaphora`` a sentence that opens with a pronoun or "The <noun>" is one unit with its
   document's lead sentence (value and cost counted jointly, both packed or neither);
4. **recounts** each packed passage exactly as the assembler renders it, with the
   retriever's own cost formula too, and drops the least valuable sentence until the total
   fits: never over budget;
5. **records** every candidate sentence that was not kept (:attr:`EvidencePack.dropped`).

Kept sentences of a passage stay in document order; sentences that were adjacent in the
source are joined with the source's own whitespace, gaps are marked with ``" … "``. Each
passage becomes one :class:`~ctxkit.messages.Chunk` (the id of its best-ranked candidate,
its title, the span from the first to the last kept sentence, ``metadata["tokens"]`` and
``metadata["evidence"]``), ready for :class:`~ctxkit.assembly.Assembler`.

The default weights were chosen on HotpotQA dev (see ``benchmarks/evidence.py``) and are
not tuned per data set.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from ctxkit.assembly.context import render_document
from ctxkit.assembly.context import wrapper_cost as _wrapper_cost
from ctxkit.compress.relevance import RelevanceWeights, ScoredPassage, SentenceScorer
from ctxkit.compress.sentences import split_sentences
from ctxkit.errors import InvalidInputError
from ctxkit.messages import Chunk
from ctxkit.retrieval.embeddings import Embedder
from ctxkit.tokenizers import Tokenizer, get_tokenizer

__all__ = ["EvidenceDrop", "EvidencePack", "EvidencePacker", "EvidenceWeights", "wrapper_cost"]

FloatArray = npt.NDArray[np.float64]
_GAP = " … "
_ANAPHORIC = re.compile(r"\s*(?:(?:He|She|It|They|His|Her|Its|Their|This|These|Those)\b|The [a-z]+\b)")
_SEP_TOKENS = 1  # whitespace or the gap mark between kept sentences, per sentence; the recount is exact


class EvidenceWeights(RelevanceWeights):
    """How sentence scores are fused (the shared :class:`~ctxkit.compress.RelevanceWeights`) and how sentences
    are packed (defaults chosen on HotpotQA dev)."""

    salience: float = Field(0.0, ge=0.0, description="without a question: weight of entities/numbers/decisions")
    title: float = Field(0.4, ge=0.0, description="bonus for a passage whose title the query names (comparisons)")
    temperature: float = Field(0.2, gt=0.0, description="value = exp((score - best) / temperature)")
    density: float = Field(1.0, ge=0.0, le=2.0, description="greedy key is value / cost ** density")
    cover: int = Field(2, ge=0, description="the best sentence of this many best passages is packed first")
    anaphora: bool = Field(
        False, description="a sentence opening with a pronoun ('He', 'It', 'The band') is packed with its lead sentence"
    )


class EvidenceDrop(BaseModel):
    """A candidate sentence that was not packed, and why."""

    model_config = ConfigDict(frozen=True)

    chunk_id: str
    title: str
    start: int | None
    end: int | None
    tokens: int
    score: float
    reason: str


class EvidencePack(BaseModel):
    """What :meth:`EvidencePacker.pack` returns: the chunks, their exact cost and the audit of drops."""

    model_config = ConfigDict(frozen=True)

    chunks: list[Chunk]
    tokens: int
    budget_tokens: int
    candidates: int
    sentences: int
    dropped: list[EvidenceDrop]

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(c.title)}</td><td>{c.metadata.get('tokens', '')}</td>"
            f"<td>{html.escape(c.text[:200])}</td></tr>"
            for c in self.chunks
        )
        return (
            f"<b>EvidencePack</b>: {self.tokens}/{self.budget_tokens} tokens, {len(self.chunks)} passages, "
            f"{self.sentences - len(self.dropped)}/{self.sentences} sentences kept from {self.candidates} candidates"
            f"<table><tr><th>title</th><th>tokens</th><th>text</th></tr>{rows}</table>"
        )


def _block(chunk_id: str, title: str, text: str) -> str:
    """A chunk as :class:`~ctxkit.assembly.Assembler` renders it."""
    return render_document(chunk_id, title, text)


def wrapper_cost(tokenizer: Tokenizer, chunk_id: str, title: str) -> int:
    """Tokens of the ``<document>`` wrapper as the assembler renders it (text excluded), plus one token of margin:
    the text's first and last characters may merge with the wrapper's line breaks."""
    return _wrapper_cost(tokenizer, Chunk(text="", id=chunk_id, title=title)) + 1


def exact_cost(tokenizer: Tokenizer, chunk_id: str, title: str, text: str) -> int:
    """The most a chunk can cost: its rendered block, or the retriever's text + wrapper count."""
    return max(
        tokenizer.count(_block(chunk_id, title, text)),
        tokenizer.count(text) + wrapper_cost(tokenizer, chunk_id, title),
    )


@dataclass
class _Passage:
    key: str
    chunk_id: str  # the best-ranked candidate's id
    title: str
    doc_id: str
    position: int
    rank: int
    metadata: dict[str, Any]
    text: str = ""  # the passage's text from its first sentence (for passage-level scores)
    sents: list[tuple[int | None, int | None, str]] = field(default_factory=list)  # (abs start, abs end, text)
    gaps: list[str] = field(default_factory=list)  # the source's whitespace before each sentence
    first_is_lead: bool = False


def _passages(candidates: Sequence[Chunk]) -> list[_Passage]:
    """Passages: chunks of one document that overlap or touch merged, each sentence once, in document order."""
    by_doc: dict[str, list[tuple[int, Chunk]]] = {}
    for rank, c in enumerate(candidates):
        key = f"doc:{c.doc_id}" if c.doc_id and c.start is not None else f"chunk:{rank}"
        by_doc.setdefault(key, []).append((rank, c))
    groups: list[list[tuple[int, Chunk]]] = []
    for members in by_doc.values():
        run_end = -1
        for n, (rank, c) in enumerate(sorted(members, key=lambda rc: (rc[1].start or 0, rc[0]))):
            start = c.start or 0
            end = c.end if c.end is not None else start + len(c.text)
            if n == 0 or start > run_end:  # a gap in the document: a new passage
                groups.append([])
                run_end = end
            groups[-1].append((rank, c))
            run_end = max(run_end, end)
    out: list[_Passage] = []
    for members in groups:
        best_rank, best = min(members, key=lambda rc: rc[0])
        key = f"{best.doc_id}@{members[0][1].start}" if best.doc_id else f"chunk:{best_rank}"
        p = _Passage(key, best.id or f"chunk-{best_rank}", best.title, best.doc_id, best.position, best_rank, {})
        p.metadata = dict(best.metadata)
        covered = -1  # absolute end of what is already taken (documents with spans)
        for _, c in members:
            base = c.start
            prev_end = 0
            for a, b in _sentence_spans(c.text):
                gap = c.text[prev_end:a] if prev_end and not c.text[prev_end:a].strip() else " "
                prev_end = b
                if base is None:
                    p.sents.append((None, None, c.text[a:b]))
                    p.gaps.append(gap)
                    continue
                s, e = base + a, base + b
                if e <= covered:
                    continue
                if s < covered:  # an overlap cut this sentence: keep only its new part
                    a += covered - s
                    s = covered
                    piece = c.text[a:b]
                    lead_ws = len(piece) - len(piece.lstrip())
                    a, s = a + lead_ws, s + lead_ws
                    if not c.text[a:b].strip():
                        continue
                p.sents.append((s, e, c.text[a:b]))
                p.gaps.append(gap)
                covered = e
        if p.sents:
            first = members[0][1]
            p.first_is_lead = first.start == 0 or (first.start is None and first.position == 0)
            p.text = " ".join(t for _, _, t in p.sents)
            out.append(p)
    out.sort(key=lambda p: p.rank)
    return out


@lru_cache(maxsize=65_536)
def _sentence_spans(text: str) -> tuple[tuple[int, int], ...]:
    return tuple(split_sentences(text))


class EvidencePacker:
    """Pack the sentences of candidate chunks that best answer a query into a token budget.

    ``embedder`` embeds sentences (cached by content, so repeated text is embedded once);
    ``tokenizer`` counts every token (a spec or a :class:`~ctxkit.tokenizers.Tokenizer`).
    """

    def __init__(
        self,
        embedder: Embedder,
        tokenizer: str | Tokenizer = "tiktoken:cl100k_base",
        *,
        weights: EvidenceWeights | None = None,
    ) -> None:
        self.embedder = embedder
        self.tokenizer = get_tokenizer(tokenizer)
        self.weights = weights or EvidenceWeights()
        self._scorer = SentenceScorer(embedder)

    def __repr__(self) -> str:
        return (
            f"EvidencePacker(embedder={self.embedder.name!r}, tokenizer={self.tokenizer.name!r}, "
            f"weights={self.weights!r})"
        )

    def scores(
        self,
        query: str,
        passages: list[_Passage],
        *,
        query_vector: npt.ArrayLike | None = None,
    ) -> tuple[FloatArray, npt.NDArray[np.int64]]:
        """The fused score of every sentence and the index of its passage (:class:`~ctxkit.compress.SentenceScorer`)."""
        rel = RelevanceWeights(**self.weights.model_dump(include=set(RelevanceWeights.model_fields)))
        scored = [ScoredPassage(p.title, [t for _, _, t in p.sents], p.first_is_lead) for p in passages]
        return self._scorer.score(query, scored, query_vector=query_vector, weights=rel)

    def pack(
        self,
        query: str,
        candidates: Sequence[Chunk],
        budget_tokens: int,
        *,
        query_vector: npt.ArrayLike | None = None,
    ) -> EvidencePack:
        """The best sentences of ``candidates`` (best first) for ``query`` within ``budget_tokens``.

        ``budget_tokens`` is the retrieved section's token budget (the blocks packed), not a whole prompt's.
        """
        if not isinstance(query, str):
            raise InvalidInputError(f"query must be a str, got {type(query).__name__}")
        if not isinstance(budget_tokens, int) or isinstance(budget_tokens, bool) or budget_tokens < 0:
            raise InvalidInputError(f"budget_tokens must be an int >= 0, got {budget_tokens!r}")
        for n, c in enumerate(candidates):
            if not isinstance(c, Chunk):
                raise InvalidInputError(f"candidates[{n}] is a {type(c).__name__}, not a ctxkit Chunk")
        passages = _passages(candidates)
        n_sent = sum(len(p.sents) for p in passages)
        if not passages:
            return EvidencePack(
                chunks=[], tokens=0, budget_tokens=budget_tokens, candidates=len(candidates), sentences=0, dropped=[]
            )
        w = self.weights
        score, owner = self.scores(query, passages, query_vector=query_vector)
        tok = self.tokenizer
        texts = [t for p in passages for _, _, t in p.sents]
        cost = np.asarray(tok.count_many(texts), dtype=np.int64) + _SEP_TOKENS
        wrap = np.asarray(
            [wrapper_cost(tok, p.chunk_id, p.title) + 1 for p in passages], dtype=np.int64
        )  # +1: the block's closing line break may merge differently with the text
        value = np.exp((score - float(score.max())) / w.temperature)

        picked = np.zeros(len(texts), dtype=bool)
        opened = np.zeros(len(passages), dtype=bool)
        lead_of = self._leads(passages, texts) if w.anaphora else np.full(len(texts), -1, dtype=np.int64)
        has_lead = lead_of >= 0
        lead_ix = np.where(has_lead, lead_of, 0)
        room = budget_tokens

        def unit(j: int) -> list[int]:
            """A sentence with the lead sentence it needs (when not packed yet)."""
            return [j] if lead_of[j] < 0 or picked[lead_of[j]] else [int(lead_of[j]), j]

        def take(j: int) -> None:
            nonlocal room
            for k in unit(j):
                picked[k] = True
                room -= int(cost[k])
            if not opened[owner[j]]:
                room -= int(wrap[owner[j]])
                opened[owner[j]] = True

        if w.cover > 0:  # coverage before depth: the best sentence of each of the best passages first
            best_of = np.full(len(passages), -1, dtype=np.int64)
            for j in np.argsort(-score, kind="stable").tolist():
                if best_of[owner[j]] < 0:
                    best_of[owner[j]] = j
            for i in np.argsort(-score[best_of], kind="stable")[: w.cover].tolist():
                j = int(best_of[i])
                if sum(int(cost[k]) for k in unit(j)) + wrap[owner[j]] <= room:
                    take(j)
        while True:
            need = has_lead & ~picked[lead_ix]
            eff = cost + np.where(need, cost[lead_ix], 0) + np.where(opened[owner], 0, wrap[owner])
            ok = ~picked & (eff <= room)
            if not ok.any():
                break
            worth = value + np.where(need, value[lead_ix], 0.0)
            key = np.where(ok, worth / np.power(eff.astype(np.float64), w.density), -np.inf)
            take(int(np.argmax(key)))

        # exact recount; drop the least valuable kept sentence until the total fits
        while True:
            chunks = self._render(passages, picked, score)
            total = sum(exact_cost(tok, c.id, c.title, c.text) for c in chunks)
            if total <= budget_tokens:
                break
            kept = np.flatnonzero(picked)
            drop = int(kept[int(np.argmin(value[kept] / cost[kept]))])
            picked[drop] = False
            picked[lead_of == drop] = False  # a pronoun-led sentence does not stay without its lead

        starts = [(p, s, e) for p in passages for s, e, _ in p.sents]
        dropped = [
            EvidenceDrop(
                chunk_id=starts[j][0].chunk_id,
                title=starts[j][0].title,
                start=starts[j][1],
                end=starts[j][2],
                tokens=int(cost[j] - _SEP_TOKENS),
                score=float(score[j]),
                reason="did not fit the budget"
                if int(cost[j]) <= budget_tokens
                else f"longer ({int(cost[j]) - _SEP_TOKENS} tokens) than the whole budget",
            )
            for j in np.flatnonzero(~picked).tolist()
        ]
        return EvidencePack(
            chunks=chunks,
            tokens=total,
            budget_tokens=budget_tokens,
            candidates=len(candidates),
            sentences=n_sent,
            dropped=dropped,
        )

    @staticmethod
    def _leads(passages: list[_Passage], texts: list[str]) -> npt.NDArray[np.int64]:
        """For each sentence that opens with a pronoun or "The <noun>", the index of its document's lead, else -1."""
        out = np.full(len(texts), -1, dtype=np.int64)
        base = 0
        for p in passages:
            if p.first_is_lead:
                for k in range(1, len(p.sents)):
                    if _ANAPHORIC.match(texts[base + k]):
                        out[base + k] = base
            base += len(p.sents)
        return out

    def _render(self, passages: list[_Passage], picked: npt.NDArray[np.bool_], score: FloatArray) -> list[Chunk]:
        out: list[Chunk] = []
        base = 0
        for p in passages:
            n = len(p.sents)
            keep = np.flatnonzero(picked[base : base + n]).tolist()
            if keep:
                parts: list[str] = []
                prev = -2
                for k in keep:
                    t = p.sents[k][2]
                    if parts:
                        parts.append(p.gaps[k] if k == prev + 1 else _GAP)
                    parts.append(t)
                    prev = k
                text = "".join(parts)
                starts = [p.sents[k][0] for k in keep]
                ends = [p.sents[k][1] for k in keep]
                out.append(
                    Chunk(
                        text=text,
                        score=float(max(0.0, math.fsum(float(x) for x in score[base : base + n][keep]))),
                        id=p.chunk_id,
                        doc_id=p.doc_id,
                        title=p.title,
                        position=p.position,
                        start=starts[0],
                        end=ends[-1],
                        metadata={
                            **{k: v for k, v in p.metadata.items() if k not in ("tokens", "evidence")},
                            "tokens": self.tokenizer.count(text),
                            "evidence": {"sentences": keep, "of": n, "rank": p.rank},
                        },
                    )
                )
            base += n
        return out
