"""CtxkitMemory: LlamaIndex's Memory with ctxkit's context editing, in a real tool loop."""

from __future__ import annotations

import gc
import re
from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.base.llms.types import ChatMessage, MessageRole

from ctxkit.agents import STUB_PREFIX, EditPolicy, MemoryOffloadStore
from ctxkit.assembly import group_turns
from ctxkit.datasets import essays
from ctxkit.integrations.llamaindex import from_ctxkit_message, to_ctxkit_messages
from ctxkit.integrations.llamaindex_memory import CtxkitMemory
from ctxkit.messages import Message, ToolCall

STUB_ID = re.compile(r"id=([0-9a-f]{12})")


def _close(memory: CtxkitMemory) -> None:
    """Dispose of the in-memory SQLite engine LlamaIndex's chat store opened (else a ResourceWarning)."""
    from llama_index.core.async_utils import asyncio_run

    engine = memory.sql_store._async_engine
    if engine is not None:
        asyncio_run(engine.dispose())


def _memory(policy: EditPolicy) -> CtxkitMemory:
    return CtxkitMemory.from_defaults(session_id="t", token_limit=10_000_000).configure(
        policy, store=MemoryOffloadStore()
    )


def test_get_edits_what_is_sent_and_get_all_keeps_everything() -> None:
    memory = _memory(EditPolicy(clear_trigger_tokens=1500, keep_tool_uses=1, price_edits=False))
    texts = [v for _, v in sorted(essays().items()) if 3000 < len(v) < 8000][:4]
    memory.put(ChatMessage(role=MessageRole.USER, content="read"))
    for k, text in enumerate(texts):
        call = Message.assistant("", tool_calls=[ToolCall(id=f"c{k}", name="read_file", arguments="{}")])
        memory.put(from_ctxkit_message(call))
        memory.put(from_ctxkit_message(Message.tool(text, f"c{k}")))
    sent = memory.get()
    group_turns(to_ctxkit_messages(sent))
    tool_texts = [m.content or "" for m in sent if m.role == MessageRole.TOOL]
    assert [t.startswith(STUB_PREFIX) for t in tool_texts] == [True, True, True, False]
    for t, original in zip(tool_texts[:3], texts[:3], strict=True):
        assert memory.tools()[0].call(id=STUB_ID.search(t).group(1)).content == original  # type: ignore[union-attr]
    stored = memory.get_all()
    assert [m.content for m in stored if m.role == MessageRole.TOOL] == texts
    assert memory.reports[-1].cleared == 3
    _close(memory)


@pytest.mark.model
def test_real_tool_loop_with_local_model() -> None:
    """SmolLM2 picks a file to read each step (a forced call), the memory keeps and edits the history."""
    pytest.importorskip("llama_cpp")
    import asyncio

    asyncio.run(_real_loop())
    gc.collect()  # anything left unclosed is reported here, in this test, not in a later one


async def _real_loop() -> None:
    from ctxkit.dispatch import get_backend
    from ctxkit.messages import ToolSpec

    texts = {k: v for k, v in sorted(essays().items()) if 1500 < len(v) < 5000}
    read_file = ToolSpec(
        name="read_file",
        description="Return the whole text of one essay file.",
        parameters={"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
    )
    backend = get_backend("llamacpp:default")
    memory = _memory(EditPolicy(clear_trigger_tokens=1500, keep_tool_uses=1, max_input_tokens=3500))
    try:
        await _steps(memory, texts, read_file, backend)
    finally:
        engine = memory.sql_store._async_engine
        if engine is not None:
            await engine.dispose()


async def _steps(memory: CtxkitMemory, texts: dict[str, str], read_file: Any, backend: Any) -> None:
    await memory.aput(
        ChatMessage(role=MessageRole.SYSTEM, content="Read essay files with read_file. Files: " + ", ".join(texts))
    )
    await memory.aput(ChatMessage(role=MessageRole.USER, content="Read several essays, one per step."))
    names = sorted(texts)
    results: dict[str, str] = {}
    for step in range(8):
        sent = await memory.aget()
        msgs = to_ctxkit_messages(sent)
        group_turns(msgs)
        assert memory.reports[-1].tokens_out <= 3500
        reply: Any = backend.generate(msgs, tools=[read_file], extra={"tool_choice": "required"}, max_tokens=40)
        assert reply.tool_calls, "a forced call comes back as a tool call"
        # the parsed call's id is a hash of its position and arguments; a repeated call would repeat it
        call = reply.tool_calls[0].model_copy(update={"id": f"step{step}_{reply.tool_calls[0].id}"})
        await memory.aput(from_ctxkit_message(Message.assistant("", tool_calls=[call])))
        text = texts[names[step % len(names)]]  # the tool returns a whole real file
        results[call.id] = text
        await memory.aput(from_ctxkit_message(Message.tool(text, call.id)))
    sent = await memory.aget()
    stubs = [m for m in sent if m.role == MessageRole.TOOL and (m.content or "").startswith(STUB_PREFIX)]
    assert len(stubs) >= 5
    for m in stubs:
        key = STUB_ID.search(m.content or "").group(1)  # type: ignore[union-attr]
        assert memory.context.expand(key) == results[m.additional_kwargs["tool_call_id"]]
