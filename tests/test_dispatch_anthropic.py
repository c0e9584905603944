"""Anthropic backend on Anthropic's documented Messages wire format (the cloud is unreachable here).

The transport is ``MockTransport`` of the HTTP library the ``anthropic`` client uses;
request bodies are checked for the documented shape (system blocks, ``cache_control``
breakpoints) and responses follow the documented JSON and SSE event shapes.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from typing import Any

import pytest

from ctxkit import Message, ToolSpec
from ctxkit.dispatch import AnthropicBackend, BackendHTTPError, Dispatcher, RetryPolicy, get_backend
from ctxkit.errors import InvalidInputError

anthropic = pytest.importorskip("anthropic")
# the HTTP library the installed client is built on (httpx, or its successor httpx2)
_http = importlib.import_module(
    "httpx2"
    if importlib.util.find_spec("httpx2")
    and "httpx2" in str(anthropic.Anthropic.__init__.__annotations__.get("http_client", ""))
    else "httpx"
)

SECRET = "sk-ant-test-SECRET-0123456789"

MESSAGE = {
    "id": "msg_01",
    "type": "message",
    "role": "assistant",
    "model": "claude-haiku-4-5",
    "content": [{"type": "text", "text": "Paris."}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 21,
        "cache_creation_input_tokens": 1500,
        "cache_read_input_tokens": 3000,
        "output_tokens": 3,
    },
}


def _client(handler: Any) -> Any:
    return anthropic.Anthropic(
        api_key=SECRET, http_client=_http.Client(transport=_http.MockTransport(handler)), max_retries=0
    )


def _conversation() -> list[Message]:
    return [
        Message.system("You are a geography tutor."),
        Message.user("Capital of Spain?"),
        Message.assistant("Madrid."),
        Message.user("Capital of France?"),
    ]


def test_request_shape_with_cache_breakpoints_and_usage_mapping() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: Any) -> Any:
        seen.append(json.loads(request.content))
        assert request.url.path == "/v1/messages"
        # the key travels in x-api-key or, in newer SDKs, an Authorization header
        assert SECRET in (request.headers.get("x-api-key") or request.headers.get("authorization") or "")
        return _http.Response(200, json=MESSAGE)

    backend = AnthropicBackend.from_client(_client(handler), "claude-haiku-4-5")
    tool = ToolSpec(name="lookup", description="Look up a city", parameters={"type": "object", "properties": {}})
    r = backend.generate(_conversation(), tools=(tool,), max_tokens=20, stop=["\n\n"])
    body = seen[0]
    assert body["model"] == "claude-haiku-4-5" and body["max_tokens"] == 20 and body["stop_sequences"] == ["\n\n"]
    # breakpoints: end of tools, end of system, end of the history before the final user turn
    assert body["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert body["system"] == [
        {"type": "text", "text": "You are a geography tutor.", "cache_control": {"type": "ephemeral"}}
    ]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"][-1]["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" not in body["messages"][2]["content"][-1]
    # usage: Anthropic's input_tokens exclude cache reads and writes; ctxkit's include them
    assert r.usage.input_tokens == 21 + 1500 + 3000
    assert (r.usage.cache_read_tokens, r.usage.cache_write_tokens, r.usage.output_tokens) == (3000, 1500, 3)
    assert r.text == "Paris." and r.finish_reason == "stop" and not r.local
    assert r.cost is not None and r.cost > 0
    assert SECRET not in repr(backend) and SECRET not in repr(r)


def test_explicit_breakpoints_ttl_and_the_limit_of_four() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: Any) -> Any:
        seen.append(json.loads(request.content))
        return _http.Response(200, json=MESSAGE)

    backend = AnthropicBackend.from_client(_client(handler), "claude-haiku-4-5")
    backend.generate(_conversation(), cache=(1,), extra={"cache_ttl": "1h"}, max_tokens=5)
    body = seen[-1]
    assert isinstance(body["system"], str)
    assert body["messages"][0]["content"][-1]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    backend.generate(_conversation(), cache="none", max_tokens=5)
    assert "cache_control" not in json.dumps(seen[-1])
    many = [Message.system("s")] + [m for i in range(4) for m in (Message.user(f"q{i}"), Message.assistant(f"a{i}"))]
    with pytest.raises(InvalidInputError, match="at most 4"):
        backend.generate([*many, Message.user("last")], cache=(0, 1, 2, 3, 4), max_tokens=5)
    with pytest.raises(InvalidInputError):
        backend.generate(_conversation(), cache=(99,), max_tokens=5)


def test_streaming_follows_the_documented_sse_events() -> None:
    events = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    **MESSAGE,
                    "content": [],
                    "stop_reason": None,
                    "usage": {
                        "input_tokens": 21,
                        "output_tokens": 1,
                        "cache_read_input_tokens": 3000,
                        "cache_creation_input_tokens": 0,
                    },
                },
            },
        ),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Par"}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "is."}},
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '{"city": "Pa'},
            },
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": 'ris"}'}},
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": {"output_tokens": 9},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    sse = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)

    def handler(request: Any) -> Any:
        assert json.loads(request.content)["stream"] is True
        return _http.Response(200, content=sse.encode(), headers={"content-type": "text/event-stream"})

    backend = AnthropicBackend.from_client(_client(handler), "claude-haiku-4-5")
    out = list(backend.stream(_conversation(), max_tokens=20))
    assert [e.text for e in out if e.kind == "text"] == ["Par", "is."]
    calls = [e.tool_call for e in out if e.kind == "tool_call"]
    assert calls and calls[0] is not None and json.loads(calls[0].arguments) == {"city": "Paris"}
    final = out[-1].result
    assert final is not None and final.text == "Paris." and final.finish_reason == "tool_calls"
    assert final.usage.output_tokens == 9 and final.usage.cache_read_tokens == 3000
    assert final.usage.input_tokens == 3021


def test_overloaded_and_rate_limits_are_retryable_with_retry_after() -> None:
    calls = {"n": 0}

    def handler(request: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            return _http.Response(
                529, json={"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
            )
        if calls["n"] == 2:
            return _http.Response(
                429,
                headers={"retry-after": "7"},
                json={"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}},
            )
        return _http.Response(200, json=MESSAGE)

    backend = AnthropicBackend.from_client(_client(handler), "claude-haiku-4-5")
    with pytest.raises(BackendHTTPError) as info:
        backend.generate("hi", max_tokens=5)
    assert info.value.status_code == 529 and info.value.retryable
    waits: list[float] = []
    d = Dispatcher({"claude": backend}, retry=RetryPolicy(max_attempts=3, base_delay_s=0.0), sleep=waits.append)
    r = d.run("hi", max_tokens=5)
    assert r.attempts == 2 and waits == [7.0]  # Retry-After honoured
    bad = AnthropicBackend.from_client(
        _client(
            lambda req: _http.Response(
                401, json={"type": "error", "error": {"type": "authentication_error", "message": "bad key"}}
            )
        ),
        "claude-haiku-4-5",
    )
    with pytest.raises(BackendHTTPError) as info2:
        bad.generate("hi", max_tokens=5)
    assert info2.value.status_code == 401 and not info2.value.retryable
    assert SECRET not in str(info2.value)


def test_client_wrapping_needs_a_model() -> None:
    client = _client(lambda req: _http.Response(200, json=MESSAGE))
    with pytest.raises(InvalidInputError, match="model"):
        get_backend(client)
    b = get_backend(client, model="claude-haiku-4-5")
    assert isinstance(b, AnthropicBackend) and b.name == "anthropic:claude-haiku-4-5"
