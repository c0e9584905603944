"""Anthropic Messages backend (extra ``anthropic``), with ctxkit's cache breakpoints as ``cache_control``.

Requests are rendered with :meth:`ctxkit.assembly.AssembledPrompt.to_anthropic`;
then the request's cache breakpoints (:meth:`Request.breakpoints`) are mapped onto
the blocks that end each cacheable prefix: the last tool, the system prompt, and
the last content block of a message. Anthropic allows at most 4 breakpoints; asking
for more raises. Usage maps through :meth:`ctxkit.usage.Usage.from_anthropic`
(Anthropic's ``input_tokens`` exclude cache reads and writes; ctxkit's include them).
Set ``extra={"cache_ttl": "1h"}`` on a request for the 1-hour cache.
"""

from __future__ import annotations

import copy
import time
from typing import Any

from ctxkit._optional import require
from ctxkit.dispatch.backends._sdk import SDKBackend
from ctxkit.dispatch.backends.base import Request
from ctxkit.dispatch.backends.openai import map_sdk_error
from ctxkit.dispatch.result import FinishReason, Result, StreamEvent
from ctxkit.errors import InvalidInputError
from ctxkit.messages import Message, ToolCall, canonical_json
from ctxkit.secrets import add_secret
from ctxkit.usage import Usage

__all__ = ["MAX_BREAKPOINTS", "AnthropicBackend", "anthropic_request"]

MAX_BREAKPOINTS = 4
_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "unknown",
}


def _cache_marker(ttl: str | None) -> dict[str, Any]:
    marker: dict[str, Any] = {"type": "ephemeral"}
    if ttl:
        if ttl not in ("5m", "1h"):
            raise InvalidInputError(f"cache_ttl must be '5m' or '1h', not {ttl!r}")
        marker["ttl"] = ttl
    return marker


def _block_layout(messages: tuple[Message, ...]) -> list[tuple[int, int] | None]:
    """For each message, the (turn, block) of its last content block in the Anthropic rendering.

    System messages map to ``None`` (they go to ``system``). Mirrors the merging done by
    ``AssembledPrompt.to_anthropic`` (consecutive same-role turns merge).
    """
    layout: list[tuple[int, int] | None] = []
    turns: list[tuple[str, int]] = []  # (role, blocks)
    for m in messages:
        if m.role in ("system", "developer"):
            layout.append(None)
            continue
        role = "assistant" if m.role == "assistant" else "user"
        n = (1 if m.content else 0) + len(m.tool_calls) if m.role == "assistant" else 1
        n = max(n, 1)
        if turns and turns[-1][0] == role:
            turns[-1] = (role, turns[-1][1] + n)
        else:
            turns.append((role, n))
        layout.append((len(turns) - 1, turns[-1][1] - 1))
    if turns and turns[0][0] != "user":  # to_anthropic prepends a placeholder user turn
        layout = [None if x is None else (x[0] + 1, x[1]) for x in layout]
    return layout


def anthropic_request(request: Request, model: str) -> dict[str, Any]:
    """The Messages API body for ``request`` (without ``stream``), cache breakpoints applied."""
    body: dict[str, Any] = copy.deepcopy(request.as_prompt().to_anthropic())
    extra = dict(request.extra)
    marker = _cache_marker(extra.pop("cache_ttl", None))
    points = request.breakpoints()
    marks = 0
    if points and body.get("tools"):
        body["tools"][-1]["cache_control"] = dict(marker)
        marks += 1
    layout = _block_layout(request.messages)
    system_marked = False
    for i in points:
        where = layout[i]
        if where is None:
            if not system_marked and body.get("system"):
                body["system"] = [{"type": "text", "text": body["system"], "cache_control": dict(marker)}]
                system_marked = True
                marks += 1
            continue
        turn, block = where
        target = body["messages"][turn]["content"][block]
        if "cache_control" not in target:
            target["cache_control"] = dict(marker)
            marks += 1
    if marks > MAX_BREAKPOINTS:
        raise InvalidInputError(
            f"{marks} cache breakpoints requested (tools, system and messages); Anthropic accepts at most "
            f"{MAX_BREAKPOINTS}. Pass fewer message indices in cache=(...)."
        )
    body["model"] = model
    body["max_tokens"] = request.max_tokens
    body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    body.update(extra)
    return body


def _sdk_kwargs(create: Any, body: dict[str, Any]) -> dict[str, Any]:
    """Split the wire body into the SDK's keyword arguments and ``extra_body`` for fields it does not name.

    SDK versions differ in which request fields they accept as keywords (some drop
    ``temperature``); the wire format is what counts, so unknown fields travel in
    ``extra_body`` unchanged.
    """
    import inspect

    try:
        params = set(inspect.signature(create).parameters)
    except (TypeError, ValueError):
        return body
    known = {k: v for k, v in body.items() if k in params}
    rest = {k: v for k, v in body.items() if k not in params}
    if rest:
        known["extra_body"] = {**rest, **known.get("extra_body", {})}
    return known


class AnthropicBackend(SDKBackend):
    """Claude models over the Messages API; pass an ``anthropic.Anthropic`` you built, or a key.

    Anthropic does not return token logprobs, so ``Result.logprobs`` is ``None``
    (a cascade on this backend needs a verifier instead of a logprob threshold).
    """

    def __init__(
        self,
        model: str,
        *,
        client: Any = None,
        async_client: Any = None,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 60.0,
        name: str | None = None,
    ) -> None:
        anthropic = require("anthropic", feature="the Anthropic backend", extra="anthropic")
        super().__init__(name or f"anthropic:{model}", model, local=False)
        if api_key is not None:
            add_secret(api_key)  # scrubbed from every error, log and record from now on
        if client is None and async_client is None:
            client = anthropic.Anthropic(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0)
            async_client = anthropic.AsyncAnthropic(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0)
        for c in (client, async_client):
            for attr in ("api_key", "auth_token"):
                key = getattr(c, attr, None)
                if isinstance(key, str):
                    add_secret(key)
        self.client = client
        self.async_client = async_client

    @classmethod
    def from_client(cls, client: Any, model: str, **kwargs: Any) -> AnthropicBackend:
        """Wrap an ``anthropic.Anthropic`` or ``anthropic.AsyncAnthropic`` the user already built."""
        anthropic = require("anthropic", feature="the Anthropic backend", extra="anthropic")
        if isinstance(client, anthropic.AsyncAnthropic):
            return cls(model, async_client=client, **kwargs)
        return cls(model, client=client, **kwargs)

    def _result(
        self, data: dict[str, Any], start: float, ttft: float | None = None, request: Request | None = None
    ) -> Result:
        text = "".join(b.get("text", "") for b in data.get("content") or [] if b.get("type") == "text")
        calls = tuple(
            ToolCall(id=b["id"], name=b["name"], arguments=canonical_json(b.get("input") or {}))
            for b in data.get("content") or []
            if b.get("type") == "tool_use"
        )
        return self._answer(
            time.perf_counter() - start,
            ttft,
            text=text,
            finish_reason=_FINISH.get(data.get("stop_reason") or "", "unknown"),
            usage=Usage.from_anthropic(data.get("usage") or {}),
            tool_calls=calls,
        )

    def _create(self, client: Any, request: Request, *, stream: bool) -> Any:
        body = anthropic_request(request, self.model)
        if stream:
            body["stream"] = True
        return client.messages.create(**_sdk_kwargs(client.messages.create, body))

    def _accumulator(self) -> _SSEAccumulator:
        return _SSEAccumulator()

    def _map_error(self, exc: Exception) -> Exception:
        """Map an ``anthropic`` exception onto ctxkit's tree (other errors pass through unchanged)."""
        anthropic = require("anthropic", feature="the Anthropic backend", extra="anthropic")
        return map_sdk_error(exc, anthropic, anthropic.AnthropicError, backend=self.name)


class _SSEAccumulator:
    """Rebuilds a Messages response from its stream events (message_start … message_stop)."""

    def __init__(self) -> None:
        self.message: dict[str, Any] = {"content": [], "usage": {}}
        self.blocks: dict[int, dict[str, Any]] = {}
        self.json_parts: dict[int, list[str]] = {}
        self.ttft: float | None = None

    def add(self, event: dict[str, Any], start: float) -> StreamEvent | None:
        kind = event.get("type")
        if kind == "message_start":
            msg = event.get("message") or {}
            self.message["usage"] = dict(msg.get("usage") or {})
            self.message["model"] = msg.get("model")
        elif kind == "content_block_start":
            self.blocks[event["index"]] = dict(event.get("content_block") or {})
        elif kind == "content_block_delta":
            delta = event.get("delta") or {}
            block = self.blocks.setdefault(event["index"], {"type": "text", "text": ""})
            if delta.get("type") == "text_delta":
                text = delta.get("text", "")
                block["text"] = block.get("text", "") + text
                if text:
                    if self.ttft is None:
                        self.ttft = time.perf_counter() - start
                    return StreamEvent(kind="text", text=text)
            elif delta.get("type") == "input_json_delta":
                self.json_parts.setdefault(event["index"], []).append(delta.get("partial_json", ""))
        elif kind == "content_block_stop":
            idx = event["index"]
            block = self.blocks.get(idx, {})
            if block.get("type") == "tool_use":
                import json

                raw = "".join(self.json_parts.get(idx, []))
                block["input"] = json.loads(raw) if raw else (block.get("input") or {})
                call = ToolCall(id=block["id"], name=block["name"], arguments=canonical_json(block["input"]))
                return StreamEvent(kind="tool_call", tool_call=call)
        elif kind == "message_delta":
            delta = event.get("delta") or {}
            if delta.get("stop_reason"):
                self.message["stop_reason"] = delta["stop_reason"]
            for k, v in (event.get("usage") or {}).items():
                if v is not None:
                    self.message["usage"][k] = v
        return None

    def final(self) -> dict[str, Any]:
        self.message["content"] = [self.blocks[i] for i in sorted(self.blocks)]
        return self.message
