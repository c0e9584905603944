"""ctxkit's LlamaIndex components against the real llama-index-core, the local model and real data."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("llama_index.core")

from llama_index.core.base.llms.types import ChatMessage, ImageBlock, MessageRole, TextBlock, ToolCallBlock
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from ctxkit.errors import InvalidInputError
from ctxkit.integrations.llamaindex import (
    CtxkitChatMemory,
    CtxkitLLM,
    CtxkitNodePostprocessor,
    chunk_to_node,
    from_ctxkit_messages,
    node_to_chunk,
    to_ctxkit_messages,
)
from ctxkit.messages import Chunk, Message, ToolCall, canonical_json

EXAMPLES = settings(deadline=None)  # example count: the conftest profile
MODEL = "smollm2-135m-instruct"

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
_key = st.from_regex(r"[a-z]{1,6}", fullmatch=True)
_chunks = st.builds(
    Chunk,
    text=_text,
    score=st.floats(-5, 5, allow_nan=False),
    id=st.from_regex(r"[a-z0-9]{1,10}", fullmatch=True),
    doc_id=st.one_of(st.just(""), st.from_regex(r"doc[0-9]{1,3}", fullmatch=True)),
    start=st.one_of(st.none(), st.integers(0, 100)),
    end=st.one_of(st.none(), st.integers(100, 200)),
    metadata=st.dictionaries(_key, st.one_of(st.integers(), _text), max_size=3),
)


# ---------------------------------------------------------------------- nodes <-> chunks
@EXAMPLES
@given(_chunks)
def test_chunk_node_round_trip_keeps_score_span_source_and_metadata(chunk: Chunk) -> None:
    node = chunk_to_node(chunk)
    assert node.score == chunk.score and node.node.node_id == chunk.id
    assert (node.node.ref_doc_id or "") == chunk.doc_id
    back = node_to_chunk(node)
    assert back.model_dump(exclude={"title", "position"}) == chunk.model_dump(exclude={"title", "position"})


def test_unscored_nodes_get_rank_scores() -> None:
    node = TextNode(text="x", id_="n1")
    assert node_to_chunk(node, rank=1).score == 0.5
    assert node_to_chunk(NodeWithScore(node=node, score=None), rank=0).score == 1.0


# ---------------------------------------------------------------------- postprocessor
def _nodes() -> list[NodeWithScore]:
    from ctxkit.datasets import essay_paragraphs

    paras = essay_paragraphs(300)[:12]
    return [
        NodeWithScore(
            node=TextNode(text=p.text, id_=f"{p.doc_id}#{p.position}", metadata={"essay": p.doc_id}), score=1.0 - i / 12
        )
        for i, p in enumerate(paras)
    ]


def test_postprocessor_packs_to_budget_counting_llm_metadata() -> None:
    from llama_index.core.schema import MetadataMode

    from ctxkit.tokenizers import get_tokenizer

    nodes = _nodes()
    tok = get_tokenizer("gpt-4o")
    seen = [tok.count(n.node.get_content(metadata_mode=MetadataMode.LLM)) for n in nodes]
    budget = sum(seen) // 3
    post = CtxkitNodePostprocessor(budget_tokens=budget, tokenizer="gpt-4o")
    kept = post.postprocess_nodes(nodes, query_str="anything")
    used = sum(tok.count(n.node.get_content(metadata_mode=MetadataMode.LLM)) for n in kept)
    assert 0 < used <= budget
    ids = [n.node.node_id for n in nodes]
    assert [ids.index(n.node.node_id) for n in kept] == sorted(ids.index(n.node.node_id) for n in kept)
    report = post.last_report
    assert report is not None and len(report.dropped) == len(nodes) - len(kept)
    assert all(d.reason for d in report.dropped)
    # the scores drive the choice
    flipped = [NodeWithScore(node=n.node, score=i / 12) for i, n in enumerate(nodes)]
    kept2 = post.postprocess_nodes(flipped, query_str="anything")
    assert {n.node.node_id for n in kept2} != {n.node.node_id for n in kept}


@pytest.mark.model
def test_postprocessor_prunes_nodes_that_do_not_fit_whole() -> None:
    from ctxkit.compress import TokenPruner
    from ctxkit.tokenizers import get_tokenizer

    nodes = _nodes()[:3]
    tok = get_tokenizer(MODEL)
    full = [tok.count(n.node.get_content(metadata_mode="llm")) for n in nodes]  # type: ignore[arg-type]
    budget = full[0] + min(full[1:]) // 2
    post = CtxkitNodePostprocessor(budget_tokens=budget, tokenizer=MODEL, pruner=TokenPruner(), prune_rate=0.4)
    kept = post.postprocess_nodes(nodes, query_bundle=QueryBundle("What matters when starting a company?"))
    pruned = [n for n in kept if n.node.metadata.get("ctxkit_pruned")]
    assert pruned and all(n.node.node_id in {m.node.node_id for m in nodes} for n in pruned)
    assert all("ctxkit_pruned" not in n.node.metadata for n in nodes), "the input nodes are not modified"
    assert sum(tok.count(n.node.get_content(metadata_mode="llm")) for n in kept) <= budget  # type: ignore[arg-type]


# ---------------------------------------------------------------------- messages
def test_chat_message_conversion_with_tool_calls() -> None:
    msgs = [
        ChatMessage(role=MessageRole.SYSTEM, content="sys"),
        ChatMessage(role=MessageRole.USER, content="6*7?"),
        ChatMessage(
            role=MessageRole.ASSISTANT,
            blocks=[ToolCallBlock(tool_call_id="c1", tool_name="mul", tool_kwargs={"a": 6, "b": 7})],
        ),
        ChatMessage(role=MessageRole.TOOL, content="42", additional_kwargs={"tool_call_id": "c1"}),
    ]
    ck = to_ctxkit_messages(msgs)
    assert ck[2].tool_calls == (ToolCall(id="c1", name="mul", arguments='{"a":6,"b":7}'),)
    assert ck[3] == Message.tool("42", "c1")
    back = from_ctxkit_messages(ck)
    assert back[2].additional_kwargs["tool_calls"][0]["function"]["name"] == "mul"
    assert to_ctxkit_messages(back) == ck
    # the OpenAI shape in additional_kwargs is read too
    oa = ChatMessage(
        role=MessageRole.ASSISTANT,
        content="",
        additional_kwargs={
            "tool_calls": [{"id": "z", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
        },
    )
    assert to_ctxkit_messages([oa])[0].tool_calls == (ToolCall(id="z", name="f", arguments="{}"),)
    with pytest.raises(InvalidInputError, match="ImageBlock"):
        to_ctxkit_messages(
            [ChatMessage(role=MessageRole.USER, blocks=[TextBlock(text="a"), ImageBlock(url="http://x/y.png")])]
        )
    with pytest.raises(InvalidInputError, match="tool_call_id"):
        to_ctxkit_messages([ChatMessage(role=MessageRole.TOOL, content="1")])


@st.composite
def _conversations(draw: st.DrawFn) -> list[Message]:
    out: list[Message] = []
    if draw(st.booleans()):
        out.append(Message.system(draw(_text)))
    for turn in range(draw(st.integers(0, 4))):
        out.append(Message.user(draw(_text), pinned=draw(st.booleans())))
        calls = [
            ToolCall(
                id=f"t{turn}_{k}",
                name=draw(_key),
                arguments=canonical_json(draw(st.dictionaries(_key, st.integers(), max_size=2))),
            )
            for k in range(draw(st.integers(0, 2)))
        ]
        out.append(Message.assistant(draw(_text) if not calls or draw(st.booleans()) else "", tool_calls=calls))
        out.extend(Message.tool(draw(_text), c.id) for c in calls)
    return out


@EXAMPLES
@given(_conversations())
def test_message_round_trip_property(messages: list[Message]) -> None:
    assert to_ctxkit_messages(from_ctxkit_messages(messages)) == messages


# ---------------------------------------------------------------------- memory
def _chat(n_turns: int) -> list[ChatMessage]:
    from ctxkit.datasets import chat_histories

    history = chat_histories(n_turns * 2, 1)[0]
    return from_ctxkit_messages(list(history))


def test_memory_returns_newest_whole_turns_within_the_window() -> None:
    from ctxkit.tokenizers import get_chat_counter

    history = _chat(10)
    counter = get_chat_counter("gpt-4o")
    total = counter.count_messages(to_ctxkit_messages(history))
    memory = CtxkitChatMemory.from_defaults(chat_history=history, token_limit=total // 3, model="gpt-4o")
    got = memory.get()
    assert 0 < len(got) < len(history)
    assert got == history[len(history) - len(got) :], "a suffix of whole turns, the stored objects themselves"
    assert got[0].role == MessageRole.USER
    assert counter.count_messages(to_ctxkit_messages(got)) <= total // 3
    assert memory.last_dropped > 0
    assert memory.get_all() == history
    # the next user input is charged to the window too
    with_input = memory.get(input="x " * 50)
    assert len(with_input) <= len(got)
    with pytest.raises(InvalidInputError, match="input"):
        memory.get(input="word " * 5000)


def test_memory_keeps_tool_calls_with_results_and_shortens_tool_outputs() -> None:
    long_result = "row " * 400
    history = from_ctxkit_messages(
        [
            Message.system("sys"),
            Message.user("old question " * 30),
            Message.assistant("old answer " * 30),
            Message.user("look it up"),
            Message.assistant("", tool_calls=[ToolCall(id="c1", name="search", arguments="{}")]),
            Message.tool(long_result, "c1"),
            Message.assistant("found it"),
        ]
    )
    memory = CtxkitChatMemory.from_defaults(chat_history=history, token_limit=200, tool_output_tokens=40)
    got = to_ctxkit_messages(memory.get())
    assert got[0].role == "system"  # system stays
    roles = [m.role for m in got]
    assert "tool" in roles and roles[roles.index("tool") - 1] == "assistant"
    tool = next(m for m in got if m.role == "tool")
    assert len(tool.content) < len(long_result) and tool.tool_call_id == "c1"
    assert not any(m.content.startswith("old question") for m in got)
    assert memory.get_all() == history  # the store keeps everything


# ---------------------------------------------------------------------- LLM on the local model
@pytest.fixture(scope="module")
def llm() -> CtxkitLLM:
    pytest.importorskip("llama_cpp")
    return CtxkitLLM(model="llamacpp:default", max_tokens=10)


@pytest.mark.model
def test_llm_chat_complete_and_stream(llm: CtxkitLLM) -> None:
    from ctxkit.telemetry.llamaindex import usage_from_llamaindex

    resp = llm.chat([ChatMessage(role=MessageRole.USER, content="Name a fruit.")])
    assert resp.message.role == MessageRole.ASSISTANT and resp.message.content
    usage = usage_from_llamaindex(resp)
    assert usage is not None and usage.input_tokens > 0 and 0 < usage.output_tokens <= 10
    assert resp.raw is not None and resp.raw["model"] == MODEL
    comp = llm.complete("Name a fruit.")
    assert comp.text and comp.raw is not None and comp.raw["usage"]["prompt_tokens"] > 0
    deltas = [r.delta for r in llm.stream_complete("Name a fruit.")]
    assert "".join(d or "" for d in deltas)
    last = list(llm.stream_chat([ChatMessage(role=MessageRole.USER, content="Name a fruit.")]))[-1]
    assert last.raw is not None and last.raw["usage"]["completion_tokens"] > 0 and last.message.content
    assert llm.metadata.is_chat_model and llm.metadata.context_window == 4096  # n_ctx loaded, not the trained 8192


@pytest.mark.model
@pytest.mark.asyncio
async def test_llm_async_faces(llm: CtxkitLLM) -> None:
    resp = await llm.achat([ChatMessage(role=MessageRole.USER, content="Say yes.")])
    assert resp.message.content
    comp = await llm.acomplete("Say yes.")
    assert comp.text
    text = ""
    async for r in await llm.astream_chat([ChatMessage(role=MessageRole.USER, content="Say yes.")]):
        text = r.message.content or text
    assert text


@pytest.mark.model
def test_chat_engine_with_ctxkit_memory_and_llm(llm: CtxkitLLM) -> None:
    from llama_index.core.chat_engine import SimpleChatEngine

    memory = CtxkitChatMemory.from_defaults(token_limit=120, model=MODEL)
    engine = SimpleChatEngine.from_defaults(llm=llm, memory=memory)
    engine.chat("Hello, my name is Ada.")
    engine.chat("What is my name?")
    assert len(memory.get_all()) == 4
    assert memory.get()[-1].role == MessageRole.ASSISTANT
