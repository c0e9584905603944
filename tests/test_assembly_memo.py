"""A reused Assembler memoizes plans and prompts; every answer must equal a fresh assembler's, exactly.

The memo keys a request by the identity of its (frozen) inputs, the assembler's settings and the
token cache's generation; a new query of the same cost reuses the plan and is counted from its parts.
These tests drive one assembler through generated sequences of requests (same objects, new objects,
new queries whose text stresses the tokenizer at the context's edge, changed settings, cleared caches)
and compare each prompt with the one a brand-new assembler builds, and its total with a real count.
"""

from __future__ import annotations

import gc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctxkit import Assembler, Budget, Chunk, Message
from ctxkit.assembly.prompt import AssembledPrompt
from ctxkit.tokenizers import OpenAIChatCounter, get_tokenizer
from ctxkit.tokenizers._tiktoken import TiktokenTokenizer

EXAMPLES = settings().max_examples

_edge = st.sampled_from(["\n", "\n\n", " ", "<", ">", "</", "/", "\r\n", "9", "'s", "<document", "Question"])
_text = st.lists(st.one_of(st.text(max_size=30), _edge), max_size=6).map("".join)

MODEL = "gpt-4o"


def _judge() -> OpenAIChatCounter:
    tok = get_tokenizer(MODEL)
    assert isinstance(tok, TiktokenTokenizer)
    return OpenAIChatCounter(TiktokenTokenizer(tok.encoding))


def _same(a: AssembledPrompt, b: AssembledPrompt) -> None:
    assert a.messages == b.messages
    assert a.section_of == b.section_of
    assert a.sections == b.sections
    assert a.audit == b.audit
    assert a.total_tokens == b.total_tokens
    assert a.input_limit == b.input_limit


def _inputs(n_chunks: int, n_turns: int, seed: int) -> tuple[list[Message], list[Chunk]]:
    history: list[Message] = []
    for t in range(n_turns):
        history += [
            Message.user(f"question {seed}-{t} " * (t % 4 + 1)),
            Message.assistant(f"answer {t}. " * (t % 5 + 1)),
        ]
    chunks = [
        Chunk(text=f"fact {seed}-{i}: " + "money and founders " * (i % 6 + 1), score=float((i * 7) % 5 + 1), id=f"c{i}")
        for i in range(n_chunks)
    ]
    return history, chunks


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(
                ["same", "new_query", "twin", "twin", "new_history", "new_chunks", "clear_cache", "order", "budget"]
            ),
            _text,
        ),
        min_size=1,
        max_size=8,
    ),
    limit=st.integers(min_value=120, max_value=1500),
    n_chunks=st.integers(min_value=0, max_value=12),
    n_turns=st.integers(min_value=0, max_value=6),
)
def test_memoized_prompts_equal_fresh_ones(
    steps: list[tuple[str, str]], limit: int, n_chunks: int, n_turns: int
) -> None:
    budget = Budget.for_model(MODEL, max_input_tokens=limit, output_reserve=0, sections={"history": {"share": 0.4}})
    other = Budget.for_model(MODEL, max_input_tokens=limit + 97, output_reserve=0)
    asm = Assembler(MODEL, budget)
    history, chunks = _inputs(n_chunks, n_turns, 0)
    query = "How much should we raise?"
    judge = _judge()
    for n, (action, text) in enumerate(steps):
        if action == "new_query":
            query = text or "?"
        elif action == "twin":  # often the same cost as the last twin: the plan is reused, the text is new
            query = f"{text}{n % 10}"
        elif action == "new_history":
            history = [*history, Message.user(f"more {n}"), Message.assistant("ok")]
        elif action == "new_chunks":
            chunks = [*chunks[1:], Chunk(text=f"new fact {n} {text}", score=3.0, id=f"n{n}")]
        elif action == "clear_cache":
            asm.counter.tokenizer.cache.clear()  # type: ignore[attr-defined]
        elif action == "order":
            asm.chunk_order = "edges" if asm.chunk_order == "score" else "score"
        elif action == "budget":
            asm.budget = other if asm.budget is budget else budget
        fresh = Assembler(MODEL, asm.budget, chunk_order=asm.chunk_order)
        try:
            expected = fresh.assemble(query=query, system="Be brief.", history=history, chunks=chunks)
        except Exception as exc:  # the memoized assembler must fail the same way
            with pytest.raises(type(exc)):
                asm.assemble(query=query, system="Be brief.", history=history, chunks=chunks)
            continue
        got = asm.assemble(query=query, system="Be brief.", history=history, chunks=chunks)
        _same(got, expected)
        assert got.total_tokens == judge.count_messages(got.messages)
        assert got.total_tokens <= asm.budget.input_limit


def test_same_request_returns_the_same_prompt_and_a_new_query_reuses_the_plan() -> None:
    history, chunks = _inputs(30, 10, 1)
    asm = Assembler(MODEL, Budget.for_model(MODEL, max_input_tokens=1200, output_reserve=0))
    first = asm.assemble(query="What should founders do? (1)", system="s", history=history, chunks=chunks)
    assert asm.assemble(query="What should founders do? (1)", system="s", history=history, chunks=chunks) is first
    calls = 0
    original = asm._plan

    def counting_plan(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        return original(*args, **kwargs)  # type: ignore[arg-type]

    asm._plan = counting_plan  # type: ignore[method-assign]
    second = asm.assemble(query="What should founders do? (2)", system="s", history=history, chunks=chunks)
    assert calls == 0  # same cost, same inputs: the plan was reused
    assert second.messages[:-1] == first.messages[:-1]
    assert second.messages[-1].content.endswith("(2)")
    asm.assemble(
        query="A much longer question about what founders should do now?", system="s", history=history, chunks=chunks
    )
    assert calls == 1  # a different cost plans again


def test_a_cleared_token_cache_makes_the_next_call_cold() -> None:
    history, chunks = _inputs(20, 6, 2)
    asm = Assembler(MODEL, Budget.for_model(MODEL, max_input_tokens=900, output_reserve=0))
    first = asm.assemble(query="q", history=history, chunks=chunks)
    cache = asm.counter.tokenizer.cache  # type: ignore[attr-defined]
    cache.clear()
    again = asm.assemble(query="q", history=history, chunks=chunks)
    assert again is not first
    _same(again, first)
    assert cache.misses > 0  # counted again, not served from before the clear


def test_memo_holds_its_inputs_so_ids_are_never_reused() -> None:
    asm = Assembler(MODEL, Budget.for_model(MODEL, max_input_tokens=600, output_reserve=0))
    judge = _judge()
    for n in range(50):
        # a fresh list of fresh objects each time, dropped right after: without the memo keeping them alive,
        # CPython would hand their ids to the next ones and a stale plan could be served
        history = [Message.user(f"turn {n} " * (n % 9 + 1)), Message.assistant("ok " * (n % 4 + 1))]
        chunks = [Chunk(text=f"chunk {n}-{i} " * (i + n % 5 + 1), score=1.0 + i, id=f"c{i}") for i in range(4)]
        prompt = asm.assemble(query="same query", history=history, chunks=chunks)
        expected = Assembler(MODEL, asm.budget).assemble(query="same query", history=history, chunks=chunks)
        _same(prompt, expected)
        assert prompt.total_tokens == judge.count_messages(prompt.messages)
        del history, chunks, prompt
        gc.collect()


@pytest.mark.parametrize("lead", ["/", "\n", " ", "<", ">", "\r\n", "</document>", "9", ""])
def test_new_queries_of_the_same_cost_are_counted_exactly_at_the_context_edge(lead: str) -> None:
    """The final message is counted from its parts; a query that starts with what can merge with the
    last block's closing tag must still be counted exactly."""
    history, chunks = _inputs(12, 3, 3)
    asm = Assembler(MODEL, Budget.for_model(MODEL, max_input_tokens=100_000, output_reserve=0))
    judge = _judge()
    asm.assemble(query=f"{lead}question 0", history=history, chunks=chunks)
    planned = 0
    original = asm._plan

    def counting_plan(*args: object, **kwargs: object) -> object:
        nonlocal planned
        planned += 1
        return original(*args, **kwargs)  # type: ignore[arg-type]

    asm._plan = counting_plan  # type: ignore[method-assign]
    for n in range(1, 10):
        prompt = asm.assemble(query=f"{lead}question {n}", history=history, chunks=chunks)
        assert prompt.total_tokens == judge.count_messages(prompt.messages)
    assert planned == 0  # every one reused the plan (same cost), so the parts path is what was checked
