"""Coarse-to-fine compression: the rate contract, protected spans whole, answers that survive on real HotpotQA."""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from _hash_embedder import HashEmbedder
from ctxkit.compress import TokenPruner
from ctxkit.compress.base import CompressionResult
from ctxkit.compress.coarse import parse_structure
from ctxkit.compress.lingua import recut_to_rate
from ctxkit.compress.relevance import COMPRESSION_WEIGHTS, SentenceScorer
from ctxkit.compress.spans import protected_spans
from ctxkit.errors import InvalidInputError
from ctxkit.tokenizers import get_tokenizer

TOK = get_tokenizer("gpt-4o")
EXAMPLES = max(settings().max_examples // 5, 10)  # each example runs the whole planner


def _pruner() -> TokenPruner:
    return TokenPruner(tokenizer="gpt-4o", sentence_scorer=SentenceScorer(HashEmbedder(), weights=COMPRESSION_WEIGHTS))


# unique, made-up protected spans: each word occurs once in a text, so "whole or not at all" is checkable
_SYL = ["zor", "quil", "vex", "bram", "tul", "nix", "pheo", "dra", "kel", "mun", "sar", "yob"]
_NAME = st.tuples(st.sampled_from(_SYL), st.sampled_from(_SYL), st.sampled_from(_SYL), st.sampled_from(_SYL)).map(
    lambda t: f"{(t[0] + t[1]).capitalize()} {(t[2] + t[3]).capitalize()}"
)
_FILLER = [
    "the",
    "team",
    "said",
    "that",
    "it",
    "was",
    "a",
    "good",
    "year",
    "for",
    "the",
    "town",
    "and",
    "many",
    "people",
    "came",
    "to",
    "see",
    "it",
    "while",
    "others",
    "stayed",
    "home",
    "because",
    "the",
    "weather",
    "was",
    "cold",
    "and",
    "the",
    "roads",
    "were",
    "closed",
    "for",
    "most",
    "of",
    "the",
    "week",
    "after",
    "the",
    "storm",
]


@st.composite
def _texts(draw: st.DrawFn) -> tuple[str, list[str]]:
    n_para = draw(st.integers(2, 3))
    specials: list[str] = []
    used: set[str] = set()
    paras = []
    for p in range(n_para):
        sents = []
        for _ in range(draw(st.integers(4, 7))):
            words = draw(st.lists(st.sampled_from(_FILLER), min_size=8, max_size=16))
            kind = draw(st.sampled_from(["name", "number", "date", "quote", "none"]))
            special = ""
            if kind == "name":
                special = draw(_NAME.filter(lambda s: s not in used))
            elif kind == "number":
                special = f"{draw(st.integers(1000, 999999))} {draw(st.sampled_from(['km', 'million', 'kg', '%']))}"
            elif kind == "date":
                special = f"{draw(st.integers(1, 28))} {draw(st.sampled_from(['May', 'June', 'March']))} "
                special += str(draw(st.integers(1900, 2020)))
            elif kind == "quote":
                special = '"' + " ".join(draw(st.lists(st.sampled_from(_SYL), min_size=2, max_size=3))) + '"'
            taken = {w.lower() for x in specials for w in re.findall(r"[\w%]+", x)}
            if special and not any(w.lower() in taken for w in re.findall(r"[\w%]+", special)):
                used.add(special)
                specials.append(special)
                at = draw(st.integers(1, len(words)))
                words = [*words[:at], special, *words[at:]]
            line = " ".join(words)
            sents.append(line[:1].upper() + line[1:] + ".")
        title = f"Section {['Alpha', 'Beta', 'Gamma'][p]}\n" if draw(st.booleans()) else ""
        paras.append(title + " ".join(sents))
    return "\n\n".join(paras), specials


@settings(max_examples=EXAMPLES)
@given(_texts(), st.floats(0.1, 0.9), st.booleans())
def test_rate_contract_never_over_and_within_002(case: tuple[str, list[str]], rate: float, ask: bool) -> None:
    text, _ = case
    n = TOK.count(text)
    assume(n >= 100)  # the contract is stated for texts of 100 tokens or more
    pruner = _pruner()
    r = pruner.compress(text, rate=rate, question="Where did the team go in the storm?" if ask else None)
    assert r.compressed_tokens == TOK.count(r.text)
    assert r.original_tokens == n
    assert r.compressed_tokens <= rate * n + 1e-9, (r.rate, rate)
    assert rate - r.rate <= 0.02 + 1e-9, (r.rate, rate, n)
    assert r.within_rate


@settings(max_examples=EXAMPLES)
@given(_texts(), st.floats(0.1, 0.7))
def test_protected_spans_kept_whole_or_dropped_whole(case: tuple[str, list[str]], rate: float) -> None:
    text, specials = case
    out = _pruner().compress(text, rate=rate, question="What happened to the town?").text
    out_words = re.findall(r"[\w%]+", out)
    for s in specials:
        words = re.findall(r"[\w%]+", s)
        present = [w in out_words for w in words]
        if any(present):
            assert s in out, (s, out)


def test_protected_spans_detects_names_numbers_dates() -> None:
    text = (
        "BSkyB launched its HDTV service, Sky+ HD, on 22 May 2006. It stays below 0 °C (32 °F) and "
        'J. R. R. Tolkien met Dr. Smith at the University of California in 1950–1955; "hello there" my_var.'
    )
    found = [text[a:b] for a, b in protected_spans(text)]
    for want in (
        "Sky+ HD",
        "22 May 2006",
        "0 °C (32 °F)",
        "J. R. R. Tolkien",
        "Dr. Smith",
        "University of California",
        "1950–1955",
        '"hello there"',
        "my_var",
    ):
        assert want in found, (want, found)


def test_parse_structure_headings_and_sentences() -> None:
    paras, sents = parse_structure("Title One\nFirst sentence here. Second one.\n\nNo heading. Two sentences.")
    assert [p.title for p in paras] == ["Title One", ""]
    assert [s.text for s in sents] == ["First sentence here.", "Second one.", "No heading.", "Two sentences."]


def test_keep_tags_survive_coarse_to_fine() -> None:
    text = " ".join(f"Sentence number {w} talks about the weather and the town." for w in _FILLER[:12])
    text += " The code is <keep>XK-4471</keep>."
    r = _pruner().compress(text, rate=0.2, question="What is the weather like?")
    assert "XK-4471" in r.text
    assert "<keep>" not in r.text


def test_bad_strategy_and_fine_raise() -> None:
    with pytest.raises(InvalidInputError, match="strategy"):
        TokenPruner(strategy="words")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="fine"):
        TokenPruner(fine="gpt")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="tolerance"):
        TokenPruner(tolerance=0)


@settings(max_examples=EXAMPLES)
@given(
    st.lists(st.sampled_from([*_FILLER, "Dr. Smith", "22 May 2006", "3.5 million"]), min_size=5, max_size=80),
    st.floats(0.1, 0.9),
)
def test_recut_never_over(words: list[str], rate: float) -> None:
    text = " ".join(words)
    target = int(rate * TOK.count(text))
    out, used = recut_to_rate(text, target, TOK.count)
    assert used == TOK.count(out)
    assert used <= target or not out


def test_within_rate_property() -> None:
    def res(after: int) -> CompressionResult:
        return CompressionResult(
            text="x", original="y", original_tokens=100, compressed_tokens=after, requested_rate=0.33, method="m"
        )

    assert res(33).within_rate
    assert res(31).within_rate
    assert not res(34).within_rate
    assert not res(30).within_rate


@pytest.mark.model
def test_answers_survive_on_real_hotpotqa() -> None:
    """Real MiniLM + SmolLM2 counts on the first 12 usable HotpotQA dev items: the answer survives at rate 0.5.

    The token-only pruner (``strategy="tokens"``) keeps about half of these answers; this fails if the
    default falls back to anything like it.
    """
    from ctxkit.datasets import hotpotqa

    items = []
    for e in hotpotqa("dev"):
        gold = {p for p, _ in e.supporting}
        idx = sorted(gold | set([i for i in range(len(e.passages)) if i not in gold][:2]))
        text = "\n\n".join(f"{e.passages[i].title}\n{e.passages[i].text.strip()}" for i in idx)
        if e.answers[0].lower() not in ("yes", "no") and e.answers[0].lower() in text.lower():
            items.append((e, text))
        if len(items) == 12:
            break
    pruner = TokenPruner()
    kept = 0
    for e, text in items:
        r = pruner.compress(text, rate=0.5, question=e.question)
        assert r.rate <= 0.5
        assert 0.5 - r.rate <= 0.02
        kept += e.answers[0].lower() in r.text.lower()
    assert kept >= 10, f"the answer survived in {kept} of 12"


def test_without_a_question_facts_stay_whole() -> None:
    """History before the next turn is known: a planted number and name survive, whole, at rate 0.33."""
    chatter = [
        "User: can you explain how photosynthesis works in simple terms for a school project",
        "Assistant: plants take light water and air and turn them into sugar and oxygen inside the leaves",
        "User: that is helpful and what about the role of the roots in all of this process",
        "Assistant: roots pull water and minerals from the soil and carry them up through the stem",
    ]
    lines = chatter * 4
    lines[5] += " By the way, my locker code is 4817 and my tutor is Dr. Alvarez."
    text = "\n".join(lines)
    r = _pruner().compress(text, rate=0.33)
    assert r.within_rate
    assert "4817" in r.text
    assert "Dr. Alvarez" in r.text


@settings(max_examples=EXAMPLES)
@given(_texts(), st.floats(0.1, 0.9))
def test_sentence_filter_keeps_the_rate_contract(case: tuple[str, list[str]], rate: float) -> None:
    from ctxkit.compress import SentenceFilter

    text, _ = case
    n = TOK.count(text)
    assume(n >= 100)
    r = SentenceFilter(HashEmbedder(), tokenizer="gpt-4o").compress(text, rate=rate, question="What about the town?")
    assert r.compressed_tokens == TOK.count(r.text)
    assert r.compressed_tokens <= rate * n + 1e-9
    assert rate - r.rate <= 0.02 + 1e-9, (r.rate, rate, n)


def test_compressed_pipeline_is_a_stage_full_vs_compressed() -> None:
    from ctxkit.eval import CompressedPipeline, EvalDocument, Task

    task = Task(
        id="t1",
        question="When did the storm close the roads?",
        answers=("1 May 1900",),
        documents=(
            EvalDocument(id="a", title="Storm", text="The storm closed the roads on 1 May 1900. " + "Filler. " * 30),
            EvalDocument(id="b", title="Town", text="The town is small and quiet. " * 10),
        ),
    )
    full = CompressedPipeline(1.0, name="full").assemble(task)
    comp = CompressedPipeline(0.33, compressor=_pruner()).assemble(task)
    assert "Filler. Filler." in full.context
    assert TOK.count(comp.context) < TOK.count(full.context) * 0.5
    assert comp.meta["achieved_rate"] <= 0.33
    assert "1 May 1900" in comp.context
    assert comp.messages[-1].content.endswith(task.question)
    with pytest.raises(InvalidInputError):
        CompressedPipeline(0)
