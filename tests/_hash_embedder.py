"""A cheap, deterministic real embedder for tests that exercise the retriever's bookkeeping, not its model.

Feature hashing of lower-cased words (signed, like scikit-learn's HashingVectorizer):
texts that share words get similar vectors, so search results are meaningful, and
embedding costs microseconds, so thread and property tests run thousands of operations.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np

from ctxkit.retrieval.embeddings import BaseEmbedder, EmbeddingCache

_WORD = re.compile(r"\w+")


class HashEmbedder(BaseEmbedder):
    def __init__(self, dim: int = 64, *, cache: EmbeddingCache | None = None) -> None:
        super().__init__(f"hash-{dim}", dim, cache=cache)

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()) or ["<empty>"]:
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
                out[row, h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
            if not out[row].any():
                out[row, 0] = 1.0
        return out
