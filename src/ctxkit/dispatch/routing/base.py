"""The router interface: a request in, a :class:`~ctxkit.dispatch.decision.RouteDecision` out."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ctxkit.dispatch.backends.base import Request
from ctxkit.dispatch.decision import RouteDecision
from ctxkit.dispatch.result import Result
from ctxkit.tokenizers import get_chat_counter
from ctxkit.tokenizers.chat import ChatCounter

__all__ = ["Router", "last_user_text"]


@runtime_checkable
class Router(Protocol):
    """Chooses a route (a backend name known to the dispatcher) for a request.

    ``observe`` is told the result of each routed call (session-aware routers use it;
    others ignore it).
    """

    name: str

    def route(self, request: Request) -> RouteDecision: ...

    def observe(self, request: Request, result: Result) -> None: ...


def last_user_text(request: Request) -> str:
    """The text routers classify: the content of the last user message (else the last message)."""
    for m in reversed(request.messages):
        if m.role == "user":
            return m.content
    return request.messages[-1].content


class CountsPromptTokens:
    """For a router that reads a request's prompt size: the assembled prompt's own total when there is
    one, else ``self.counter``'s count of the messages and tools (the gpt-4o counter, built on first use)."""

    counter: ChatCounter | None

    def _tokens(self, request: Request) -> int:
        if request.prompt is not None:
            return request.prompt.total_tokens
        if self.counter is None:
            self.counter = get_chat_counter("gpt-4o")
        return self.counter.count_messages(request.messages, request.tools)
