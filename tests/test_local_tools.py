"""Tool calling on a local model whose chat template has no tools (SmolLM2-135M-Instruct, real).

The parser and renderer are checked on literal text; the backend on the real model:
tools reach the prompt, a forced call (grammar-constrained) parses and matches the
schema, a call is never streamed as text, and the exact chat counter still equals the
tokens the backend sends.
"""

from __future__ import annotations

import json

import pytest

from ctxkit import Message, ToolCall, ToolSpec, get_chat_counter
from ctxkit.dispatch import LlamaCppBackend, get_backend
from ctxkit.errors import InvalidInputError
from ctxkit.toolcalls import (
    inline_tools,
    parse_tool_calls,
    required_tool_names,
    template_supports_tools,
    tool_call_grammar,
)

WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather for a city.",
    parameters={
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "City name"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city"],
    },
)
CLOCK = ToolSpec(
    name="get_time",
    description="Current time in a timezone.",
    parameters={"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
)
ASK = [Message.system("You are a helpful assistant."), Message.user("What's the weather in Paris right now?")]


def test_parse_tool_calls_forms() -> None:
    names = ["get_weather", "get_time"]
    text = 'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    prose, calls = parse_tool_calls(text, names)
    assert prose == "Let me check." and [c.name for c in calls] == ["get_weather"]
    assert json.loads(calls[0].arguments) == {"city": "Paris"} and calls[0].id.startswith("call_")
    # parallel calls, an unclosed last block, string arguments
    two = (
        '<tool_call>{"name": "get_time", "arguments": "{\\"tz\\": \\"UTC\\"}"}</tool_call>'
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}'
    )
    prose, calls = parse_tool_calls(two, names)
    assert prose == "" and [c.name for c in calls] == ["get_time", "get_weather"]
    assert len({c.id for c in calls}) == 2
    # a bare JSON reply naming a tool (Llama 3.1 style, "parameters")
    _, calls = parse_tool_calls(' {"name": "get_time", "parameters": {"tz": "CET"}} ', names)
    assert calls and json.loads(calls[0].arguments) == {"tz": "CET"}
    # not calls: unknown tool, broken JSON, plain prose — the text is kept whole
    for keep in (
        '<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>',
        '<tool_call>{"name": "get_time", "arguments": </tool_call>',
        "The weather is fine.",
        '{"name": "get_time"',
    ):
        assert parse_tool_calls(keep, names) == (keep, [])
    # same call, same id: deterministic
    assert parse_tool_calls(text, names)[1] == parse_tool_calls(text, names)[1]
    # the same call in another request (another context) gets another id: ids stay unique across turns
    turn1 = parse_tool_calls(text, names, context="prompt-1")[1]
    turn2 = parse_tool_calls(text, names, context="prompt-2")[1]
    assert [c.id for c in turn1] == [c.id for c in parse_tool_calls(text, names, context="prompt-1")[1]]
    assert not {c.id for c in turn1} & {c.id for c in turn2}
    assert [c.model_dump(exclude={"id"}) for c in turn1] == [c.model_dump(exclude={"id"}) for c in turn2]


def test_inline_tools_rendering() -> None:
    tools = [WEATHER.to_openai()]
    call = ToolCall(id="c1", name="get_weather", arguments='{"city": "Paris"}')
    msgs = [
        m.to_openai()
        for m in (
            Message.user("weather?"),
            Message.assistant("", tool_calls=[call]),
            Message.tool('{"temp": 21}', "c1"),
        )
    ]
    out = inline_tools(msgs, tools)
    assert out[0]["role"] == "system" and "<tools>" in out[0]["content"] and '"get_weather"' in out[0]["content"]
    assert out[2] == {
        "role": "assistant",
        "content": '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
    }
    assert out[3] == {"role": "user", "content": '<tool_response>\n{"temp": 21}\n</tool_response>'}
    with_system = inline_tools([Message.system("Be brief.").to_openai(), *msgs[:1]], tools)
    assert with_system[0]["content"].startswith("Be brief.\n\n# Tools")
    assert inline_tools(msgs[:1], None) == msgs[:1]
    assert template_supports_tools("{% if tools %}{{ tools }}{% endif %}")
    assert not template_supports_tools("{{ message['content'] }}")


def test_tool_choice_resolution() -> None:
    names = ["get_weather", "get_time"]
    assert required_tool_names(None, names) is None and required_tool_names("auto", names) is None
    assert required_tool_names("required", names) == names
    assert required_tool_names({"type": "function", "function": {"name": "get_time"}}, names) == ["get_time"]
    assert required_tool_names("get_weather", names) == ["get_weather"]
    with pytest.raises(InvalidInputError, match="names no tool"):
        required_tool_names({"type": "function", "function": {"name": "nope"}}, names)
    gbnf = tool_call_grammar([WEATHER.to_openai(), CLOCK.to_openai()], ["get_time"])
    assert gbnf.startswith('root ::= "<tool_call>\\n" ctxkit-call') and "get_time" in gbnf and "get_weather" not in gbnf


@pytest.fixture(scope="module")
def local() -> LlamaCppBackend:
    backend = get_backend("llamacpp:default")
    assert isinstance(backend, LlamaCppBackend)
    return backend


@pytest.mark.model
def test_tools_reach_the_prompt_and_counts_stay_exact(local: LlamaCppBackend) -> None:
    counter = get_chat_counter("smollm2-135m-instruct")
    with_tools = local.generate(ASK, tools=[WEATHER, CLOCK], max_tokens=4)
    without = local.generate(ASK, max_tokens=4)
    described = counter.tools_tokens([WEATHER, CLOCK])
    assert with_tools.usage.input_tokens - without.usage.input_tokens == described > 50
    assert counter.count_messages(ASK, [WEATHER, CLOCK]) == with_tools.usage.input_tokens
    # a finished tool round trip is rendered and counted exactly too
    call = ToolCall(id="c1", name="get_weather", arguments='{"city": "Paris"}')
    turn = [*ASK, Message.assistant("", tool_calls=[call]), Message.tool('{"temp_c": 21, "sky": "clear"}', "c1")]
    r = local.generate(turn, tools=[WEATHER, CLOCK], max_tokens=4)
    assert counter.count_messages(turn, [WEATHER, CLOCK]) == r.usage.input_tokens
    none = local.generate(ASK, tools=[WEATHER], max_tokens=4, extra={"tool_choice": "none"})
    assert none.usage.input_tokens == without.usage.input_tokens and not none.tool_calls


@pytest.mark.model
def test_forced_calls_parse_and_match_the_schema(local: LlamaCppBackend) -> None:
    r = local.generate(ASK, tools=[WEATHER, CLOCK], max_tokens=60, extra={"tool_choice": "required"})
    assert r.finish_reason == "tool_calls" and r.text == ""
    (call,) = r.tool_calls
    assert call.name in ("get_weather", "get_time")
    args = json.loads(call.arguments)
    assert isinstance(args, dict) and set(args) >= set(
        (WEATHER if call.name == "get_weather" else CLOCK).parameters["required"]
    )
    named = local.generate(
        ASK,
        tools=[WEATHER, CLOCK],
        max_tokens=60,
        extra={"tool_choice": {"type": "function", "function": {"name": "get_time"}}},
    )
    assert [c.name for c in named.tool_calls] == ["get_time"]
    assert isinstance(json.loads(named.tool_calls[0].arguments)["tz"], str)
    # streamed: no event carries the call's text; the done event has the call
    events = list(local.stream(ASK, tools=[WEATHER], max_tokens=60, extra={"tool_choice": "required"}))
    assert all("<tool_call>" not in (e.text or "") for e in events if e.kind == "text")
    done = events[-1].result
    assert done is not None and [c.name for c in done.tool_calls] == ["get_weather"]
    with pytest.raises(InvalidInputError, match="needs tools"):
        local.generate(ASK, max_tokens=4, extra={"tool_choice": "required"})
