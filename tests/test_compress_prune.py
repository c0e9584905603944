"""Token pruning on the real SmolLM2-135M through llama.cpp, plus pure selection properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxkit.compress import (
    LlamaCppScorer,
    Section,
    TokenPruner,
    allocate_budget,
    extract_numbers,
    force_spans,
    join_units,
    select_units,
    strip_keep_tags,
)
from ctxkit.errors import InvalidInputError
from ctxkit.messages import Chunk

EXAMPLES = settings().max_examples  # the conftest profile (CTXKIT_HYPOTHESIS_EXAMPLES)

GSM = (
    "Question: Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?\n"
    "Answer: Natalia sold 48/2 = 24 clips in May. Natalia sold 48+24 = 72 clips altogether in April and May. "
    "The answer is 72.\n"
    "Question: Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. "
    "How much did she earn?\n"
    "Answer: Weng earns 12/60 = $0.2 per minute. Working 50 minutes, she earned 0.2 x 50 = $10. The answer is 10.\n"
)
PROSE = (
    "The museum was founded by a group of local merchants who wanted the town to have a place where travelers "
    "could see the art of the region. Over the years it grew from a single room above a bakery into a large "
    "building near the river, and today it holds paintings, pottery, old maps and a small library that is open "
    "to anyone who asks. Most visitors come in the summer, when the gardens behind the building are in bloom."
)


@pytest.fixture(scope="module")
def pruner() -> TokenPruner:
    return TokenPruner(strategy="tokens")  # the token-only mechanism; the default is in test_compress_coarse.py


@pytest.mark.model
def test_scorer_offsets_and_values(pruner: TokenPruner) -> None:
    text = "Café ß 数据 naïve `user_id` 😀 ok"
    s = pruner.scorer.score(text)
    raw = text.encode()
    assert s.self_info.shape == s.byte_starts.shape
    assert s.byte_starts[0] == 0 and np.all(np.diff(s.byte_starts) > 0) and s.byte_starts[-1] < len(raw)
    assert np.isfinite(s.self_info).all() and (s.self_info >= 0).all()
    # predictable continuations carry less information than the surprising start
    s2 = pruner.scorer.score("one two three four five six seven eight nine ten")
    assert s2.self_info[-3:].mean() < s2.self_info[:2].mean()


@pytest.mark.model
def test_scorer_windows_match_length() -> None:
    small = LlamaCppScorer(n_ctx=64)
    try:
        text = PROSE * 2
        s = small.score(text)
        assert s.self_info.shape[0] == small.count(text) > 64
        assert np.isfinite(s.self_info).all()
    finally:
        small.close()


@pytest.mark.model
@pytest.mark.parametrize("rate", [0.5, 0.33])
@pytest.mark.parametrize("text", [GSM, PROSE])
def test_rate_within_ten_percent(pruner: TokenPruner, text: str, rate: float) -> None:
    r = pruner.compress(text, rate=rate)
    assert r.rate_error <= 0.10, (r.rate, r.text)
    assert r.original_tokens == pruner.scorer.count(text)
    assert r.compressed_tokens == pruner.scorer.count(r.text)
    # kept words appear in source order
    pos = 0
    for word in r.text.split():
        found = text.find(word, pos)
        assert found >= 0, word
        pos = found


@pytest.mark.model
def test_force_keep_numbers_and_spans(pruner: TokenPruner) -> None:
    r = pruner.compress(GSM, rate=0.5)
    assert r.fidelity().number_retention == 1.0
    assert set(extract_numbers(GSM)) <= set(extract_numbers(r.text))
    marked = "Please remember <keep>the vault code is blue falcon</keep> and ignore the rest of this rambling text."
    r2 = pruner.compress(marked, rate=0.4, keep=["rambling"])
    assert "the vault code is blue falcon" in r2.text
    assert "rambling" in r2.text and "<keep>" not in r2.text
    free = TokenPruner(pruner.scorer, force=(), strategy="tokens")
    r3 = free.compress(GSM, rate=0.33)
    assert r3.forced_tokens < r.forced_tokens  # only the newlines are forced now
    # numbers are hard by default, so a target below their share is missed upward ...
    tight = pruner.compress(GSM, rate=0.2)
    assert tight.rate > 0.22 and tight.fidelity().number_retention == 1.0
    # ... unless the rate is strict: then numbers go first but the target holds
    strict = TokenPruner(pruner.scorer, strict_rate=True, strategy="tokens").compress(GSM, rate=0.2)
    assert strict.rate_error <= 0.10
    assert r3.rate_error <= 0.10


@pytest.mark.model
def test_question_aware_and_chunks(pruner: TokenPruner) -> None:
    q = "Where is the museum building?"
    r = pruner.compress(PROSE, rate=0.5, question=q)
    assert r.method.endswith("+question")
    assert r.rate_error <= 0.10
    assert r.text != pruner.compress(PROSE, rate=0.5).text  # the question changes the choice
    chunks = pruner.compress_chunks([Chunk(text=PROSE, id="c1", score=0.7)], question=q, rate=0.5)
    assert chunks[0].id == "c1" and chunks[0].score == 0.7
    assert chunks[0].metadata["compression"]["original_tokens"] == pruner.scorer.count(PROSE)


@pytest.mark.model
def test_sections_budget_controller(pruner: TokenPruner) -> None:
    instr = "Solve the math problem step by step."
    question = "Question: Tom has 3 apples and buys 5 more. How many apples does he have?"
    res = pruner.compress_sections(
        [
            Section(text=instr, rate=1.0, name="instructions"),
            Section(text=GSM + PROSE, name="examples"),
            Section(text=question, rate=1.0, name="question"),
        ],
        rate=0.5,
    )
    assert res.sections[0].text == instr and res.sections[2].text == question
    assert res.sections[1].rate < 0.5  # the examples pay for the fixed sections
    assert abs(res.rate - 0.5) / 0.5 <= 0.10
    assert res.text.startswith(instr) and res.text.endswith(question)


def test_invalid_inputs() -> None:
    p = TokenPruner(scorer=None)
    for bad in (0.0, 1.5, float("nan")):
        with pytest.raises(InvalidInputError):
            p.compress("text", rate=bad)
    with pytest.raises(InvalidInputError):
        TokenPruner(force=["emoji"])


def test_join_units_never_glues_numbers() -> None:
    text = "80,000*1.5=120,000 and x"
    starts = np.array([0, 7, 11, 18], dtype=np.int64)
    ends = np.array([6, 10, 18, 22], dtype=np.int64)
    assert join_units(text, starts, ends) == "80,000 1.5 120,000 and"


def test_spans_and_tags() -> None:
    clean, spans = strip_keep_tags("a <keep>b c</keep> d <keep>e</keep>")
    assert clean == "a b c d e" and [clean[s:e] for s, e in spans] == ["b c", "e"]
    text = 'call get_user_id() on obj.attr with "quoted text" and `code` at 3.5% or $12, v2 HTTP'
    found = {text[s:e] for s, e in force_spans(text)}
    assert {"get_user_id", "obj.attr", '"quoted text"', "`code`", "3.5%", "$12", "v2", "HTTP"} <= found


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 5), st.floats(0, 20), st.booleans()), min_size=0, max_size=200),
    st.floats(0.05, 1.0),
)
def test_select_units_properties(units: list[tuple[int, float, bool]], rate: float) -> None:
    cost = np.array([u[0] for u in units], dtype=np.int64)
    score = np.array([u[1] for u in units], dtype=np.float64)
    forced = np.array([u[2] for u in units], dtype=bool)
    target = rate * float(cost.sum())
    keep = select_units(cost, score, forced, target)
    assert keep[forced].all()
    preferred = np.roll(forced, 1) & ~forced
    keep_p = select_units(cost, score, forced, target, preferred)
    assert keep_p[forced].all()
    if float(cost[forced | preferred].sum()) <= target:
        # zero-cost units lie inside an earlier unit's token and follow that unit
        assert keep_p[preferred & (cost > 0)].all()
    else:
        # preferred units go first: no plain unit is kept while a preferred one is dropped
        dropped_pref = preferred & ~keep_p & (cost > 0)
        kept_plain = ~preferred & ~forced & keep_p & (cost > 0)
        assert not (dropped_pref.any() and kept_plain.any())
    # Without preferences the unforced units kept are exactly the best-scored ones (ties: earlier
    # first) whose token total lands nearest the room left by the forced units; an independent
    # pure-Python walk computes that set.
    room = target - float(cost[forced].sum())
    ranked = sorted((i for i in range(len(units)) if not forced[i] and cost[i] > 0), key=lambda i: (-score[i], i))
    take, total = 0, 0
    while room > 0 and take < len(ranked) and total + int(cost[ranked[take]]) <= room:
        total += int(cost[ranked[take]])
        take += 1
    if room > 0 and take < len(ranked) and abs(total + int(cost[ranked[take]]) - room) < abs(total - room):
        take += 1
    kept_free = {int(i) for i in np.flatnonzero(keep & ~forced & (cost > 0))}
    assert kept_free == set(ranked[:take])
    if room <= 0:  # forced units already fill the target: nothing else is kept
        assert not kept_free
    # a zero-cost unit lies inside the token of the nearest earlier unit with a cost and follows it
    for i in np.flatnonzero(cost == 0):
        owners = np.flatnonzero(cost[:i] > 0)
        if owners.size:
            assert keep[i] == (keep[owners[-1]] or forced[i])


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 500), st.one_of(st.none(), st.floats(0.01, 1.0)), st.floats(0.1, 5)),
        min_size=1,
        max_size=6,
    ),
    st.floats(0.05, 1.0),
)
def test_allocate_budget_properties(secs: list[tuple[int, float | None, float]], rate: float) -> None:
    tokens = [s[0] for s in secs]
    total = rate * sum(tokens)
    out = allocate_budget(tokens, [s[1] for s in secs], [s[2] for s in secs], total)
    assert (out >= -1e-9).all() and (out <= np.array(tokens) + 1e-6).all()
    fixed = sum(out[i] for i, s in enumerate(secs) if s[1] is not None)
    free_size = sum(t for t, s in zip(tokens, secs, strict=True) if s[1] is None)
    if fixed <= total:
        assert out.sum() == pytest.approx(min(total, fixed + free_size), abs=1e-6)


@pytest.mark.model
def test_pruning_older_turns_of_a_real_chat(pruner: TokenPruner) -> None:
    from ctxkit.assembly import group_turns
    from ctxkit.compress import CompressOlderTurns
    from ctxkit.datasets import chat_histories
    from ctxkit.messages import Message

    (chat,) = chat_histories(12, 1, min_chars=4000)
    history = [Message.system("You are a helpful assistant."), *chat]
    policy = CompressOlderTurns(pruner, rate=0.5, keep_last=2, min_chars=300)
    out, report = policy.apply_with_report(history)
    group_turns(out)
    assert [m.role for m in out] == [m.role for m in history]
    assert out[0] == history[0] and out[-4:] == history[-4:]
    changed = [(b, a) for b, a in zip(history, out, strict=True) if a.content != b.content]
    assert changed and report.messages_truncated == len(changed)
    for b, a in changed:
        kept = pruner.scorer.count(a.content) / pruner.scorer.count(b.content)
        assert 0.35 <= kept <= 0.65, (kept, a.content[:200])  # numbers and newlines may be forced beyond 0.5
    assert report.tokens_after < report.tokens_before
    # the next call: the same older messages come out byte-identical
    assert policy.apply([*history, Message.user("and one more thing?")])[: len(history) - 4] == out[:-4]


def test_coarse_to_fine_refuses_force_kinds_it_cannot_honour() -> None:
    """Coarse to fine keeps the rate as a contract: asking it to force-keep numbers is an error, not ignored."""
    with pytest.raises(InvalidInputError, match="strategy='tokens'"):
        TokenPruner(force=("numbers",))
    with pytest.raises(InvalidInputError, match="protected spans"):
        TokenPruner(force=["quotes", "marked"])
    assert TokenPruner(force=("marked",)).force == ("marked",)
    assert TokenPruner(force=("numbers",), strategy="tokens").force == ("numbers",)
    assert TokenPruner().force == TokenPruner(strategy="tokens").force
