"""CtxkitInputFilter in a real OpenAI Agents SDK loop against a llama.cpp OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import gc
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("agents")

from ctxkit.agents import STUB_PREFIX, EditPolicy, MemoryOffloadStore
from ctxkit.assembly import group_turns
from ctxkit.datasets import essays
from ctxkit.integrations.openai_agents import CtxkitInputFilter, items_to_messages

STUB_ID = re.compile(r"id=([0-9a-f]{12})")


def _items(n: int, size: int = 400) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = [{"role": "user", "content": "read the files"}]
    for k in range(n):
        items.append({"type": "reasoning", "id": f"rs_{k}", "summary": []})
        items.append({"type": "function_call", "call_id": f"c{k}a", "name": "read_file", "arguments": "{}"})
        items.append({"type": "function_call", "call_id": f"c{k}b", "name": "grep", "arguments": "{}"})
        items.append({"type": "function_call_output", "call_id": f"c{k}a", "output": f"file {k} " * size})
        items.append({"type": "function_call_output", "call_id": f"c{k}b", "output": f"grep {k} " * size})
    return items


def test_items_become_messages_with_parallel_calls_grouped() -> None:
    messages, groups = items_to_messages(_items(2))
    assert [m.role for m in messages] == ["user", "assistant", "tool", "tool", "assistant", "tool", "tool"]
    assert [c.id for c in messages[1].tool_calls] == ["c0a", "c0b"]
    assert groups[1] == [1, 2, 3]  # the reasoning item travels with the calls it precedes
    group_turns(messages)


def test_filter_offloads_pairs_and_leaves_the_run_items_alone() -> None:
    filt = CtxkitInputFilter(
        EditPolicy(clear_trigger_tokens=1500, keep_tool_uses=2, price_edits=False), store=MemoryOffloadStore()
    )
    items = _items(4)
    snapshot = json.dumps(items)
    out = filt.edit(items, "You read files.")
    assert json.dumps(items) == snapshot  # the run's own list is untouched
    assert [i.get("call_id") for i in out] == [i.get("call_id") for i in items]  # same items, same order
    outputs = [i for i in out if i.get("type") == "function_call_output"]
    stubbed = [i for i in outputs if i["output"].startswith(STUB_PREFIX)]
    assert len(stubbed) == 6 and not outputs[-1]["output"].startswith(STUB_PREFIX)
    originals = {i["call_id"]: i["output"] for i in items if i.get("type") == "function_call_output"}
    for s in stubbed:
        assert filt.context.expand(STUB_ID.search(s["output"]).group(1)) == originals[s["call_id"]]  # type: ignore[union-attr]
    assert {t.name for t in filt.function_tools()} == {"expand", "search_offloaded"}


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    pytest.importorskip("llama_cpp")
    from ctxkit.testing import llama_server

    with llama_server(chat_format="chatml-function-calling", n_ctx=4096) as base:
        yield base


@pytest.mark.model
@pytest.mark.server
def test_real_openai_agents_loop(server: str, tmp_path: Path) -> None:
    import httpx
    from agents import (
        Agent,
        ModelSettings,
        OpenAIChatCompletionsModel,
        RunConfig,
        Runner,
        ToolsToFinalOutputResult,
        function_tool,
        set_tracing_disabled,
    )
    from openai import AsyncOpenAI

    set_tracing_disabled(True)
    texts = {k: v for k, v in sorted(essays().items()) if 1500 < len(v) < 4000}
    for k, v in texts.items():
        (tmp_path / f"{k}.txt").write_text(v, encoding="utf-8")
    names = sorted(texts)

    @function_tool
    def read_file(name: str) -> str:
        """Return the whole text of one essay file; any name works, the next unread file is returned."""
        return texts[names[len(calls) % len(names)]] if (calls.append(name) or True) else ""

    calls: list[str] = []
    bodies: list[dict[str, Any]] = []

    async def keep_body(request: httpx.Request) -> None:
        if request.url.path.endswith("/chat/completions"):
            bodies.append(json.loads(request.content))

    def stop_after_8(ctx: Any, results: list[Any]) -> ToolsToFinalOutputResult:
        return ToolsToFinalOutputResult(is_final_output=len(calls) >= 8, final_output="done")

    class NullContentAsEmpty(httpx.AsyncHTTPTransport):
        """llama-cpp-python's server rejects ``content: null`` beside tool calls (valid OpenAI, which the SDK sends)."""

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith("/chat/completions"):
                body = json.loads(request.content)
                for m in body["messages"]:
                    if m.get("content") is None:
                        m["content"] = ""
                headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
                request = httpx.Request(request.method, request.url, headers=headers, json=body)
            return await super().handle_async_request(request)

    http = httpx.AsyncClient(event_hooks={"request": [keep_body]}, transport=NullContentAsEmpty())
    client = AsyncOpenAI(base_url=server, api_key="not-needed", http_client=http)
    filt = CtxkitInputFilter(EditPolicy(clear_trigger_tokens=1200, keep_tool_uses=1, max_input_tokens=3500))
    agent = Agent(
        name="reader",
        instructions="Read the essay files with read_file.",
        model=OpenAIChatCompletionsModel(model="smollm2", openai_client=client),
        tools=[read_file, *filt.function_tools()],
        model_settings=ModelSettings(tool_choice="read_file", max_tokens=40),
        reset_tool_choice=False,
        tool_use_behavior=stop_after_8,
    )

    async def run() -> Any:
        # one event loop for the run and the client's cleanup (run_sync leaves its loop and connections open)
        try:
            return await Runner.run(
                agent, "Read the files.", run_config=RunConfig(call_model_input_filter=filt), max_turns=20
            )
        finally:
            await client.close()
            await http.aclose()

    result = asyncio.run(run())
    gc.collect()  # anything left unclosed is reported here, in this test, not in a later one
    assert result.final_output == "done" and len(calls) == 8
    assert len(bodies) == len(filt.reports) >= 8
    assert any(r.cleared for r in filt.reports)
    stubs = 0
    for body in bodies:  # on the wire: every call answered right after it, stubs expand to the exact file
        msgs = body["messages"]
        open_ids: set[str] = set()
        for m in msgs:
            if m["role"] == "tool":
                assert m["tool_call_id"] in open_ids
                open_ids.discard(m["tool_call_id"])
                if m["content"].startswith(STUB_PREFIX):
                    stubs += 1
                    assert filt.context.expand(STUB_ID.search(m["content"]).group(1)) in texts.values()  # type: ignore[union-attr]
            else:
                assert not open_ids
                open_ids = {c["id"] for c in m.get("tool_calls") or []}
        assert not open_ids
    assert stubs > 0
    assert max(r.tokens_out for r in filt.reports) <= 3500
