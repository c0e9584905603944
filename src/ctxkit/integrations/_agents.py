"""What ctxkit's three agent adapters share (LangChain middleware, OpenAI Agents filter, LlamaIndex memory).

Each adapter reads its framework's messages as ctxkit messages, lets an
:class:`~ctxkit.agents.AgentContext` edit them, and sends its own objects back: the ones
the edit left alone as the very objects it was given, the edited ones rewritten. The
reading and the rewriting are the framework's; :func:`edit_history` is the bookkeeping
between them, and :func:`offload_functions` the ``expand`` / ``search_offloaded`` tools
as plain functions for the framework's tool wrapper.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from ctxkit.agents import AgentContext, EditReport
from ctxkit.messages import Message, ToolSpec

__all__ = ["edit_history", "offload_functions"]

T = TypeVar("T")


def offload_functions(context: AgentContext) -> tuple[Callable[[str], str], Callable[[str], str]]:
    """``expand`` and ``search_offloaded`` over ``context``'s store, named and documented for a tool wrapper."""

    def expand(id: str) -> str:
        """Get back the exact full text of an offloaded tool result; pass the id shown in its stub."""
        return context.expand(id)

    def search_offloaded(query: str) -> str:
        """Find lines in offloaded tool results that contain every word of the query."""
        return context.search(query)

    return expand, search_offloaded


def edit_history(
    context: AgentContext,
    history: Sequence[Message],
    *,
    reports: list[EditReport],
    summary: Callable[[str], T],
    unchanged: Callable[[int], Iterable[T]],
    edited: Callable[[int, Message], Iterable[T]],
    tools: Sequence[ToolSpec] = (),
    lead: int = 0,
) -> list[T]:
    """Edit ``history`` with ``context`` (its report appended to ``reports``) and map the result back.

    ``history`` is the framework's messages as ctxkit messages, after ``lead`` leading
    ones (a system prompt) that the framework sends apart and that are counted, not
    returned. Per message of the edited request: a summary epoch becomes ``summary(text)``;
    one the edit left as it was, ``unchanged(k)`` (``k`` the index after the lead); an
    edited one, ``edited(k, message)``.
    """
    prepared = context.prepare(history, tools)
    reports.append(prepared.report)
    out: list[T] = []
    for m, origin in zip(prepared.messages, prepared.origin, strict=True):
        if origin is None:
            out.append(summary(m.content))
        elif origin < lead:
            continue
        elif m == history[origin]:
            out.extend(unchanged(origin - lead))
        else:
            out.extend(edited(origin - lead, m))
    return out
