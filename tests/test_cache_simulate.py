"""Replaying a session under each provider's caching rules, two layouts side by side."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxkit import Assembler, Chunk, InvalidInputError, Message, ToolSpec
from ctxkit.cache import CachePrices, compare, prefix_info, rules_for, segments, simulate

EXAMPLES = settings().max_examples  # the conftest profile (CTXKIT_HYPOTHESIS_EXAMPLES)
WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")
WORDS += ("india", "juliet", "kilo", "lima", "mike", "november", "oscar", "papa")
TOOLS = [ToolSpec(name="lookup", description="Look a word up.", parameters={"type": "object", "properties": {}})]


def _text(n: int, seed: int = 0) -> str:
    return " ".join(WORDS[(i * 5 + seed) % len(WORDS)] for i in range(n))


SYSTEM = _text(1400)


def _session(model: str, turns: int, *, naive: bool) -> list:
    asm = Assembler(model)
    history: list[Message] = []
    out = []
    for t in range(turns):
        query = f"question {t}: {_text(20, t)}"
        context = f"retrieved passage {t}: {_text(150, t + 3)}"
        if naive:  # a timestamp and the retrieved context at the top of the system prompt
            system = f"Current time: 2026-11-24T11:{t:02d}:00Z\n{context}\n\n{SYSTEM}"
            out.append(asm.assemble(query=query, system=system, tools=TOOLS, history=history))
        else:
            chunks = [Chunk(text=context, score=1.0, id=f"p{t}")]
            out.append(asm.assemble(query=query, system=SYSTEM, tools=TOOLS, history=history, chunks=chunks))
        history = [*history, Message.user(query), Message.assistant(_text(80, t + 7))]
    return out


@pytest.fixture(scope="module")
def gpt_sessions() -> tuple[list, list]:
    return _session("gpt-4o", 8, naive=False), _session("gpt-4o", 8, naive=True)


@pytest.fixture(scope="module")
def claude_sessions() -> tuple[list, list]:
    return _session("claude-sonnet-4-5", 8, naive=False), _session("claude-sonnet-4-5", 8, naive=True)


def _check_buckets(report) -> None:
    for c in report.calls:
        assert c.cached_tokens + c.written_tokens + c.uncached_tokens == c.input_tokens
        assert min(c.cached_tokens, c.written_tokens, c.uncached_tokens) >= 0


def test_openai_simulation_follows_the_rules(gpt_sessions: tuple[list, list]) -> None:
    ours, naive = gpt_sessions
    report = simulate(ours, gaps_s=30)
    _check_buckets(report)
    first, second = report.calls[0], report.calls[1]
    assert first.cached_tokens == 0
    assert all(c.cached_tokens % 128 == 0 for c in report.calls)
    stable = prefix_info(ours[0]).tokens  # turn 0's stable prefix is all turn 1 can share with it...
    assert stable - 128 < second.cached_tokens <= stable + 128  # ...plus a few tokens of the next message's head
    assert report.cached_share > 0.7
    expected = (second.uncached_tokens * 2.50 + second.cached_tokens * 1.25 + second.written_tokens * 2.50) / 1e6
    assert second.cost == pytest.approx(expected)  # gpt-4o: $2.50 input, $1.25 cached, writes free
    cheap = simulate(ours, gaps_s=30, prices=CachePrices.openai(1.0, 0.1, 4.0))
    assert cheap.total_cost < report.total_cost
    bad = simulate(naive, gaps_s=30)
    assert all(c.cached_tokens == 0 for c in bad.calls)  # the timestamp sits in the first 30 tokens
    expired = simulate(ours, gaps_s=900)  # OpenAI's in-memory cache is gone after 5-10 idle minutes
    assert expired.cached_tokens == 0


def test_anthropic_simulation_reads_what_earlier_calls_wrote(claude_sessions: tuple[list, list]) -> None:
    ours, _ = claude_sessions
    report = simulate(ours, gaps_s=30)
    _check_buckets(report)
    assert report.calls[0].cached_tokens == 0 and report.calls[0].written_tokens > 1024
    segs = segments(ours[1])
    stable_end_prev = prefix_info(ours[0]).tokens
    assert report.calls[1].cached_tokens == stable_end_prev  # read exactly the previous call's last breakpoint
    assert all(c.breakpoints <= 4 for c in report.calls)
    assert report.calls[1].written_tokens == prefix_info(ours[1]).tokens - stable_end_prev
    assert segs[-1].section == "retrieved+query"
    unplanned = simulate(ours, gaps_s=30, planner=None)
    assert unplanned.cached_tokens == unplanned.written_tokens == 0
    system_only = simulate(ours, gaps_s=30, planner="system")
    assert 0 < system_only.cached_tokens < report.cached_tokens
    expired = simulate(ours, gaps_s=400)  # past the 5-minute TTL: the planner switches to 1h entries
    assert expired.cached_tokens > 0
    assert expired.total_cost > report.total_cost


def test_compare_two_layouts_side_by_side(gpt_sessions: tuple[list, list], claude_sessions: tuple[list, list]) -> None:
    for ours, naive in (gpt_sessions, claude_sessions):
        cmp = compare(ours, naive, gaps_s=30)
        assert cmp.a.name == "ctxkit" and cmp.b is not None and cmp.b.name == "naive"
        assert len(cmp.a.calls) == len(cmp.b.calls) == 8
        assert cmp.cost_ratio > 1.3
        html = cmp._repr_html_()
        assert html.count("<tr>") == 8 + 3 and "ctxkit" in html and "naive" in html
        text = str(cmp)
        assert "naive / ctxkit cost" in text
        assert "<table>" in cmp.a._repr_html_()


def test_llamacpp_simulation_reuses_the_longest_common_prefix(gpt_sessions: tuple[list, list]) -> None:
    ours, _ = gpt_sessions
    report = simulate(ours, provider="llamacpp", rules=rules_for("llamacpp"), gaps_s=0)
    _check_buckets(report)
    assert report.total_cost == 0
    assert report.calls[1].cached_tokens >= prefix_info(ours[0]).tokens


def test_bad_inputs_are_refused(gpt_sessions: tuple[list, list]) -> None:
    ours, _ = gpt_sessions
    with pytest.raises(InvalidInputError, match="at least one"):
        simulate([])
    with pytest.raises(InvalidInputError, match="one per pair"):
        simulate(ours, gaps_s=[1.0])
    with pytest.raises(InvalidInputError, match="planner"):
        simulate(ours[:2], provider="anthropic", rules=rules_for("claude-sonnet-4-5"), planner="magic")


@settings(max_examples=max(EXAMPLES // 10, 10), deadline=None)
@given(
    turns=st.integers(1, 6),
    gaps=st.lists(st.sampled_from([5.0, 200.0, 700.0, 4000.0]), min_size=5, max_size=5),
    model=st.sampled_from(["gpt-4o", "claude-sonnet-4-5"]),
)
def test_buckets_always_add_up(turns: int, gaps: list[float], model: str) -> None:
    prompts = _session(model, turns, naive=False)
    report = simulate(prompts, gaps_s=gaps[: turns - 1])
    _check_buckets(report)
    assert report.total_cost > 0
