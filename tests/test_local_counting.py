"""The local model's message count equals the prompt tokens llama.cpp itself reports."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ctxkit import Assembler, Budget, Chunk, Message, get_chat_counter, get_tokenizer

llama_cpp = pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def llm() -> Iterator[Any]:
    from ctxkit.gguf import load_llama
    from ctxkit.tokenizers._gguf import default_gguf_path

    model, _ = load_llama(default_gguf_path(), weights="as-is", n_ctx=4096, feature="the reference", extra="local")
    yield model
    model.close()


CONVERSATIONS = [
    [Message.user("Hello there!")],
    [Message.system("You are terse."), Message.user("What is 2+2?"), Message.assistant("4"), Message.user("And 3+3?")],
    [Message.user("Ünïcödé 🧪 漢字 and <|im_end|> typed by a user")],
    [Message.system("s"), Message.user("a " * 300), Message.assistant("b " * 100), Message.user("c")],
]


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_count_equals_llama_cpp_prompt_tokens(llm: Any, messages: list[Message]) -> None:
    counter = get_chat_counter("smollm2-135m-instruct")
    reply = llm.create_chat_completion(messages=[m.to_openai() for m in messages], max_tokens=1)
    assert counter.count_messages(messages) == reply["usage"]["prompt_tokens"]
    # the additive estimate used while packing never undercounts
    assert counter.base_tokens + sum(counter.message_tokens(m) for m in messages) >= reply["usage"]["prompt_tokens"]


def test_gguf_tokenizer_roundtrip() -> None:
    tok = get_tokenizer("gguf:default")
    assert tok.exact
    ids = tok.encode("Paris is the capital of France.")
    assert tok.count("Paris is the capital of France.") == len(ids) > 3
    assert tok.decode(ids) == "Paris is the capital of France."
    assert get_tokenizer("smollm2-135m-instruct") is get_tokenizer("gguf:default")


def test_assembled_prompt_fits_what_llama_cpp_sees(llm: Any) -> None:
    budget = Budget.for_model("smollm2-135m-instruct", max_input_tokens=400, output_reserve=64)
    history = [
        m for i in range(20) for m in (Message.user(f"question {i} " * 10), Message.assistant(f"answer {i} " * 10))
    ]
    chunks = [Chunk(text=f"fact {i}: " + "lorem ipsum " * 15, score=1.0 / (i + 1), id=f"f{i}") for i in range(12)]
    prompt = Assembler("smollm2-135m-instruct", budget).assemble(
        system="Answer briefly.", history=history, chunks=chunks, query="Which fact is first?"
    )
    reply = llm.create_chat_completion(messages=prompt.to_openai()["messages"], max_tokens=1)
    assert reply["usage"]["prompt_tokens"] == prompt.total_tokens <= 400
