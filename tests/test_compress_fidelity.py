"""Fidelity reports (pure) and sentence-level filtering over real MiniLM embeddings."""

from __future__ import annotations

import pytest

from ctxkit.compress import FidelityReport, SentenceFilter, extract_entities, extract_numbers, fidelity_report
from ctxkit.compress.sentences import split_sentences
from ctxkit.errors import InvalidInputError
from ctxkit.messages import Chunk

SOURCE = (
    "Natalia sold clips to 48 of her friends in April. In May she sold half as many, 24 clips, "
    "for $1,200 in total. Her friend Marco Polo from New York bought 3.5 boxes."
)


def test_extractors() -> None:
    assert extract_numbers(SOURCE) == ["48", "24", "1,200", "3.5"]
    ents = extract_entities(SOURCE)
    assert "Marco Polo" in ents and "New York" in ents and "April" in ents
    assert "Natalia" not in ents and "In" not in ents  # sentence starts are not names


def test_report_counts_and_retention() -> None:
    compressed = "Natalia sold 48 clips April. May: 24 clips, $1,200. Marco Polo 3.5 boxes."
    r = fidelity_report(SOURCE, compressed, answers=["72", "Marco Polo"], facts=["half as many"], method="m")
    assert isinstance(r, FidelityReport)
    assert r.tokens_before > r.tokens_after > 0
    assert r.rate == r.tokens_after / r.tokens_before
    assert r.number_retention == 1.0
    assert r.answer_retention == 0.5 and r.lost_answers == ["72"]
    assert r.answer_survived is True  # one of the gold answers is enough
    assert r.fact_retention == 0.0 and r.lost_facts == ["half as many"]
    assert "New York" in r.lost_entities
    assert "numbers 100%" in r.summary() and "<table>" in r._repr_html_()
    # whole numbers only: "48" is not retained by "480"
    assert fidelity_report("we have 48 cats", "we have 480 cats").number_retention == 0.0
    empty = fidelity_report("no digits here", "digits")
    assert empty.number_retention is None and empty.answer_retention is None
    assert empty.answer_survived is None
    lost = fidelity_report("The capital is Paris.", "The capital is", answers=["Paris", "City of Light"])
    assert lost.answer_survived is False and "answer LOST" in lost.summary()


def test_split_sentences() -> None:
    text = "First one. Second one! e.g. lower case stays.\nNew line here"
    parts = [text[a:b] for a, b in split_sentences(text)]
    assert parts == ["First one.", "Second one! e.g. lower case stays.", "New line here"]


@pytest.fixture(scope="module")
def sentence_filter() -> SentenceFilter:
    return SentenceFilter()


DOC = (
    "The Eiffel Tower is located in Paris, on the Champ de Mars near the Seine. "
    "Bananas are rich in potassium and are a popular breakfast fruit. "
    "The tower was completed in 1889 for the World's Fair. "
    "Many people enjoy knitting scarves during the winter months. "
    "Gustave Eiffel's company designed and built the tower. "
    "Cats often sleep for more than twelve hours a day."
)


@pytest.mark.model
def test_sentence_filter_question_relevance(sentence_filter: SentenceFilter) -> None:
    r = sentence_filter.compress(DOC, rate=0.5, question="Who built the Eiffel Tower and when?")
    assert r.method == "ctxkit-sentences+question"
    assert r.compressed_tokens <= 0.5 * r.original_tokens + 1
    assert "Bananas" not in r.text and "Cats" not in r.text and "knitting" not in r.text
    assert "Gustave Eiffel" in r.text or "1889" in r.text
    # original order; whole sentences, but for at most one cut to its leading words and marked " …"
    # (the filler that holds the rate within 0.02 of what was asked)
    rest, parts = r.text, []
    for sent in (DOC[a:b] for a, b in split_sentences(DOC)):
        words = sent.split()
        for cand in [sent] + [" ".join(words[:k]) + " …" for k in range(len(words) - 1, 0, -1)]:
            if rest.startswith(cand):
                parts.append(cand)
                rest = rest[len(cand) :].lstrip()
                break
    assert rest == ""
    assert r.text == " ".join(parts)
    assert sum(p.endswith(" …") for p in parts) <= 1


@pytest.mark.model
def test_sentence_filter_no_question_and_chunks(sentence_filter: SentenceFilter) -> None:
    r = sentence_filter.compress(DOC, rate=0.6)
    assert 0 < r.compressed_tokens <= 0.6 * r.original_tokens + 1
    chunks = sentence_filter.compress_chunks([Chunk(text=DOC, id="d", score=1.0)], question="fruit", rate=0.3)
    assert "Bananas" in chunks[0].text and chunks[0].id == "d"
    with pytest.raises(InvalidInputError):
        sentence_filter.compress(DOC, rate=2.0)
