"""Plain data for chat inputs: messages, tool calls, tool specs and retrieved chunks."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from ctxkit._model import CtxkitModel
from ctxkit.errors import InvalidInputError

__all__ = ["Chunk", "Message", "Role", "ToolCall", "ToolSpec", "canonical_json"]

Role = Literal["system", "developer", "user", "assistant", "tool"]


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and fixed separators: the same value always renders to the same bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class ToolCall(CtxkitModel):
    """One call of a tool made by the assistant; ``arguments`` is the JSON text the model emitted."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    arguments: str = "{}"


class ToolSpec(CtxkitModel):
    """A tool the model may call: name, description and a JSON-schema of its parameters."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]{1,128}$")
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})

    def to_openai(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }

    def to_anthropic(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "input_schema": self.parameters}


class Message(CtxkitModel):
    """A chat message.

    An assistant message may carry ``tool_calls``; each must be answered by a
    ``tool`` message whose ``tool_call_id`` names it. ``pinned`` messages are never
    dropped or altered by ctxkit.
    """

    model_config = ConfigDict(frozen=True)

    role: Role
    content: str = ""
    name: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    pinned: bool = False

    @field_validator("tool_calls", mode="before")
    @classmethod
    def _tuple_calls(cls, v: Any) -> Any:
        return tuple(v) if isinstance(v, list) else v

    @model_validator(mode="after")
    def _check_shape(self) -> Message:
        if self.tool_calls and self.role != "assistant":
            raise ValueError(f"only assistant messages carry tool_calls, not {self.role!r} messages")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs the tool_call_id of the call it answers")
        if self.role != "tool" and self.tool_call_id:
            raise ValueError("tool_call_id belongs on tool messages only")
        return self

    @classmethod
    def system(cls, content: str) -> Message:
        return cls(role="system", content=content)

    @classmethod
    def user(cls, content: str, **kw: Any) -> Message:
        return cls(role="user", content=content, **kw)

    @classmethod
    def assistant(cls, content: str = "", **kw: Any) -> Message:
        return cls(role="assistant", content=content, **kw)

    @classmethod
    def tool(cls, content: str, tool_call_id: str) -> Message:
        return cls(role="tool", content=content, tool_call_id=tool_call_id)

    @classmethod
    def from_openai(cls, data: dict[str, Any]) -> Message:
        """Build from an OpenAI chat-completions message dict.

        Raises :class:`~ctxkit.errors.InvalidInputError` naming the missing or malformed field.
        """

        if not isinstance(data, Mapping):
            raise InvalidInputError(f"Message.from_openai takes a message dict, not {type(data).__name__}")
        if "role" not in data:
            raise InvalidInputError("an OpenAI message needs a 'role' (system, developer, user, assistant or tool)")
        content = data.get("content") or ""
        if isinstance(content, list):  # content parts: keep the text parts
            parts = [p.get("text", "") for p in content if isinstance(p, Mapping)]
            if not all(isinstance(p, str) for p in parts):
                raise InvalidInputError("the 'text' of each content part must be a string")
            content = "".join(parts)
        raw_calls = data.get("tool_calls") or []
        if not isinstance(raw_calls, list | tuple):
            raise InvalidInputError(f"'tool_calls' must be a list, not {type(raw_calls).__name__}")
        calls = []
        for i, c in enumerate(raw_calls):
            fn = c.get("function") if isinstance(c, Mapping) else None
            if not isinstance(c, Mapping) or "id" not in c or not isinstance(fn, Mapping) or "name" not in fn:
                raise InvalidInputError(
                    f"tool_calls[{i}] must look like {{'id': ..., 'type': 'function', 'function': "
                    "{'name': ..., 'arguments': '<json>'}}"
                )
            calls.append(ToolCall(id=c["id"], name=fn["name"], arguments=fn.get("arguments") or "{}"))
        return cls(
            role=data["role"],
            content=content,
            name=data.get("name"),
            tool_calls=tuple(calls),
            tool_call_id=data.get("tool_call_id"),
        )

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI chat-completions dict; content is always a string ("" beside tool calls),
        which OpenAI accepts and which chat templates (llama.cpp) need."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.name:
            out["name"] = self.name
        if self.tool_calls:
            out["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in self.tool_calls
            ]
        if self.tool_call_id:
            out["tool_call_id"] = self.tool_call_id
        return out


class Chunk(CtxkitModel):
    """A retrieved piece of text with its relevance score and where it came from.

    ``score`` is higher-is-better; packing maximizes the total score that fits.
    ``position`` orders chunks of one document (for source-order layout).
    """

    model_config = ConfigDict(frozen=True)

    text: str
    score: float = 0.0
    id: str = ""
    doc_id: str = ""
    title: str = ""
    position: int = 0
    start: int | None = None
    end: int | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("score")
    @classmethod
    def _finite(cls, v: float) -> float:
        if v != v or v in (float("inf"), float("-inf")):
            raise ValueError("chunk score must be a finite number")
        return v
