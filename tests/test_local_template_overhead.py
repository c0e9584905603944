"""Issue 14: the local model is charged for what its chat template renders for the actual messages.

SmolLM2's template inserts a default system prompt (about 21 tokens) only when the list
does not start with a system message. Before, that default was charged even when the
caller supplied a system prompt, so a 24-token request needed a budget of 45.

Only the GGUF vocabulary is loaded (no weights, no forward pass). The reference count
renders the template with Jinja2 here, independently of ctxkit's formatter, and
tokenizes it with the model's own vocabulary.
"""

from __future__ import annotations

from typing import Any

import pytest

from ctxkit import Assembler, Budget, Message, get_chat_counter
from ctxkit.errors import BudgetError
from ctxkit.tokenizers.chat import TemplateChatCounter, base_tokens_for

pytest.importorskip("llama_cpp")
jinja2_sandbox = pytest.importorskip("jinja2.sandbox")

MODEL = "smollm2-135m-instruct"

CONVERSATIONS = [
    [Message.system("Answer briefly."), Message.user("What is the capital of France?")],
    [Message.user("What is the capital of France?")],
    [Message.system("s"), Message.user("a " * 40), Message.assistant("b " * 10), Message.user("c")],
    [Message.user("Hi"), Message.assistant("Hello!"), Message.user("Ünïcödé 🧪 漢字")],
]


@pytest.fixture(scope="module")
def counter() -> TemplateChatCounter:
    c = get_chat_counter(MODEL)
    assert isinstance(c, TemplateChatCounter)
    return c


def _reference_count(counter: TemplateChatCounter, messages: list[Message]) -> int:
    llama: Any = counter.gguf.llama
    meta = llama.metadata
    env = jinja2_sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    prompt = env.from_string(meta["tokenizer.chat_template"]).render(
        messages=[{"role": m.role, "content": m.content} for m in messages],
        add_generation_prompt=True,
        bos_token=llama._model.token_get_text(llama.token_bos()),
        eos_token=llama._model.token_get_text(llama.token_eos()),
    )
    add_bos = meta.get("tokenizer.ggml.add_bos_token", "true") == "true"
    return len(llama.tokenize(prompt.encode("utf-8"), add_bos=add_bos, special=True))


@pytest.mark.parametrize("messages", CONVERSATIONS, ids=["system+user", "user", "multi-turn", "no-system-unicode"])
def test_count_and_planned_overhead_equal_the_rendered_template(
    counter: TemplateChatCounter, messages: list[Message]
) -> None:
    real = _reference_count(counter, messages)
    assert counter.count_messages(messages) == real
    planned = base_tokens_for(counter, messages[0].role) + sum(counter.message_tokens(m) for m in messages)
    assert planned == real
    assert counter.base_tokens >= base_tokens_for(counter, messages[0].role)  # the unknown-first-role bound


def test_a_prompt_with_its_own_system_prompt_fits_a_budget_of_exactly_its_size(counter: TemplateChatCounter) -> None:
    system, query = "Answer briefly.", "What is the capital of France?"
    real = _reference_count(counter, [Message.system(system), Message.user(query)])
    assert real < counter.base_tokens + 20  # the default system prompt alone would not fit beside it
    exact = Budget.for_model(MODEL, max_input_tokens=real, output_reserve=64)
    p = Assembler(MODEL, exact).assemble(system=system, query=query)  # was: SectionOverBudgetError
    assert p.total_tokens == real == _reference_count(counter, list(p.messages))
    one_less = Budget.for_model(MODEL, max_input_tokens=real - 1, output_reserve=64)
    with pytest.raises(BudgetError):
        Assembler(MODEL, one_less).assemble(system=system, query=query)


def test_without_a_system_prompt_the_default_one_is_charged(counter: TemplateChatCounter) -> None:
    query = "What is the capital of France?"
    real = _reference_count(counter, [Message.user(query)])
    assert real > _reference_count(counter, [Message.system("x"), Message.user(query)])
    p = Assembler(MODEL, Budget.for_model(MODEL, max_input_tokens=real, output_reserve=64)).assemble(query=query)
    assert p.total_tokens == real
    with pytest.raises(BudgetError):
        Assembler(MODEL, Budget.for_model(MODEL, max_input_tokens=real - 1, output_reserve=64)).assemble(query=query)
