"""Issue 14, assembly side: natural section settings never hit an assert, and exact packing has a size guard."""

from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctxkit import Assembler, Budget, Chunk, Message, SectionBudget, ToolSpec
from ctxkit.assembly.packing import EXACT_MAX_CELLS, knapsack_pack, pack
from ctxkit.errors import BudgetError, InvalidInputError
from ctxkit.tokenizers._tiktoken import TiktokenTokenizer

WEATHER = ToolSpec(
    name="get_weather",
    description="Weather for a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string", "description": "The city."}}},
)


def _recount(p: object) -> int:
    """OpenAI's documented message accounting, with an o200k tokenizer that shares no cache with ctxkit."""
    fresh = TiktokenTokenizer("o200k_base")
    msgs = p.messages  # type: ignore[attr-defined]
    return 3 + sum(3 + fresh.count(m.role) + fresh.count(m.content) for m in msgs)


# --------------------------------------------------------------------------- non-required sections
def test_a_non_required_system_prompt_is_kept_when_it_fits() -> None:
    budget = Budget.for_model("gpt-4o", max_input_tokens=1000, sections={"system": SectionBudget(priority=100)})
    p = Assembler("gpt-4o", budget).assemble(system="Answer briefly.", query="What is 2+2?")  # was: AssertionError
    assert [m.role for m in p.messages] == ["system", "user"] and p.audit == ()
    assert _recount(p) == p.total_tokens <= 1000


def test_a_non_required_system_prompt_that_does_not_fit_is_dropped_with_an_audit_record() -> None:
    budget = Budget.for_model("gpt-4o", max_input_tokens=300, sections={"system": {"required": False}})
    p = Assembler("gpt-4o", budget).assemble(system="Be thorough. " * 200, query="What is 2+2?")
    assert [m.role for m in p.messages] == ["user"]
    assert [(a.section, a.action) for a in p.audit] == [("system", "dropped")]
    assert p.audit[0].tokens > 300 and "not required" in p.audit[0].reason
    assert p.sections["system"].used == 0 and _recount(p) == p.total_tokens <= 300
    # required (the default), the same system prompt is an error, not a silent drop
    with pytest.raises(BudgetError, match="system"):
        Assembler("gpt-4o", Budget.for_model("gpt-4o", max_input_tokens=300)).assemble(
            system="Be thorough. " * 200, query="What is 2+2?"
        )


def test_non_required_tools_are_kept_or_dropped_whole() -> None:
    fits = Budget.for_model("gpt-4o", max_input_tokens=1000, sections={"tools": {"required": False}})
    p = Assembler("gpt-4o", fits).assemble(tools=[WEATHER], query="Weather in Paris?")
    assert p.tools == (WEATHER,) and p.audit == ()
    tight = Budget.for_model("gpt-4o", max_input_tokens=20, sections={"tools": {"required": False}})
    p = Assembler("gpt-4o", tight).assemble(tools=[WEATHER], query="Weather in Paris?")
    assert p.tools == () and [(a.section, a.action) for a in p.audit] == [("tools", "dropped")]
    assert Assembler("gpt-4o", tight).counter.count_messages(p.messages) == p.total_tokens <= 20


def test_a_non_required_query_is_refused_when_the_budget_is_built() -> None:
    with pytest.raises(InvalidInputError, match="'query' section must be required"):
        Budget.for_model("gpt-4o", max_input_tokens=1000, sections={"query": {"required": False}})
    with pytest.raises(InvalidInputError, match="required=True"):
        Budget.for_model("gpt-4o", sections={"query": SectionBudget(priority=90, required=False)})
    with pytest.raises(InvalidInputError, match="'query' section must be required"):
        Budget(context_window=1000, sections={"query": SectionBudget(priority=90, required=False)})
    assert Budget.for_model("gpt-4o", sections={"query": SectionBudget(priority=90, required=True)})


def test_a_section_given_overrides_only_the_settings_it_names() -> None:
    """SectionBudget(priority=...) for system or query keeps their default required=True (the issue's setting)."""
    for budget in (
        Budget.for_model("gpt-4o", max_input_tokens=1000, sections={"system": SectionBudget(priority=100)}),
        Budget(
            context_window=1000, sections={"system": SectionBudget(priority=100), "query": SectionBudget(priority=5)}
        ),
    ):
        assert budget.sections["system"].required and budget.sections["query"].required
        assert budget.sections["history"] == SectionBudget(priority=60)  # untouched defaults
    b = Budget.for_model("gpt-4o", sections={"memory": SectionBudget(min_tokens=10)})
    assert b.sections["memory"] == SectionBudget(priority=70, share=0.15, min_tokens=10)
    p = Assembler(
        "gpt-4o", Budget.for_model("gpt-4o", max_input_tokens=1000, sections={"system": SectionBudget(priority=100)})
    )
    prompt = p.assemble(system="You are terse.", query="Hi?")
    assert prompt.messages[0].content == "You are terse." and prompt.total_tokens <= 1000


_SPEC = st.builds(
    SectionBudget,
    priority=st.integers(0, 120),
    min_tokens=st.integers(0, 60),
    max_tokens=st.one_of(st.none(), st.integers(60, 2000)),
    share=st.one_of(st.none(), st.floats(0.05, 1.0)),
    required=st.booleans(),
)


@given(
    system_spec=_SPEC,
    tools_spec=_SPEC,
    retrieved_spec=_SPEC,
    system_words=st.integers(0, 400),
    with_tools=st.booleans(),
    n_chunks=st.integers(0, 6),
    n_turns=st.integers(0, 6),
    limit=st.integers(60, 1500),
)
def test_random_section_settings_assemble_or_raise_a_budget_error(
    system_spec: SectionBudget,
    tools_spec: SectionBudget,
    retrieved_spec: SectionBudget,
    system_words: int,
    with_tools: bool,
    n_chunks: int,
    n_turns: int,
    limit: int,
) -> None:
    sections = {"system": system_spec, "tools": tools_spec, "retrieved": retrieved_spec}
    if sum(s.min_tokens for s in sections.values()) > limit:  # floors over the limit: refused when built
        with pytest.raises(InvalidInputError, match="over the input limit"):
            Budget.for_model("gpt-4o", max_input_tokens=limit, output_reserve=0, sections=sections)
        return
    budget = Budget.for_model("gpt-4o", max_input_tokens=limit, output_reserve=0, sections=sections)
    history = [m for i in range(n_turns) for m in (Message.user(f"q{i} " * 20), Message.assistant(f"a{i} " * 20))]
    chunks = [Chunk(id=f"c{i}", text=f"fact {i} " * 30, score=1.0 / (i + 1)) for i in range(n_chunks)]
    try:
        p = Assembler("gpt-4o", budget).assemble(
            system="Rule. " * system_words or None,
            tools=[WEATHER] if with_tools else (),
            history=history,
            chunks=chunks,
            query="What is the first fact?",
        )
    except BudgetError:  # a required section that cannot fit: the typed error is the contract
        return
    assert p.total_tokens <= limit
    assert Assembler("gpt-4o", budget).counter.count_messages(p.messages, p.tools) == p.total_tokens
    kept_system = any(m.role == "system" for m in p.messages)
    if system_words and system_spec.required:
        assert kept_system
    if system_words and not kept_system:
        assert any(a.section == "system" and a.action == "dropped" for a in p.audit)
    if with_tools and not p.tools:
        assert not tools_spec.required and any(a.section == "tools" for a in p.audit)


# --------------------------------------------------------------------------- exact packing guard
def test_forced_exact_packing_refuses_a_table_over_the_limit_before_allocating_it() -> None:
    # 600 chunks of ~210 tokens that do not all fit 110,000 tokens: a 66-million-cell table
    chunks = [Chunk(id=f"c{i}", text=f"fact number {i} about topic {i % 17}. " * 30, score=1.0) for i in range(600)]
    budget = Budget(context_window=110_000)
    asm = Assembler("gpt-4o", budget, exact_packing=True)
    tracemalloc.start()
    try:
        with pytest.raises(InvalidInputError, match=r"exact packing of 600 items .* over the limit of 64,000,000"):
            asm.assemble(query="q", chunks=chunks)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < EXACT_MAX_CELLS // 4  # the table was never allocated (was: +424 MB for 600 chunks)
    # the default (exact only where cheap) packs the same input greedily, within the budget
    p = Assembler("gpt-4o", budget).assemble(query="q", chunks=chunks)
    assert 0 < p.sections["retrieved"].items_kept < 600 and p.total_tokens <= budget.input_limit


def test_the_exact_packing_limit_is_the_callers_to_set() -> None:
    values, costs = [3.0, 2.0, 2.0], [4, 3, 3]
    with pytest.raises(InvalidInputError, match="over the limit of 10"):
        pack(values, costs, 6, exact=True, max_cells=10)
    with pytest.raises(InvalidInputError, match="over the limit"):
        knapsack_pack(values, costs, 6, max_cells=20)
    assert pack(values, costs, 6, exact=True, max_cells=21) == [1, 2]  # exact beats greedy's [0]
    chunks = [Chunk(id=f"c{i}", text=f"fact {i} " * (10 + 5 * i), score=1.0 + i) for i in range(5)]
    budget = Budget.for_model("gpt-4o", max_input_tokens=120, output_reserve=0)
    with pytest.raises(InvalidInputError, match="exact_packing_max_cells"):
        Assembler("gpt-4o", budget, exact_packing=True, exact_packing_max_cells=50).assemble(query="q", chunks=chunks)
    p = Assembler("gpt-4o", budget, exact_packing=True, exact_packing_max_cells=10_000).assemble(
        query="q", chunks=chunks
    )
    assert p.total_tokens <= 120
    with pytest.raises(InvalidInputError, match="positive int"):
        Assembler("gpt-4o", exact_packing_max_cells=0)


def test_chat_counters_refuse_a_bare_string_for_messages() -> None:
    from ctxkit import get_chat_counter

    for model in ("gpt-4o", "claude-sonnet-4-5"):
        counter = get_chat_counter(model)
        with pytest.raises(InvalidInputError, match=r"count_messages\(messages\) takes a collection"):
            counter.count_messages("hello")  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match=r"messages\[0\] is a dict"):
            counter.count_messages([{"role": "user", "content": "hi"}])  # type: ignore[list-item]
        assert counter.count_messages([Message.user("hi")]) > 0
