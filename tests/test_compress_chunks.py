"""``compress_chunks``: the one chunk loop the token pruner and the sentence filter share."""

from __future__ import annotations

from ctxkit.compress.base import BaseCompressor, CompressionResult, compress_chunks
from ctxkit.messages import Chunk


class _HalfWords(BaseCompressor):
    """Keeps the first half of the words; records what it was asked."""

    method = "half"

    def __init__(self) -> None:
        self.calls: list[tuple[str, float, str | None]] = []

    def compress(self, text: str, *, rate: float = 0.5, question: str | None = None) -> CompressionResult:
        self.calls.append((text, rate, question))
        words = text.split()
        kept = " ".join(words[: len(words) // 2])
        return CompressionResult(
            text=kept,
            original=text,
            original_tokens=len(words),
            compressed_tokens=len(kept.split()),
            requested_rate=rate,
            method=self.method,
            tokenizer="words",
            seconds=0.0,
        )


def test_each_chunk_is_compressed_and_keeps_its_id_score_and_metadata() -> None:
    comp = _HalfWords()
    chunks = [
        Chunk(text="one two three four", id="a", score=0.5, metadata={"src": "x"}),
        Chunk(text="five six", id="b", score=0.25),
    ]
    out = compress_chunks(comp, chunks, question="q?", rate=0.4)
    assert comp.calls == [("one two three four", 0.4, "q?"), ("five six", 0.4, "q?")]
    assert [(c.id, c.score, c.text) for c in out] == [("a", 0.5, "one two"), ("b", 0.25, "five")]
    assert out[0].metadata == {"src": "x", "compression": {"rate": 0.5, "original_tokens": 4}}
    assert out[1].metadata == {"compression": {"rate": 0.5, "original_tokens": 2}}
    assert chunks[0].text == "one two three four" and chunks[0].metadata == {"src": "x"}  # inputs untouched
