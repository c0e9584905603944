"""LangChain <-> ctxkit conversion: messages (tool calls and results included), documents, usage, tools."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.documents import Document
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages import ToolCall as LCToolCall
from langchain_core.messages.ai import InputTokenDetails, OutputTokenDetails, UsageMetadata
from langchain_core.messages.tool import invalid_tool_call
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool

from ctxkit.errors import InvalidInputError
from ctxkit.integrations._common import DEFAULT_SCORE_KEYS, score_from_metadata
from ctxkit.messages import Chunk, Message, ToolCall, ToolSpec, canonical_json
from ctxkit.usage import Usage

__all__ = [
    "chunk_to_document",
    "document_to_chunk",
    "from_ctxkit_message",
    "from_ctxkit_messages",
    "lc_tool_calls",
    "to_ctxkit_message",
    "to_ctxkit_messages",
    "tool_spec",
    "usage_metadata",
]

_PINNED_KEY = "ctxkit_pinned"
_IGNORED_BLOCKS = frozenset({"tool_use", "tool_call", "tool_call_chunk", "reasoning", "thinking", "redacted_thinking"})


# ---------------------------------------------------------------------- messages
def _text_of(message: BaseMessage, where: str) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for n, block in enumerate(content):
        if isinstance(block, str):
            parts.append(block)
            continue
        kind = block.get("type")
        if kind == "text":
            parts.append(str(block.get("text", "")))
        elif kind in _IGNORED_BLOCKS:
            continue  # tool calls travel in .tool_calls; reasoning is not resent
        else:
            raise InvalidInputError(
                f"{where} has a {kind!r} content block (block {n}); ctxkit messages carry text only. "
                "Describe the image/audio/file in text, or send it with a multimodal model directly."
            )
    return "".join(parts)


def to_ctxkit_message(message: BaseMessage, *, index: int = 0) -> Message:
    """One LangChain message as a :class:`ctxkit.Message` (tool calls and tool results kept).

    A tool call without an id gets ``call_<index>_<n>``; a non-text content block
    (image, audio, file) raises :class:`~ctxkit.errors.InvalidInputError`.
    """
    where = f"messages[{index}] ({type(message).__name__})"
    pinned = bool(message.additional_kwargs.get(_PINNED_KEY, False))
    text = _text_of(message, where)
    name = message.name or None
    if isinstance(message, SystemMessage):
        role = "developer" if message.additional_kwargs.get("__openai_role__") == "developer" else "system"
        return Message(role=role, content=text, name=name, pinned=pinned)
    if isinstance(message, HumanMessage):
        return Message(role="user", content=text, name=name, pinned=pinned)
    if isinstance(message, AIMessage):
        calls = [
            ToolCall(id=c.get("id") or f"call_{index}_{n}", name=c["name"], arguments=canonical_json(c.get("args", {})))
            for n, c in enumerate(message.tool_calls)
        ]
        calls += [
            ToolCall(
                id=c.get("id") or f"call_{index}_i{n}", name=c.get("name") or "unknown", arguments=c.get("args") or ""
            )
            for n, c in enumerate(message.invalid_tool_calls)
        ]
        return Message(role="assistant", content=text, name=name, tool_calls=tuple(calls), pinned=pinned)
    if isinstance(message, ToolMessage):
        return Message(role="tool", content=text, tool_call_id=message.tool_call_id, pinned=pinned)
    if isinstance(message, FunctionMessage):
        raise InvalidInputError(
            f"{where} is a legacy FunctionMessage, which has no tool call id; use ToolMessage(tool_call_id=...)"
        )
    if isinstance(message, ChatMessage):
        role = {"human": "user", "ai": "assistant"}.get(message.role, message.role)
        if role not in ("system", "developer", "user", "assistant"):
            raise InvalidInputError(
                f"{where} has role {message.role!r}; ctxkit knows system, developer, user, assistant"
            )
        return Message(role=role, content=text, name=name, pinned=pinned)
    raise InvalidInputError(f"{where} is not a LangChain message type ctxkit can convert")


def to_ctxkit_messages(messages: Sequence[BaseMessage]) -> list[Message]:
    """LangChain messages as :class:`ctxkit.Message` objects, in order."""
    return [to_ctxkit_message(m, index=i) for i, m in enumerate(messages)]


def lc_tool_calls(calls: Sequence[ToolCall]) -> tuple[list[LCToolCall], list[Any]]:
    """ctxkit tool calls as LangChain ``tool_calls`` (``invalid_tool_calls``: arguments that are not a JSON object)."""
    valid: list[LCToolCall] = []
    invalid: list[Any] = []
    for c in calls:
        try:
            args = json.loads(c.arguments) if c.arguments.strip() else {}
        except json.JSONDecodeError as exc:
            invalid.append(invalid_tool_call(name=c.name, args=c.arguments, id=c.id, error=f"invalid JSON: {exc}"))
            continue
        if not isinstance(args, dict):
            invalid.append(
                invalid_tool_call(name=c.name, args=c.arguments, id=c.id, error="arguments are not an object")
            )
            continue
        valid.append(LCToolCall(name=c.name, args=args, id=c.id, type="tool_call"))
    return valid, invalid


def from_ctxkit_message(message: Message) -> BaseMessage:
    """A :class:`ctxkit.Message` as the matching LangChain message (tool calls as ``AIMessage.tool_calls``).

    Tool-call arguments that are not a JSON object become ``invalid_tool_calls``, as
    LangChain models do, so nothing is lost.
    """
    extra: dict[str, Any] = {_PINNED_KEY: True} if message.pinned else {}
    if message.role == "system":
        return SystemMessage(content=message.content, name=message.name, additional_kwargs=extra)
    if message.role == "developer":
        return SystemMessage(
            content=message.content, name=message.name, additional_kwargs={**extra, "__openai_role__": "developer"}
        )
    if message.role == "user":
        return HumanMessage(content=message.content, name=message.name, additional_kwargs=extra)
    if message.role == "assistant":
        valid, invalid = lc_tool_calls(message.tool_calls)
        return AIMessage(
            content=message.content,
            name=message.name,
            tool_calls=valid,
            invalid_tool_calls=invalid,
            additional_kwargs=extra,
        )
    assert message.tool_call_id is not None
    return ToolMessage(content=message.content, tool_call_id=message.tool_call_id, additional_kwargs=extra)


def from_ctxkit_messages(messages: Sequence[Message]) -> list[BaseMessage]:
    """ctxkit messages as LangChain messages, in order."""
    return [from_ctxkit_message(m) for m in messages]


def usage_metadata(usage: Usage) -> UsageMetadata:
    """A ctxkit :class:`~ctxkit.usage.Usage` in LangChain's ``usage_metadata`` format (input includes cached)."""
    out = UsageMetadata(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        total_tokens=usage.total_tokens,
        input_token_details=InputTokenDetails(
            cache_read=usage.cache_read_tokens, cache_creation=usage.cache_write_tokens
        ),
    )
    if usage.reasoning_tokens:
        out["output_token_details"] = OutputTokenDetails(reasoning=usage.reasoning_tokens)
    return out


# ---------------------------------------------------------------------- documents
def document_to_chunk(document: Document, *, rank: int = 0, score_keys: Sequence[str] = DEFAULT_SCORE_KEYS) -> Chunk:
    """A LangChain ``Document`` as a :class:`ctxkit.Chunk`; the score comes from its metadata (else its rank)."""
    meta = dict(document.metadata)
    return Chunk(
        text=document.page_content,
        score=score_from_metadata(meta, rank, score_keys),
        id=str(document.id or meta.get("id") or ""),
        doc_id=str(meta.get("doc_id") or meta.get("source") or ""),
        title=str(meta.get("title") or ""),
        position=int(meta.get("position") or 0),
        metadata=meta,
    )


def chunk_to_document(chunk: Chunk) -> Document:
    """A :class:`ctxkit.Chunk` as a LangChain ``Document``; the score lands in ``metadata["relevance_score"]``."""
    meta: dict[str, Any] = {**chunk.metadata, "relevance_score": chunk.score}
    if chunk.doc_id:
        meta.setdefault("doc_id", chunk.doc_id)
    if chunk.title:
        meta.setdefault("title", chunk.title)
    if chunk.start is not None:
        meta.setdefault("start", chunk.start)
    if chunk.end is not None:
        meta.setdefault("end", chunk.end)
    meta.setdefault("position", chunk.position)
    return Document(page_content=chunk.text, metadata=meta, id=chunk.id or None)


# ---------------------------------------------------------------------- tools
def tool_spec(tool: Mapping[str, Any] | type | Callable[..., Any] | BaseTool) -> ToolSpec:
    """A tool in any form LangChain accepts (function, pydantic model, ``BaseTool``, JSON schema) as a ToolSpec."""
    spec = convert_to_openai_tool(tool)
    fn = spec.get("function", spec)
    return ToolSpec(
        name=fn["name"],
        description=fn.get("description", "") or "",
        parameters=fn.get("parameters") or {"type": "object", "properties": {}},
    )
