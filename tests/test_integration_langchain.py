"""ctxkit's LangChain components against the real langchain-core, the real local model and real data.

Model tests use SmolLM2-135M-Instruct in process (loaded once; the backend registry
shares it). Tool calls are tested against a real llama.cpp OpenAI-compatible server on
127.0.0.1 whose ``chatml-function-calling`` format forces a schema-valid call with a
grammar, since SmolLM2's own template renders no tools.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("langchain_core")

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.output_parsers import StrOutputParser
from langchain_core.runnables import RunnableLambda, RunnablePassthrough

from ctxkit.errors import InvalidInputError
from ctxkit.integrations.langchain import (
    AssembledPromptValue,
    ChatCtxkit,
    CtxkitCompressor,
    CtxkitPrompt,
    LedgerCallbackHandler,
    chunk_to_document,
    document_to_chunk,
    from_ctxkit_message,
    from_ctxkit_messages,
    to_ctxkit_messages,
)
from ctxkit.messages import Message, ToolCall, canonical_json

EXAMPLES = settings(deadline=None)  # example count: the conftest profile
MODEL = "smollm2-135m-instruct"


# ---------------------------------------------------------------------- message conversion
def test_conversion_both_ways_keeps_tool_calls_and_results() -> None:
    lc = [
        SystemMessage("be brief"),
        HumanMessage("what is 6*7?", name="ann"),
        AIMessage("", tool_calls=[{"name": "mul", "args": {"a": 6, "b": 7}, "id": "c1", "type": "tool_call"}]),
        ToolMessage("42", tool_call_id="c1"),
        AIMessage("It is 42."),
    ]
    ck = to_ctxkit_messages(lc)
    assert [m.role for m in ck] == ["system", "user", "assistant", "tool", "assistant"]
    assert ck[1].name == "ann"
    assert ck[2].tool_calls == (ToolCall(id="c1", name="mul", arguments='{"a":6,"b":7}'),)
    assert ck[3].tool_call_id == "c1" and ck[3].content == "42"
    back = from_ctxkit_messages(ck)
    assert isinstance(back[2], AIMessage)
    assert back[2].tool_calls == [{"name": "mul", "args": {"a": 6, "b": 7}, "id": "c1", "type": "tool_call"}]
    assert isinstance(back[3], ToolMessage) and back[3].tool_call_id == "c1"
    assert to_ctxkit_messages(back) == ck


def test_invalid_tool_arguments_survive_as_invalid_tool_calls() -> None:
    msg = Message.assistant("", tool_calls=[ToolCall(id="x", name="f", arguments='{"a": 1')])
    lc = from_ctxkit_message(msg)
    assert isinstance(lc, AIMessage)
    assert lc.tool_calls == []
    assert lc.invalid_tool_calls[0]["args"] == '{"a": 1' and lc.invalid_tool_calls[0]["id"] == "x"
    assert to_ctxkit_messages([lc])[0].tool_calls == msg.tool_calls


def test_list_content_text_blocks_join_and_media_blocks_raise() -> None:
    ck = to_ctxkit_messages([HumanMessage(content=[{"type": "text", "text": "a"}, {"type": "text", "text": "b"}])])
    assert ck[0].content == "ab"
    img = HumanMessage(content=[{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}])
    with pytest.raises(InvalidInputError, match="image_url"):
        to_ctxkit_messages([img])
    with pytest.raises(InvalidInputError, match="FunctionMessage"):
        to_ctxkit_messages([FunctionMessage(content="1", name="f")])
    with pytest.raises(InvalidInputError, match="role"):
        to_ctxkit_messages([ChatMessage(role="critic", content="x")])


def test_pinned_and_developer_roles_round_trip() -> None:
    msgs = [Message(role="developer", content="rules", pinned=True), Message.user("hi")]
    assert to_ctxkit_messages(from_ctxkit_messages(msgs)) == msgs


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
_ident = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
_args = st.dictionaries(_ident, st.one_of(st.integers(-100, 100), _text, st.booleans()), max_size=3)


@st.composite
def _conversations(draw: st.DrawFn) -> list[Message]:
    out: list[Message] = []
    if draw(st.booleans()):
        out.append(Message.system(draw(_text)))
    for turn in range(draw(st.integers(0, 4))):
        out.append(Message.user(draw(_text), pinned=draw(st.booleans())))
        n_calls = draw(st.integers(0, 2))
        calls = [
            ToolCall(
                id=f"t{turn}_{k}",
                name=draw(_ident),
                arguments=canonical_json(draw(_args)),
            )
            for k in range(n_calls)
        ]
        out.append(Message.assistant(draw(_text) if not calls or draw(st.booleans()) else "", tool_calls=calls))
        out.extend(Message.tool(draw(_text), c.id) for c in calls)
    return out


@EXAMPLES
@given(_conversations())
def test_round_trip_property(messages: list[Message]) -> None:
    """Canonical-JSON arguments (what ctxkit writes) come back byte-identical; the cache prefix stays stable."""
    assert to_ctxkit_messages(from_ctxkit_messages(messages)) == messages


def test_document_chunk_conversion_keeps_score_and_metadata() -> None:
    doc = Document(page_content="text", metadata={"relevance_score": 0.7, "source": "a.md", "page": 3}, id="d1")
    c = document_to_chunk(doc)
    assert (c.score, c.id, c.doc_id, c.metadata["page"]) == (0.7, "d1", "a.md", 3)
    back = chunk_to_document(c)
    assert back.metadata["relevance_score"] == 0.7 and back.id == "d1" and back.metadata["page"] == 3
    assert document_to_chunk(Document(page_content="x"), rank=3).score == pytest.approx(0.25)


# ---------------------------------------------------------------------- compressor
def _docs() -> list[Document]:
    from ctxkit.datasets import essay_paragraphs

    paras = essay_paragraphs(300)[:12]
    return [
        Document(page_content=p.text, metadata={"relevance_score": 1.0 - i / 12, "source": p.doc_id})
        for i, p in enumerate(paras)
    ]


def test_compressor_packs_to_budget_by_relevance() -> None:
    from ctxkit.tokenizers import get_tokenizer

    docs = _docs()
    tok = get_tokenizer("gpt-4o")
    total = sum(tok.count(d.page_content) for d in docs)
    budget = total // 3
    comp = CtxkitCompressor(budget_tokens=budget, tokenizer="gpt-4o")
    kept = comp.compress_documents(docs, "anything")
    used = sum(tok.count(d.page_content) for d in kept)
    assert 0 < used <= budget
    assert all(d.metadata["ctxkit_tokens"] == tok.count(d.page_content) for d in kept)
    report = comp.last_report
    assert report is not None and len(report.kept) == len(kept) and len(report.dropped) == len(docs) - len(kept)
    # retriever order is preserved
    texts = [d.page_content for d in docs]
    order = [texts.index(d.page_content) for d in kept]
    assert order == sorted(order)
    # at least as relevant in sum as taking the best documents in score order while they fit
    score = {d.page_content: d.metadata["relevance_score"] for d in docs}
    room, greedy = budget, 0.0
    for d in docs:
        cost = tok.count(d.page_content)
        if cost <= room:
            room -= cost
            greedy += score[d.page_content]
    assert sum(score[d.page_content] for d in kept) >= greedy - 1e-9
    # the scores drive the choice: reversing them changes what is kept
    flipped = [Document(page_content=d.page_content, metadata={"relevance_score": i / 12}) for i, d in enumerate(docs)]
    kept2 = comp.compress_documents(flipped, "anything")
    assert {d.page_content for d in kept2} != {d.page_content for d in kept}


def test_compressor_with_contextual_compression_retriever() -> None:
    classic = pytest.importorskip("langchain_classic.retrievers")
    from langchain_core.retrievers import BaseRetriever

    docs = _docs()

    class Fixed(BaseRetriever):
        def _get_relevant_documents(self, query: str, *, run_manager: Any) -> list[Document]:
            return docs

    retriever = classic.ContextualCompressionRetriever(
        base_compressor=CtxkitCompressor(budget_tokens=300), base_retriever=Fixed()
    )
    out = retriever.invoke("how to start a startup")
    assert 0 < len(out) < len(docs)
    assert sum(d.metadata["ctxkit_tokens"] for d in out) <= 300


@pytest.mark.model
def test_compressor_prunes_what_does_not_fit_whole() -> None:
    from ctxkit.compress import TokenPruner
    from ctxkit.tokenizers import get_tokenizer

    docs = _docs()[:3]
    tok = get_tokenizer(MODEL)
    sizes = [tok.count(d.page_content) for d in docs]
    budget = sizes[0] + min(sizes[1:]) // 2  # the best fits whole; another fits only pruned
    comp = CtxkitCompressor(budget_tokens=budget, tokenizer=MODEL, pruner=TokenPruner(), prune_rate=0.4)
    kept = comp.compress_documents(docs, "What matters when starting a company?")
    assert kept[0].page_content == docs[0].page_content and "ctxkit_pruned" not in kept[0].metadata
    pruned = [d for d in kept if d.metadata.get("ctxkit_pruned")]
    assert pruned, "a document that does not fit whole should be pruned into the remaining room"
    assert all(tok.count(d.page_content) < d.metadata["ctxkit_original_tokens"] for d in pruned)
    assert sum(tok.count(d.page_content) for d in kept) <= budget


# ---------------------------------------------------------------------- prompt runnable
def test_prompt_runnable_assembles_within_budget_with_stable_prefix() -> None:
    docs = _docs()
    history = [HumanMessage("hi"), AIMessage("hello, how can I help?")]
    prompt = CtxkitPrompt(model=MODEL, budget=600, system="Answer from the context.", output_reserve=64)
    chain = {
        "context": RunnableLambda(lambda _: docs),
        "question": RunnablePassthrough(),
        "history": RunnableLambda(lambda _: history),
    } | prompt
    v1 = chain.invoke("What do investors look for?")
    assert isinstance(v1, AssembledPromptValue)
    a1 = v1.assembled
    assert a1.total_tokens <= 600 and a1.input_limit == 600
    assert any(r.section == "retrieved" for r in a1.dropped), "12 long paragraphs cannot all fit 600 tokens"
    msgs = v1.to_messages()
    assert isinstance(msgs[0], SystemMessage) and isinstance(msgs[-1], HumanMessage)
    assert msgs[-1].content.endswith("What do investors look for?")
    v2 = chain.invoke("Why do startups fail?")
    assert v2.assembled.stable_prefix_fingerprint == a1.stable_prefix_fingerprint


def test_prompt_runnable_splits_formatted_context_and_validates_input() -> None:
    texts = [d.page_content for d in _docs()]
    prompt = CtxkitPrompt(model=MODEL, budget=500, context_separator="\n\n", output="assembled", output_reserve=64)
    a = prompt.invoke({"context": "\n\n".join(texts), "question": "q"})
    kept = [r for r in a.sections["retrieved"].model_dump().items()]
    assert kept and a.sections["retrieved"].items_kept >= 1
    assert a.sections["retrieved"].items_kept + a.sections["retrieved"].items_dropped == len(texts)
    with pytest.raises(InvalidInputError, match="question"):
        prompt.invoke({"query": "q"})
    with pytest.raises(InvalidInputError, match="context"):
        prompt.invoke({"question": "q", "context": [1, 2]})


# ---------------------------------------------------------------------- chat model on the local model
@pytest.fixture(scope="module")
def llm() -> ChatCtxkit:
    pytest.importorskip("llama_cpp")
    return ChatCtxkit(model="llamacpp:default", max_tokens=12)


@pytest.mark.model
def test_chat_model_usage_cache_read_and_ledger(llm: ChatCtxkit) -> None:
    from ctxkit.telemetry import Ledger

    ledger = Ledger()
    handler = LedgerCallbackHandler(ledger, workflow="lc-test")
    question = "List three fruits that are red, and say which is sweetest. " * 2
    first = llm.invoke(question, config={"callbacks": [handler]})
    second = llm.invoke(question, config={"callbacks": [handler]})
    assert first.usage_metadata is not None and second.usage_metadata is not None
    assert second.usage_metadata["input_tokens"] == first.usage_metadata["input_tokens"]
    assert second.usage_metadata["input_token_details"]["cache_read"] > 0
    assert second.response_metadata["model_name"] == MODEL and second.response_metadata["local"] is True
    assert Decimal(second.response_metadata["cost"]) == 0
    records = ledger.records
    assert len(records) == 2
    assert records[1].usage.cache_read_tokens == second.usage_metadata["input_token_details"]["cache_read"]


@pytest.mark.model
def test_lcel_rag_chain_end_to_end(llm: ChatCtxkit) -> None:
    docs = _docs()
    prompt = CtxkitPrompt(model=MODEL, budget=300, system="Answer in one sentence.", output_reserve=32)
    chain = {"context": RunnableLambda(lambda _: docs), "question": RunnablePassthrough()} | prompt | llm
    answer = chain.invoke("What do investors want?")
    assert isinstance(answer, AIMessage) and answer.text
    assert answer.usage_metadata is not None
    assert answer.usage_metadata["input_tokens"] <= 300
    assert prompt.last is not None and prompt.last.total_tokens == answer.usage_metadata["input_tokens"]
    text = (prompt | llm | StrOutputParser()).invoke({"question": "Say hi"})
    assert isinstance(text, str) and text


@pytest.mark.model
def test_streaming_matches_invoke_and_ends_with_usage(llm: ChatCtxkit) -> None:
    chunks = list(llm.stream("Name a colour."))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    full = chunks[0]
    for c in chunks[1:]:
        full = full + c
    assert chunks[-1].chunk_position == "last" and chunks[-1].usage_metadata is not None
    assert full.content == "".join(str(c.content) for c in chunks) and full.content
    assert full.usage_metadata is not None and 0 < full.usage_metadata["output_tokens"] <= 12
    assert full.response_metadata["model_name"] == MODEL
    streaming = ChatCtxkit(model="llamacpp:default", max_tokens=12, streaming=True)
    seen: list[str] = []

    class Tokens(BaseCallbackHandler):
        def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
            seen.append(token)

    msg = streaming.invoke("Name a colour.", config={"callbacks": [Tokens()]})
    assert msg.content and "".join(seen) == msg.content  # invoke streamed token by token
    assert msg.usage_metadata is not None and msg.usage_metadata["output_tokens"] > 0


@pytest.mark.model
def test_model_override_and_route_errors(llm: ChatCtxkit) -> None:
    from ctxkit.dispatch import Dispatcher, LlamaCppBackend, get_backend
    from ctxkit.errors import UnknownNameError

    main = get_backend("llamacpp:default")
    assert isinstance(main, LlamaCppBackend)
    other = LlamaCppBackend.from_llama(main.llama, model="smollm2-other")
    other._lock = main._lock
    model = ChatCtxkit(model="a", dispatcher=Dispatcher({"a": main, "b": other}), max_tokens=4)
    assert model.invoke("hi").response_metadata["model_name"] == MODEL
    out = model.invoke("hi", model="b")
    assert out.response_metadata["model_name"] == "smollm2-other" and out.response_metadata["route"] == "b"
    with pytest.raises(UnknownNameError):
        model.invoke("hi", model="nope:x")


# ---------------------------------------------------------------------- tool calls through a real server
@pytest.fixture(scope="module")
def tool_server() -> Iterator[str]:
    pytest.importorskip("openai")
    from ctxkit.testing import llama_server

    with llama_server(chat_format="chatml-function-calling", n_ctx=2048) as base:
        yield base


def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


@pytest.mark.model
@pytest.mark.server
def test_bind_tools_returns_tool_calls_invoke_and_stream(tool_server: str) -> None:
    from ctxkit.dispatch import Dispatcher, OpenAIBackend

    backend = OpenAIBackend("smollm2", base_url=tool_server)
    model = ChatCtxkit(model="srv", dispatcher=Dispatcher({"srv": backend}), max_tokens=40)
    bound = model.bind_tools([multiply], tool_choice="multiply")
    msg = bound.invoke("What is 3 times 12? Use the tool.")
    assert len(msg.tool_calls) == 1
    call = msg.tool_calls[0]
    assert call["name"] == "multiply" and set(call["args"]) == {"a", "b"} and call["id"]
    assert all(isinstance(v, int) for v in call["args"].values())
    assert msg.response_metadata["finish_reason"] == "tool_calls"
    full: Any = None
    for chunk in bound.stream("What is 3 times 12? Use the tool."):
        full = chunk if full is None else full + chunk
    assert [c["name"] for c in full.tool_calls] == ["multiply"]
    assert set(full.tool_calls[0]["args"]) == {"a", "b"}
    with pytest.raises(InvalidInputError, match="tool_choice"):
        model.bind_tools([multiply], tool_choice="divide")
    backend.client.close()


@pytest.mark.model
@pytest.mark.server
def test_tool_history_goes_back_to_the_server(tool_server: str) -> None:
    import httpx
    import openai

    from ctxkit.dispatch import Dispatcher, OpenAIBackend

    sent: list[dict[str, Any]] = []

    def record(request: httpx.Request) -> None:
        sent.append(json.loads(request.read()))

    http = httpx.Client(event_hooks={"request": [record]})
    client = openai.OpenAI(base_url=tool_server, api_key="not-needed", http_client=http, max_retries=0)
    backend = OpenAIBackend.from_client(client, "smollm2")
    model = ChatCtxkit(model="srv", dispatcher=Dispatcher({"srv": backend}), max_tokens=1)
    try:
        result = "36, computed by the multiply tool"
        msg = model.invoke(_tool_history(result, 3))
        # on the wire, in OpenAI's format: the call on the assistant turn, the result on a tool turn
        (body,) = sent
        assert [m["role"] for m in body["messages"]] == ["user", "assistant", "tool"]
        (call,) = body["messages"][1]["tool_calls"]
        assert call["id"] == "c1" and call["function"]["name"] == "multiply"
        assert json.loads(call["function"]["arguments"]) == {"a": 3, "b": 12}
        assert body["messages"][2] == {"role": "tool", "content": result, "tool_call_id": "c1"}
        # the server rendered the call: larger arguments make a longer prompt. (llama-cpp-python's
        # chatml-function-calling template renders no content for tool turns, so a tool result's
        # length does not show in its prompt_tokens; the local model's test checks that part.)
        assert isinstance(msg, AIMessage) and msg.usage_metadata is not None
        bigger = model.invoke(_tool_history(result, 3_000_000))
        assert bigger.usage_metadata is not None
        assert bigger.usage_metadata["input_tokens"] > msg.usage_metadata["input_tokens"]
    finally:
        client.close()


@pytest.mark.model
def test_tool_history_goes_to_the_local_model(llm: ChatCtxkit) -> None:
    _assert_tool_history_reaches_the_model(llm)


def _tool_history(result: str, a: int) -> list[Any]:
    call = {"name": "multiply", "args": {"a": a, "b": 12}, "id": "c1", "type": "tool_call"}
    return [
        HumanMessage("What is 3 times 12?"),
        AIMessage("", tool_calls=[call]),
        ToolMessage(result, tool_call_id="c1"),
    ]


def _assert_tool_history_reaches_the_model(model: ChatCtxkit) -> None:
    """The model's prompt holds the tool call and its result: its input tokens follow what they say.

    The tool result sits between special tokens, so lengthening it by N tokens of the model's own
    vocabulary lengthens the prompt by exactly N; larger call arguments lengthen it too.
    """
    from ctxkit.tokenizers._gguf import GGUFTokenizer

    tok = GGUFTokenizer.from_path()
    short, long = "36", "36, computed by the multiply tool from the two integers you gave it"

    def input_tokens(history: list[Any]) -> int:
        msg = model.invoke(history)
        assert isinstance(msg, AIMessage) and msg.usage_metadata is not None
        return int(msg.usage_metadata["input_tokens"])

    base = input_tokens(_tool_history(short, 3))
    assert input_tokens(_tool_history(long, 3)) - base == len(tok.encode(long)) - len(tok.encode(short))
    assert input_tokens(_tool_history(short, 3_000_000)) > base
