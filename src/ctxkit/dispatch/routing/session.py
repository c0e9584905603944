"""Session-aware routing: the cached prefix of the model a session is on is priced into the decision.

A session that has been talking to model A has A's cache warm with the conversation
so far. When the inner router now prefers model B, switching forfeits that cache.
:class:`SessionAwareRouter` prices both options with :mod:`ctxkit.pricing` — staying
(the prefix billed at A's cache-read price) against switching (all input uncached
on B) — and stays when staying is no more expensive, unless the inner router
escalated for quality or A is cheaper per token than B (a downgrade is never kept
for cache reasons).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from decimal import Decimal

from ctxkit.dispatch.backends.base import Request
from ctxkit.dispatch.decision import RouteDecision
from ctxkit.dispatch.result import Result, price_usage
from ctxkit.dispatch.routing.base import CountsPromptTokens, Router
from ctxkit.tokenizers.chat import ChatCounter
from ctxkit.usage import Usage

__all__ = ["SessionAwareRouter"]


class SessionAwareRouter(CountsPromptTokens):
    """Wraps a router with cache stickiness per ``request.session_id``.

    ``models`` maps each route to the model name its price is looked up under.
    The cached prefix of a session is the previous call's input plus output tokens,
    assumed warm for ``cache_ttl_s`` seconds (Anthropic's and OpenAI's default 5 minutes).
    """

    def __init__(
        self,
        inner: Router,
        models: Mapping[str, str],
        *,
        expected_output_tokens: int = 256,
        cache_ttl_s: float = 300.0,
        counter: ChatCounter | None = None,
        clock: Callable[[], float] = time.monotonic,
        name: str = "session",
    ) -> None:
        self.inner = inner
        self.models = dict(models)
        self.expected_output_tokens = expected_output_tokens
        self.cache_ttl_s = cache_ttl_s
        self.counter = counter
        self.clock = clock
        self.name = name
        self._sessions: dict[str, tuple[str, int, float]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SessionAwareRouter(inner={self.inner!r}, sessions={len(self._sessions)})"

    def _price(self, route: str, usage: Usage) -> Decimal | None:
        model = self.models.get(route)
        return None if model is None else price_usage(usage, model)

    def route(self, request: Request) -> RouteDecision:
        decision = self.inner.route(request)
        sid = request.session_id
        if sid is None:
            return decision
        with self._lock:
            state = self._sessions.get(sid)
        if state is None:
            return decision
        sticky, cached, seen = state
        if sticky == decision.route or self.clock() - seen > self.cache_ttl_s or decision.escalated:
            return decision
        n = self._tokens(request)
        out = self.expected_output_tokens
        stay = self._price(sticky, Usage(input_tokens=n, cache_read_tokens=min(cached, n), output_tokens=out))
        switch = self._price(decision.route, Usage(input_tokens=n, output_tokens=out))
        stay_plain = self._price(sticky, Usage(input_tokens=n, output_tokens=out))
        if stay is None or switch is None or stay_plain is None:
            return decision.model_copy(
                update={"reason": decision.reason + "; session cache not priced (unknown price)", "trail": (decision,)}
            )
        if stay_plain < switch:  # the sticky model is the cheaper one: the inner router chose to upgrade
            return decision
        if stay <= switch:
            return RouteDecision(
                route=sticky,
                router=self.name,
                score=float(switch - stay),
                trail=(decision,),
                reason=(
                    f"stayed on {sticky!r}: its warm cache of {min(cached, n)} tokens makes this call cost "
                    f"{stay:.6f} vs {switch:.6f} on {decision.route!r}"
                ),
            )
        return decision.model_copy(
            update={
                "reason": decision.reason + f"; switching from {sticky!r} still cheaper ({switch:.6f} < {stay:.6f})",
                "trail": (decision,),
            }
        )

    def observe(self, request: Request, result: Result) -> None:
        self.inner.observe(request, result)
        if request.session_id is None or result.decision is None:
            return
        with self._lock:
            self._sessions[request.session_id] = (
                result.decision.route,
                result.usage.input_tokens + result.usage.output_tokens,
                self.clock(),
            )
