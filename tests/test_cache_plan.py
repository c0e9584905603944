"""Explaining misses, choosing TTLs, planning breakpoints, and the compaction decision."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxkit import Assembler, InvalidInputError, Message, ToolSpec, UnknownNameError, get_chat_counter
from ctxkit.cache import (
    ANTHROPIC_MIN_CACHEABLE_TOKENS,
    CacheAwareCompaction,
    CachePrices,
    CompactionGate,
    choose_ttl,
    decide_compaction,
    explain_miss,
    plan_anthropic,
    plan_cache,
    plan_openai,
    prefix_info,
    prices_for,
    rules_for,
    segments,
)

EXAMPLES = settings().max_examples  # the conftest profile (CTXKIT_HYPOTHESIS_EXAMPLES)
SONNET = rules_for("claude-sonnet-4-5")
SONNET_PRICES = prices_for("claude-sonnet-4-5")
TOOL = ToolSpec(name="lookup", description="Look a word up.", parameters={"properties": {}, "type": "object"})
WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")
WORDS += ("india", "juliet", "kilo", "lima", "mike", "november", "oscar", "papa")


def _text(n_words: int, seed: int = 0) -> str:
    return " ".join(WORDS[(i * 7 + seed) % len(WORDS)] for i in range(n_words))


# ----------------------------------------------------------------- rules and prices
def test_rules_follow_the_documented_tables() -> None:
    assert rules_for("claude-sonnet-4-5").min_cacheable_tokens == 1024
    assert rules_for("claude-haiku-4-5-20251001").min_cacheable_tokens == 4096
    assert rules_for("claude-3-5-haiku").min_cacheable_tokens == 2048
    assert rules_for("anthropic:claude-opus-4-1").max_breakpoints == 4
    assert SONNET.write_multiplier == {"5m": 1.25, "1h": 2.0} and SONNET.read_multiplier == 0.1
    assert SONNET.lookback_blocks == 20
    gpt = rules_for("gpt-4o-2024-08-06")
    assert (gpt.min_cacheable_tokens, gpt.increment_tokens, gpt.explicit_breakpoints) == (1024, 128, False)
    assert rules_for("gpt-5.6-mini").explicit_breakpoints
    assert rules_for("gpt-6").explicit_breakpoints and rules_for("gpt-5.7").write_multiplier == {"30m": 1.25}
    assert not rules_for("gpt-5-mini").explicit_breakpoints and not rules_for("gpt-5.1").explicit_breakpoints
    assert rules_for("smollm2-135m-instruct").provider == "llamacpp"
    assert set(ANTHROPIC_MIN_CACHEABLE_TOKENS.values()) == {1024, 2048, 4096}
    with pytest.raises(UnknownNameError, match="register_cache_rules"):
        rules_for("mystery-model")
    p = CachePrices.anthropic(3.0, 15.0)
    assert (p.cache_read, p.write_price("5m"), p.write_price("1h")) == (0.3, 3.75, 6.0)
    assert prices_for("gpt-4o-2024-08-06").cache_read == 1.25
    assert prices_for("gpt-5-mini").input < prices_for("gpt-5").input  # from the price book, not the family's
    with pytest.raises(UnknownNameError):
        prices_for("acme-unpriced-model")  # never guessed
    book = CachePrices.from_mapping({"input": "3", "cache_read": "0.3", "cache_write_5m": "3.75", "output": "15"})
    assert book.write_price("5m") == 3.75 and book.write_price("1h") == 3.0
    with pytest.raises(InvalidInputError, match="input"):
        CachePrices.from_mapping({"output": 1})


# ----------------------------------------------------------------- TTL break-even
def test_ttl_break_even_from_the_multipliers() -> None:
    m = 1_000_000  # one million tokens: costs are the per-MTok prices
    one_quick = choose_ttl(m, [60.0], SONNET_PRICES, SONNET)
    assert one_quick.ttl == "5m"  # 1.25 + 0.1 < 2 x 1.0
    assert one_quick.costs == pytest.approx({"none": 6.0, "5m": 3.75 + 0.3, "1h": 6.0 + 0.3})
    assert choose_ttl(m, [], SONNET_PRICES, SONNET).ttl is None  # no reuse: a write premium for nothing
    # gaps of 10 minutes: 5m entries expire; 1h pays from two reuses (2 + 0.1n < 1 + n)
    assert choose_ttl(m, [600.0], SONNET_PRICES, SONNET).ttl is None
    assert choose_ttl(m, [600.0, 600.0], SONNET_PRICES, SONNET).ttl == "1h"
    assert choose_ttl(m, [7200.0] * 5, SONNET_PRICES, SONNET).ttl is None
    with pytest.raises(InvalidInputError):
        choose_ttl(-1, [], SONNET_PRICES, SONNET)


@settings(max_examples=EXAMPLES, deadline=None)
@given(tokens=st.integers(0, 200_000), gaps=st.lists(st.floats(0, 10_000), max_size=12))
def test_chosen_ttl_is_never_worse_than_not_caching(tokens: int, gaps: list[float]) -> None:
    choice = choose_ttl(tokens, gaps, SONNET_PRICES, SONNET)
    assert choice.costs[choice.ttl or "none"] == min(choice.costs.values())
    assert choice.savings >= 0


# ----------------------------------------------------------------- explain a miss
@pytest.fixture(scope="module")
def asm() -> Assembler:
    return Assembler("gpt-4o")


def test_explain_miss_names_section_field_and_token(asm: Assembler) -> None:
    body = _text(1500)
    history = [Message.user("first"), Message.assistant("reply")]
    before = asm.assemble(query="q1", system=f"Current date: 2026-11-24. {body}", history=history)
    after = asm.assemble(query="q2", system=f"Current date: 2026-11-25. {body}", history=history)
    report = explain_miss(before, after, prices=prices_for("gpt-4o"))
    assert report.diverged
    assert (report.section, report.field, report.segment_index) == ("system", "messages[0].content", 0)
    tok = get_chat_counter("gpt-4o").tokenizer
    ids_a, ids_b = tok.encode(before.messages[0].content), tok.encode(after.messages[0].content)
    shared = next(i for i, (x, y) in enumerate(zip(ids_a, ids_b, strict=False)) if x != y)
    assert report.token_position == shared + 3  # <|im_start|>system<|im_sep|> come first
    assert report.previous_text.startswith("24") and report.current_text.startswith("25")
    assert report.cacheable_tokens == prefix_info(before).tokens > 1024
    assert report.reusable_tokens == 0  # 9 shared tokens: under OpenAI's 1024 minimum
    assert report.lost_tokens == report.cacheable_tokens - report.cacheable_tokens % 128
    assert report.extra_cost == pytest.approx(report.lost_tokens * (2.50 - 1.25) / 1e6)
    assert "messages[0].content" in str(report) and "cache miss" in report._repr_html_()


def test_explain_miss_on_a_reordered_tool_and_a_rewritten_summary(asm: Assembler) -> None:
    other = ToolSpec(name="zeta", description="Z.")
    a = asm.assemble(query="q", system=_text(1200), tools=[TOOL, other], memory="summary v1")
    b = asm.assemble(query="q", system=_text(1200), tools=[other, TOOL], memory="summary v1")
    r = explain_miss(a, b)
    assert (r.section, r.field, r.token_position) == ("tools", "tools[0].function.name", r.common_tokens)
    assert r.lost_tokens > 1024
    c = asm.assemble(query="q", system=_text(1200), tools=[TOOL, other], memory="summary v2")
    r2 = explain_miss(a, c)
    assert (r2.section, r2.field) == ("memory", "messages[1].content")
    memory_start = segments(a)[3].start  # tools, tools, system, memory
    assert memory_start < r2.common_tokens < segments(a)[3].end  # "Summary of ... v" is shared
    assert r2.reusable_tokens == r2.common_tokens - r2.common_tokens % 128
    same = explain_miss(a, asm.assemble(query="other", system=_text(1200), tools=[TOOL, other], memory="summary v1"))
    assert not same.diverged and same.lost_tokens == 0 and "no miss" in str(same)


# ----------------------------------------------------------------- Anthropic planner
@pytest.fixture(scope="module")
def claude() -> Assembler:
    return Assembler("claude-sonnet-4-5")


def _conversation(turns: int, words: int = 60) -> list[Message]:
    out: list[Message] = []
    for i in range(turns):
        out += [Message.user(_text(words, i)), Message.assistant(_text(words, i + 1))]
    return out


def test_anthropic_plan_marks_static_and_session_ends(claude: Assembler) -> None:
    p = claude.assemble(
        query="q", system=_text(1500), tools=[TOOL], memory=_text(300, 3), history=_conversation(4), chunks=[]
    )
    plan = plan_anthropic(p, remaining_calls=5, interval_s=30)
    segs = segments(p)
    assert [b.section for b in plan.breakpoints] == ["system", "history"]  # memory + history: one session run
    assert plan.breakpoints[-1].segment_index == max(s.index for s in segs if s.section == "history")
    assert all(b.ttl == "5m" for b in plan.breakpoints)
    assert plan.cacheable_tokens == plan.breakpoints[-1].prefix_tokens
    assert plan.expected_savings > 0
    kwargs = plan.apply(p)
    marks = [b for b in kwargs["system"] if "cache_control" in b]
    marks += [b for t in kwargs["messages"] for b in t["content"] if "cache_control" in b]
    marks += [t for t in kwargs.get("tools", []) if "cache_control" in t]
    assert len(marks) == 2
    assert plan.message_indices(p) == (0, len(p.messages) - 2)  # the system prompt, the last history message
    assert kwargs["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert kwargs["messages"][-2]["content"][-1]["cache_control"] == {"type": "ephemeral"}  # the last history turn
    assert "cache_control" not in kwargs["messages"][-1]["content"][-1]  # the per-turn query stays unmarked
    assert "CachePlan" in plan._repr_html_() and "breakpoints" in str(plan)


def test_anthropic_plan_respects_the_model_minimum() -> None:
    system = _text(2500)  # ~2.5-3k tokens: over Sonnet's 1024, under Haiku 4.5's 4096
    sonnet = Assembler("claude-sonnet-4-5").assemble(query="q", system=system)
    haiku = Assembler("claude-haiku-4-5").assemble(query="q", system=system)
    assert [b.section for b in plan_anthropic(sonnet).breakpoints] == ["system"]
    haiku_plan = plan_anthropic(haiku)
    assert haiku_plan.breakpoints == ()
    assert any("below claude-haiku-4-5's minimum of 4096" in n for n in haiku_plan.notes)
    tiny = Assembler("claude-sonnet-4-5").assemble(query="q", system="Be brief.")
    assert plan_anthropic(tiny).breakpoints == ()


def test_anthropic_ttls_follow_reuse_and_stay_ordered(claude: Assembler) -> None:
    p = claude.assemble(query="q", system=_text(1500), history=_conversation(6))
    # the static prefix is shared by many sessions every 20 minutes; the conversation moves every 20 minutes
    slow = plan_anthropic(p, remaining_calls=6, interval_s=1200, static_interval_s=1200)
    assert [b.ttl for b in slow.breakpoints] == ["1h", "1h"]
    # static part reused every 20 minutes across sessions, conversation turns every 30 seconds
    mixed = plan_anthropic(p, remaining_calls=6, interval_s=30, static_interval_s=1200)
    assert [b.ttl for b in mixed.breakpoints] == ["1h", "5m"]
    # a conversation turn every 20 minutes, static part hot: 5m for the static part would have to follow a 1h mark
    inverted = plan_anthropic(p, remaining_calls=6, interval_s=1200, static_interval_s=30)
    assert [b.ttl for b in inverted.breakpoints] == ["1h", "1h"]
    assert any("TTL raised" in n for n in inverted.notes)
    last = plan_anthropic(p, remaining_calls=0)
    assert [b.ttl for b in last.breakpoints] == ["5m", "5m"]  # marks still read what earlier calls cached
    assert plan_anthropic(p, remaining_calls=0, may_be_cached=False).breakpoints == ()
    with pytest.raises(InvalidInputError, match="Anthropic"):
        plan_anthropic(Assembler("gpt-4o").assemble(query="q", system="s"))
    with pytest.raises(InvalidInputError, match="gaps"):
        plan_anthropic(p, remaining_calls=2, interval_s=[1.0])


@settings(max_examples=max(EXAMPLES // 5, 10), deadline=None)
@given(
    system_words=st.integers(0, 3000),
    examples=st.integers(0, 3),
    memory_words=st.integers(0, 800),
    turns=st.integers(0, 30),
    model=st.sampled_from(["claude-sonnet-4-5", "claude-haiku-4-5", "claude-3-5-haiku"]),
    interval=st.sampled_from([10.0, 600.0, 5000.0]),
)
def test_anthropic_plans_are_always_valid(
    system_words: int, examples: int, memory_words: int, turns: int, model: str, interval: float
) -> None:
    asm = Assembler(model)
    ex = [m for i in range(examples) for m in (Message.user(_text(40, i)), Message.assistant(_text(40, i + 2)))]
    p = asm.assemble(
        query="q",
        system=_text(system_words) or None,
        tools=[TOOL],
        examples=ex,
        memory=_text(memory_words, 5) or None,
        history=_conversation(turns, 25),
    )
    rules = rules_for(model)
    plan = plan_anthropic(p, remaining_calls=4, interval_s=interval)
    assert len(plan.breakpoints) <= 4
    counter = get_chat_counter(model)
    margin = counter.tokenizer.error_margin
    ttls = [rules.ttls_s[b.ttl] for b in plan.breakpoints]
    assert ttls == sorted(ttls, reverse=True)  # longer TTLs first
    segs = segments(p)
    for b in plan.breakpoints:
        assert b.prefix_tokens * (1 - margin) / (1 + margin) >= rules.min_cacheable_tokens
        assert segs[b.segment_index].stability != "turn"
    kwargs = plan.apply(p)
    n_marks = sum("cache_control" in b for t in kwargs["messages"] for b in t["content"])
    n_marks += sum("cache_control" in b for b in kwargs.get("system") or [] if isinstance(b, dict))
    n_marks += sum("cache_control" in t for t in kwargs.get("tools", []))
    assert n_marks == len(plan.breakpoints)


# ----------------------------------------------------------------- OpenAI planner
def test_openai_plan_sets_a_stable_cache_key_and_rounds(asm: Assembler) -> None:
    turn1 = asm.assemble(query="q1", system=_text(1500), tools=[TOOL])
    turn2 = asm.assemble(
        query="q2", system=_text(1500), tools=[TOOL], history=[Message.user("q1"), Message.assistant("a")]
    )
    p1, p2 = plan_openai(turn1), plan_openai(turn2)
    assert p1.prompt_cache_key == p2.prompt_cache_key and p1.prompt_cache_key.startswith("ctxkit-")
    info = prefix_info(turn2)
    assert p2.cacheable_tokens == info.tokens - info.tokens % 128
    assert plan_openai(turn1, cache_key="user-42").prompt_cache_key == "user-42"
    kwargs = p2.apply(turn2)
    assert kwargs["prompt_cache_key"] == p2.prompt_cache_key and "prompt_cache_retention" not in kwargs
    small = plan_openai(asm.assemble(query="q", system="short"))
    assert small.cacheable_tokens == 0 and "1024-token minimum" in small.notes[0]
    gpt5 = Assembler("gpt-5").assemble(query="q", system=_text(1500))
    assert plan_openai(gpt5, remaining_calls=3, interval_s=3600).apply(gpt5)["prompt_cache_retention"] == "24h"
    assert plan_cache(turn2).provider == "openai"


def test_openai_explicit_breakpoints_where_supported(asm: Assembler) -> None:
    p = asm.assemble(query="q", system=_text(1500), history=[Message.user("u"), Message.assistant("a")])
    rules = rules_for("gpt-5.6")
    plan = plan_openai(p, rules=rules, prices=CachePrices.openai(2.0, 0.2, 8.0, write=2.5))
    assert [b.section for b in plan.breakpoints] == ["system", "history"]
    kwargs = plan.apply(p)
    part = kwargs["messages"][0]["content"][0]
    assert part["prompt_cache_breakpoint"] == {"mode": "explicit"} and part["text"] == p.messages[0].content


# ----------------------------------------------------------------- compaction vs cache
def test_compaction_decision_follows_remaining_turns() -> None:
    args = {
        "kept_tokens": 3000,
        "history_tokens": 10_000,
        "compacted_tokens": 4000,
        "tokens_per_turn": 500,
        "prices": SONNET_PRICES,
        "rules": SONNET,
    }
    one = decide_compaction(remaining_turns=1, **args)
    assert not one.compact and one.savings < 0  # writing 4k at 1.25x costs more than reading 10k at 0.1x
    many = decide_compaction(remaining_turns=30, **args)
    assert many.compact and many.savings > 0 and bool(many)
    t = many.breakeven_turns
    assert t is not None and 1 < t <= 30
    assert decide_compaction(remaining_turns=t, **args).compact
    assert not decide_compaction(remaining_turns=t - 1, **args).compact
    # no cache discount at all: a shorter prompt is cheaper from the first turn
    flat = CachePrices(input=3.0, cache_read=3.0, cache_write={"5m": 3.0})
    assert decide_compaction(remaining_turns=1, **{**args, "prices": flat}).compact
    never = decide_compaction(remaining_turns=50, **{**args, "compacted_tokens": 10_000})
    assert not never.compact and never.breakeven_turns is None
    with pytest.raises(InvalidInputError):
        decide_compaction(remaining_turns=-1, **args)


def test_compaction_gate_reads_the_prompt(claude: Assembler) -> None:
    p = claude.assemble(query="q", system=_text(1500), memory=_text(200), history=_conversation(40, 80))
    gate = CacheAwareCompaction("claude-sonnet-4-5", remaining_turns=40, tokens_per_turn=300)
    assert isinstance(gate, CompactionGate)
    decision = gate.decide(p, compacted_tokens=500)
    segs = segments(p)
    rewrite = sum(s.tokens for s in segs if s.section in ("memory", "history"))
    assert decision.compact and str(decision).startswith("compact now")
    assert gate.allow(p, compacted_tokens=500)
    assert not gate.allow(p, compacted_tokens=rewrite)
    # one turn left: writing half the history at 1.25x costs more than reading all of it at 0.1x
    assert not CacheAwareCompaction("claude-sonnet-4-5", remaining_turns=1).allow(p, compacted_tokens=rewrite // 2)
