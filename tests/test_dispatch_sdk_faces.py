"""The four faces (generate, stream, agenerate, astream) of the SDK backends, offline.

Both provider backends share one call loop; each face is checked here on each backend through
the provider's own client over a ``MockTransport`` (no network, no model): same text, finish
reason, usage, local flag and tool calls on every face, and the sync faces of a backend built
on an async client only raise a typed error that names the face to call.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
from collections.abc import Callable
from typing import Any

import pytest

from ctxkit import Message
from ctxkit.dispatch import AnthropicBackend, BackendHTTPError, OpenAIBackend
from ctxkit.dispatch.backends.base import BaseBackend
from ctxkit.dispatch.result import Result, StreamEvent

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")


def _http_for(sdk_client: Any) -> Any:
    """The HTTP library the installed client is built on (httpx, or its successor httpx2)."""
    name = (
        "httpx2"
        if importlib.util.find_spec("httpx2")
        and "httpx2" in str(sdk_client.__init__.__annotations__.get("http_client", ""))
        else "httpx"
    )
    return importlib.import_module(name)


COMPLETION = {
    "id": "c1",
    "object": "chat.completion",
    "created": 0,
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Paris.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {"prompt_tokens": 21, "completion_tokens": 3, "total_tokens": 24},
}
CHUNKS = [
    {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Par"}, "finish_reason": None}]},
    {
        "choices": [
            {
                "index": 0,
                "delta": {
                    "tool_calls": [
                        {"index": 0, "id": "call_1", "function": {"name": "lookup", "arguments": '{"city":'}}
                    ]
                },
                "finish_reason": None,
            }
        ]
    },
    {
        "choices": [
            {
                "index": 0,
                "delta": {"content": "is.", "tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]},
                "finish_reason": "tool_calls",
            }
        ]
    },
    {"choices": [], "usage": {"prompt_tokens": 21, "completion_tokens": 3, "total_tokens": 24}},
]
_CHUNK_HEAD = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "gpt-4o-mini"}
OPENAI_SSE = "".join(f"data: {json.dumps({**_CHUNK_HEAD, **c})}\n\n" for c in CHUNKS) + "data: [DONE]\n\n"

MESSAGE = {
    "id": "msg_01",
    "type": "message",
    "role": "assistant",
    "model": "claude-haiku-4-5",
    "content": [
        {"type": "text", "text": "Paris."},
        {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"city": "Paris"}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {"input_tokens": 21, "output_tokens": 3},
}
_EVENTS = [
    {"type": "message_start", "message": {**MESSAGE, "content": [], "stop_reason": None}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Par"}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "is."}},
    {"type": "content_block_stop", "index": 0},
    {
        "type": "content_block_start",
        "index": 1,
        "content_block": {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}},
    },
    {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"city":'}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '"Paris"}'}},
    {"type": "content_block_stop", "index": 1},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"output_tokens": 3},
    },
    {"type": "message_stop"},
]
ANTHROPIC_SSE = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in _EVENTS)


def _handler(http: Any, body: dict[str, Any], sse: str, seen: list[dict[str, Any]]) -> Callable[[Any], Any]:
    def handler(request: Any) -> Any:
        sent = json.loads(request.content)
        seen.append(sent)
        if sent.get("stream"):
            return http.Response(200, content=sse.encode(), headers={"content-type": "text/event-stream"})
        return http.Response(200, json=body)

    return handler


def _backend(provider: str, *, use_async: bool, seen: list[dict[str, Any]]) -> BaseBackend:
    if provider == "openai":
        http = _http_for(openai.OpenAI)
        handler = _handler(http, COMPLETION, OPENAI_SSE, seen)
        if use_async:
            client: Any = openai.AsyncOpenAI(
                api_key="k", http_client=http.AsyncClient(transport=http.MockTransport(handler)), max_retries=0
            )
        else:
            client = openai.OpenAI(
                api_key="k", http_client=http.Client(transport=http.MockTransport(handler)), max_retries=0
            )
        return OpenAIBackend.from_client(client, "gpt-4o-mini")
    http = _http_for(anthropic.Anthropic)
    handler = _handler(http, MESSAGE, ANTHROPIC_SSE, seen)
    if use_async:
        client = anthropic.AsyncAnthropic(
            api_key="k", http_client=http.AsyncClient(transport=http.MockTransport(handler)), max_retries=0
        )
    else:
        client = anthropic.Anthropic(
            api_key="k", http_client=http.Client(transport=http.MockTransport(handler)), max_retries=0
        )
    return AnthropicBackend.from_client(client, "claude-haiku-4-5")


def _check(result: Result | None, backend: BaseBackend) -> None:
    assert result is not None
    assert result.text == "Paris." and result.finish_reason == "tool_calls"
    assert result.usage.input_tokens == 21 and result.usage.output_tokens == 3
    assert result.backend == backend.name and result.model == backend.model and result.local is False
    assert [(c.name, json.loads(c.arguments)) for c in result.tool_calls] == [("lookup", {"city": "Paris"})]
    assert result.ttft_s is not None and 0.0 <= result.ttft_s <= result.latency_s


async def _collect(events: Any) -> list[StreamEvent]:
    return [e async for e in events]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_every_face_gives_the_same_answer(provider: str) -> None:
    seen: list[dict[str, Any]] = []
    prompt = [Message.user("Capital of France?")]
    sync_b = _backend(provider, use_async=False, seen=seen)
    _check(sync_b.generate(prompt, max_tokens=20), sync_b)
    streamed = list(sync_b.stream(prompt, max_tokens=20))
    assert [e.text for e in streamed if e.kind == "text"] == ["Par", "is."]
    _check(streamed[-1].result, sync_b)

    async_b = _backend(provider, use_async=True, seen=seen)
    _check(asyncio.run(async_b.agenerate(prompt, max_tokens=20)), async_b)
    astreamed = asyncio.run(_collect(async_b.astream(prompt, max_tokens=20)))
    assert [e.text for e in astreamed if e.kind == "text"] == ["Par", "is."]
    _check(astreamed[-1].result, async_b)
    assert [bool(s.get("stream")) for s in seen] == [False, True, False, True]

    for face, call in (
        ("agenerate", lambda: async_b.generate(prompt)),
        ("astream", lambda: list(async_b.stream(prompt))),
    ):
        with pytest.raises(BackendHTTPError, match=f"only an async client; call {face}"):
            call()
