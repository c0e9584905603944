"""The assembler counts the final user message from its parts; the sum must equal a real count."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctxkit import Assembler, Budget, Chunk, Message
from ctxkit.tokenizers import OpenAIChatCounter, get_tokenizer
from ctxkit.tokenizers._tiktoken import TiktokenTokenizer

EXAMPLES = settings().max_examples  # the conftest profile (CTXKIT_HYPOTHESIS_EXAMPLES)

# text that stresses the pre-tokenizer at block edges: newlines, spaces, "<" and ">", slashes, digits
_edge = st.sampled_from(["\n", "\n\n", " ", "  \n", "<", ">", "</", "/", "\r\n", "\t", "9", "'s", "<document"])
_text = st.lists(st.one_of(st.text(max_size=40), _edge), max_size=8).map("".join)


def _fresh_counter(model: str) -> OpenAIChatCounter:
    """An exact counter with its own, empty cache: it tokenizes everything itself."""
    tok = get_tokenizer(model)
    assert isinstance(tok, TiktokenTokenizer)
    return OpenAIChatCounter(TiktokenTokenizer(tok.encoding))


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4"])
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    texts=st.lists(_text.filter(str.strip), min_size=1, max_size=6),
    ids=st.lists(st.one_of(st.just(""), _text), min_size=6, max_size=6),
    header=_text,
    query=_text,
    order=st.sampled_from(["score", "source", "edges"]),
)
def test_final_message_count_equals_a_real_count(
    model: str, texts: list[str], ids: list[str], header: str, query: str, order: str
) -> None:
    chunks = [Chunk(text=t, score=float(i + 1), id=ids[i], title=ids[-1 - i]) for i, t in enumerate(texts)]
    budget = Budget.for_model(model, max_input_tokens=100_000, output_reserve=0)
    asm = Assembler(model, budget, context_header=header, chunk_order=order)  # type: ignore[arg-type]
    prompt = asm.assemble(
        query=query, system="sys", history=[Message.user("hi"), Message.assistant("yo")], chunks=chunks
    )
    assert prompt.total_tokens == _fresh_counter(model).count_messages(prompt.messages)


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4"])
def test_budget_held_on_real_text_with_new_queries(model: str) -> None:
    paragraphs = [
        f"Paragraph {i}: " + "founders raise money from angels and investors. " * (i % 7 + 1) for i in range(40)
    ]
    chunks = [Chunk(text=p, score=1.0 + (i % 5), id=f"p{i}") for i, p in enumerate(paragraphs)]
    judge = _fresh_counter(model)
    for limit in (300, 1000, 2500):
        asm = Assembler(model, Budget.for_model(model, max_input_tokens=limit, output_reserve=0))
        for n in range(5):
            prompt = asm.assemble(query=f"How much should we raise? ({n})\n", system="Be brief.", chunks=chunks)
            exact = judge.count_messages(prompt.messages)
            assert exact == prompt.total_tokens
            assert exact <= limit
