"""Budgeted assembly: never over budget, structure intact, audit complete, packing optimal."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from ctxkit import (
    Assembler,
    Budget,
    Chunk,
    InvalidInputError,
    Message,
    SectionBudget,
    SectionOverBudgetError,
    ToolCall,
    ToolSpec,
)
from ctxkit.assembly import greedy_pack, group_turns, knapsack_pack, pack
from ctxkit.tokenizers import OpenAIChatCounter
from ctxkit.tokenizers._tiktoken import TiktokenTokenizer

WEATHER = ToolSpec(
    name="get_weather",
    description="Get the weather for a city.",
    parameters={
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "City name."},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city"],
    },
)

# ----------------------------------------------------------------- strategies
texts = st.one_of(
    st.just(""),
    st.text(max_size=80),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=400),
    st.builds(lambda w, n: (w + " ") * n, st.sampled_from(["lorem", "漢字", "🧪", "x1=2;"]), st.integers(0, 600)),
)


@st.composite
def histories(draw: st.DrawFn) -> list[Message]:
    out: list[Message] = []
    ids = itertools.count()
    for _ in range(draw(st.integers(0, 12))):
        out.append(Message.user(draw(texts), pinned=draw(st.integers(0, 9)) == 0))
        if draw(st.booleans()):
            n_calls = draw(st.integers(1, 3))  # parallel tool calls
            calls = [
                ToolCall(
                    id=f"call_{next(ids)}",
                    name="get_weather",
                    arguments=json.dumps({"city": draw(st.text(max_size=10))}),
                )
                for _ in range(n_calls)
            ]
            out.append(Message.assistant(draw(texts), tool_calls=calls))
            results = [Message.tool(draw(texts), c.id) for c in calls]
            out.extend(draw(st.permutations(results)))
        out.append(Message.assistant(draw(texts)))
    return out


short_texts = st.one_of(st.just(""), st.text(max_size=120), st.text(alphabet=st.characters(codec="utf-8"), max_size=60))

chunks_st = st.lists(
    st.builds(
        Chunk,
        text=texts,
        score=st.floats(min_value=-1, max_value=10, allow_nan=False),
        id=st.uuids().map(str),
        doc_id=st.sampled_from(["a", "b", "c"]),
        position=st.integers(0, 50),
    ),
    max_size=60,
)


@given(
    system=short_texts,
    tools=st.sampled_from([(), (WEATHER,)]),
    history=histories(),
    chunks=chunks_st,
    memory=st.one_of(st.none(), texts),
    examples=st.sampled_from([(), (Message.user("2+2?"), Message.assistant("4"))]),
    query=st.one_of(short_texts, texts),
    limit=st.one_of(st.integers(10, 400), st.integers(400, 6000)),
    order=st.sampled_from(["score", "source", "edges"]),
    truncate_chunks=st.booleans(),
)
def test_never_over_budget_and_structure_intact(
    system: str,
    tools: tuple[ToolSpec, ...],
    history: list[Message],
    chunks: list[Chunk],
    memory: str | None,
    examples: tuple[Message, ...],
    query: str,
    limit: int,
    order: str,
    truncate_chunks: bool,
) -> None:
    budget = Budget.for_model("gpt-4o", max_input_tokens=limit, output_reserve=1000)
    asm = Assembler("gpt-4o", budget, chunk_order=order, truncate_chunks=truncate_chunks)  # type: ignore[arg-type]
    try:
        prompt = asm.assemble(
            system=system, tools=tools, history=history, chunks=chunks, memory=memory, examples=examples, query=query
        )
    except SectionOverBudgetError as err:
        assert err.needed > err.room  # noqa: PT017 - a valid outcome, checked not expected
        event("mandatory section over budget")
        return
    event(f"assembled; dropped or truncated {'some' if prompt.audit else 'none'}")
    event(f"verification shed items: {any('shed after' in a.reason for a in prompt.audit)}")
    # never over budget, by an independent exact recount of the rendered request
    payload = prompt.to_openai()
    fresh = OpenAIChatCounter(TiktokenTokenizer("o200k_base"))  # its own, empty count cache
    recount = fresh.count_messages([Message.from_openai(m) for m in payload["messages"]], tools)
    assert recount == prompt.total_tokens <= limit
    # tool calls and results stay paired, in order
    group_turns([m for m, s in zip(prompt.messages, prompt.section_of, strict=True) if s == "history"])
    # pinned messages survive unaltered
    for m in history:
        if m.pinned:
            assert m in prompt.messages
    # every offered chunk is either in the prompt or in the audit trail
    final = prompt.messages[-1].content
    for c in chunks:
        in_prompt = f"\n{c.text}\n</document>" in final
        audited = any(a.item == c.id for a in prompt.audit)
        assert in_prompt or audited or not c.text.strip() or any(o.text == c.text for o in chunks if o is not c)
    # system and query are never altered
    if system:
        assert prompt.messages[0].content == system
    assert prompt.messages[-1].content.endswith(query)


# ----------------------------------------------------------------- packing
@given(
    st.lists(st.tuples(st.floats(0, 100, allow_nan=False), st.integers(0, 40)), max_size=10),
    st.integers(0, 120),
)
def test_knapsack_is_optimal_and_greedy_feasible(items: list[tuple[float, int]], cap: int) -> None:
    values = [v for v, _ in items]
    costs = [c for _, c in items]
    best = 0.0
    for r in range(len(items) + 1):
        for combo in itertools.combinations(range(len(items)), r):
            if sum(costs[i] for i in combo) <= cap:
                best = max(best, sum(values[i] for i in combo))
    chosen = knapsack_pack(values, costs, cap)
    assert sum(costs[i] for i in chosen) <= cap
    assert sum(values[i] for i in chosen) == pytest.approx(best)
    g = greedy_pack(values, costs, cap)
    assert sum(costs[i] for i in g) <= cap
    p = pack(values, costs, cap)
    assert sum(values[i] for i in p) == pytest.approx(best)


def test_pack_beats_greedy_where_greedy_is_suboptimal() -> None:
    # density favours the small item, but the two large ones fill the room better
    values, costs = [6.0, 10.0, 10.0], [1, 10, 10]
    assert sorted(knapsack_pack(values, costs, 20)) == [1, 2]
    assert sum(values[i] for i in greedy_pack(values, costs, 20)) == 16.0
    assert sorted(pack(values, costs, 20)) == [1, 2]


# ----------------------------------------------------------------- behaviour
def _asm(limit: int, **kw: object) -> Assembler:
    return Assembler("gpt-4o", Budget.for_model("gpt-4o", max_input_tokens=limit), **kw)  # type: ignore[arg-type]


def test_mandatory_section_error_names_section_need_and_room() -> None:
    with pytest.raises(SectionOverBudgetError) as info:
        _asm(50).assemble(system="word " * 200, query="q")
    err = info.value
    assert err.section == "system"
    assert err.needed > 200 and 0 <= err.room < 50
    assert "system" in str(err) and str(err.needed) in str(err) and "raise" in str(err)


def test_history_keeps_newest_whole_turns_and_audits_the_rest() -> None:
    history = [m for i in range(30) for m in (Message.user(f"q{i} " * 20), Message.assistant(f"a{i} " * 20))]
    p = _asm(600).assemble(history=history, query="now?")
    kept = [m for m, s in zip(p.messages, p.section_of, strict=True) if s == "history"]
    assert kept == history[-len(kept) :]  # a contiguous suffix
    assert kept[0].role == "user"
    dropped = [a for a in p.audit if a.section == "history"]
    assert len(dropped) == (len(history) - len(kept)) // 2
    assert all("newest turns" in a.reason for a in dropped)
    assert p.total_tokens <= 600


def test_pinned_turn_is_kept_even_when_old() -> None:
    history = [Message.user("remember: the code is 7421", pinned=True), Message.assistant("noted")]
    history += [m for i in range(30) for m in (Message.user(f"q{i} " * 20), Message.assistant(f"a{i} " * 20))]
    p = _asm(500).assemble(history=history, query="what is the code?")
    assert history[0] in p.messages and history[1] in p.messages


def test_invalid_tool_structure_is_rejected_with_a_fix() -> None:
    call = ToolCall(id="c1", name="get_weather", arguments="{}")
    with pytest.raises(InvalidInputError, match="no results"):
        _asm(1000).assemble(history=[Message.user("x"), Message.assistant(tool_calls=[call])], query="q")
    with pytest.raises(InvalidInputError, match="orphaned"):
        _asm(1000).assemble(history=[Message.user("x"), Message.tool("r", "c9")], query="q")


def test_chunks_packed_by_value_ordered_and_deduplicated() -> None:
    chunks = [
        Chunk(text=f"fact number {i} " * 10, score=float(i), id=f"c{i}", doc_id=f"d{i % 2}", position=i)
        for i in range(10)
    ]
    chunks.append(Chunk(text=chunks[9].text, score=9.0, id="dup"))
    p = _asm(300).assemble(chunks=chunks, query="q")
    final = p.messages[-1].content
    kept_ids = [c.id for c in chunks if f'id="{c.id}"' in final]
    assert "c9" in kept_ids and "dup" not in kept_ids
    assert any(a.item == "dup" and "duplicate" in a.reason for a in p.audit)
    assert p.sections["retrieved"].items_kept == len(kept_ids)
    # score order: best first
    assert final.index('id="c9"') < final.index(f'id="{kept_ids[0]}"') or kept_ids[0] == "c9"
    # edges: best first, second best last
    e = _asm(300, chunk_order="edges").assemble(chunks=chunks[:10], query="q").messages[-1].content
    positions = sorted((e.index(f'id="c{i}"'), i) for i in range(10) if f'id="c{i}"' in e)
    assert positions[0][1] == 9 and positions[-1][1] == 8
    # source: by document then position
    s = _asm(2000, chunk_order="source").assemble(chunks=chunks[:10], query="q").messages[-1].content
    order = [i for _, i in sorted((s.index(f'id="c{i}"'), i) for i in range(10))]
    assert order == [0, 2, 4, 6, 8, 1, 3, 5, 7, 9]


def test_memory_is_truncated_with_an_audit_record() -> None:
    budget = Budget.for_model("gpt-4o", max_input_tokens=400, sections={"memory": {"max_tokens": 60}})
    p = Assembler("gpt-4o", budget).assemble(memory="older facts " * 200, query="q")
    assert p.sections["memory"].used <= 60
    rec = [a for a in p.audit if a.section == "memory"]
    assert rec and rec[0].action == "truncated" and rec[0].kept_tokens <= 60


def test_section_caps_floors_and_shares() -> None:
    budget = Budget.for_model(
        "gpt-4o",
        max_input_tokens=1000,
        sections={"history": {"share": 0.2}, "retrieved": {"min_tokens": 300}},
    )
    history = [m for i in range(40) for m in (Message.user(f"q{i} " * 10), Message.assistant(f"a{i} " * 10))]
    chunks = [Chunk(text=f"c{i} " * 40, score=1.0, id=f"c{i}") for i in range(20)]
    p = Assembler("gpt-4o", budget).assemble(history=history, chunks=chunks, query="q")
    assert p.sections["history"].used <= 200
    assert p.sections["retrieved"].used >= 300 - 45  # floor reserved (minus one chunk's granularity)
    with pytest.raises(ValueError, match="min_tokens"):
        SectionBudget(min_tokens=10, max_tokens=5)
    with pytest.raises(ValueError, match="output_reserve"):
        Budget(context_window=100, output_reserve=100)
    with pytest.raises(InvalidInputError, match="unknown section"):
        Budget.for_model("gpt-4o", sections={"nope": {}})


def test_renders_to_openai_and_anthropic() -> None:
    call = ToolCall(id="toolu_1", name="get_weather", arguments='{"city": "Paris"}')
    history = [
        Message.user("Weather in Paris?"),
        Message.assistant("Checking.", tool_calls=[call]),
        Message.tool("18C, sunny", "toolu_1"),
        Message.assistant("It is 18C and sunny."),
    ]
    p = _asm(4000).assemble(
        system="Be brief.",
        tools=[WEATHER],
        history=history,
        memory="User likes Paris.",
        chunks=[Chunk(text="Paris is in France.", score=1, id="k1")],
        query="And tomorrow?",
    )
    o = p.to_openai()
    assert o["messages"][0] == {"role": "system", "content": "Be brief."}
    assert o["tools"][0]["function"]["name"] == "get_weather"
    assert o["messages"][-1]["role"] == "user" and "Paris is in France." in o["messages"][-1]["content"]
    a = p.to_anthropic()
    assert a["system"].startswith("Be brief.") and "User likes Paris." in a["system"]
    roles = [t["role"] for t in a["messages"]]
    assert roles[0] == "user" and all(x != y for x, y in itertools.pairwise(roles))
    blocks = [b for t in a["messages"] for b in t["content"]]
    use = next(b for b in blocks if b["type"] == "tool_use")
    res = next(b for b in blocks if b["type"] == "tool_result")
    assert use["input"] == {"city": "Paris"} and res["tool_use_id"] == use["id"]
    assert a["tools"][0]["input_schema"]["required"] == ["city"]
    html = p._repr_html_()
    assert "<table>" in html and "retrieved" in html
    assert "total" in p.section_table()


def test_claude_budget_uses_conservative_estimate() -> None:
    budget = Budget.for_model("claude-sonnet-4", max_input_tokens=500)
    p = Assembler("claude-sonnet-4", budget).assemble(
        chunks=[Chunk(text="essay text " * 50, score=1, id=f"e{i}") for i in range(10)], query="q"
    )
    assert p.tokens_exact is False
    assert p.total_tokens <= 500
