"""Rule routing: first matching rule wins (tags, token counts, sensitivity, tool use, any predicate)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pydantic import ConfigDict, Field

from ctxkit._model import CtxkitModel
from ctxkit.dispatch.backends.base import Request
from ctxkit.dispatch.decision import RouteDecision
from ctxkit.dispatch.result import Result
from ctxkit.dispatch.routing.base import CountsPromptTokens
from ctxkit.errors import InvalidInputError
from ctxkit.tokenizers.chat import ChatCounter

__all__ = ["Rule", "RulesRouter"]


class Rule(CtxkitModel):
    """A condition and the route it sends to. Every condition given must hold.

    ``min_tokens``/``max_tokens`` bound the prompt's tokens (inclusive);
    ``tags_any``/``tags_all`` test the request's tags; ``sensitive`` and ``has_tools``
    match when equal; ``when`` is any predicate on the request.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    route: str
    name: str = ""
    tags_any: frozenset[str] = frozenset()
    tags_all: frozenset[str] = frozenset()
    min_tokens: int | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=None, ge=0)
    sensitive: bool | None = None
    has_tools: bool | None = None
    when: Callable[[Request], bool] | None = None

    def label(self) -> str:
        if self.name:
            return self.name
        parts = []
        if self.tags_any:
            parts.append(f"tags any of {sorted(self.tags_any)}")
        if self.tags_all:
            parts.append(f"tags all of {sorted(self.tags_all)}")
        if self.min_tokens is not None:
            parts.append(f"tokens >= {self.min_tokens}")
        if self.max_tokens is not None:
            parts.append(f"tokens <= {self.max_tokens}")
        if self.sensitive is not None:
            parts.append(f"sensitive={self.sensitive}")
        if self.has_tools is not None:
            parts.append(f"has_tools={self.has_tools}")
        if self.when is not None:
            parts.append(f"when={getattr(self.when, '__name__', 'predicate')}")
        return " and ".join(parts) or "always"

    def matches(self, request: Request, tokens: Callable[[], int]) -> bool:
        if self.tags_any and not (self.tags_any & request.tags):
            return False
        if self.tags_all and not self.tags_all <= request.tags:
            return False
        if self.sensitive is not None and request.sensitive != self.sensitive:
            return False
        if self.has_tools is not None and bool(request.tools) != self.has_tools:
            return False
        if self.min_tokens is not None and tokens() < self.min_tokens:
            return False
        if self.max_tokens is not None and tokens() > self.max_tokens:
            return False
        return not (self.when is not None and not self.when(request))


class RulesRouter(CountsPromptTokens):
    """Ordered rules; the first match decides, else ``default``.

    Token counts come from the assembled prompt when the request has one, else from
    ``counter`` (default: the gpt-4o counter, o200k_base), counted only if a rule asks.
    """

    def __init__(
        self, rules: Sequence[Rule], default: str, *, counter: ChatCounter | None = None, name: str = "rules"
    ) -> None:
        if not default:
            raise InvalidInputError("RulesRouter needs a default route for requests no rule matches")
        self.rules = list(rules)
        self.default = default
        self.counter = counter
        self.name = name

    def __repr__(self) -> str:
        return f"RulesRouter({len(self.rules)} rules, default={self.default!r})"

    def route(self, request: Request) -> RouteDecision:
        cache: list[int] = []

        def tokens() -> int:
            if not cache:
                cache.append(self._tokens(request))
            return cache[0]

        for i, rule in enumerate(self.rules):
            if rule.matches(request, tokens):
                return RouteDecision(
                    route=rule.route,
                    reason=f"rule {i} matched: {rule.label()}",
                    score=float(len(self.rules) - i),
                    router=self.name,
                )
        return RouteDecision(
            route=self.default, reason="no rule matched: default route", router=self.name, abstained=True
        )

    def observe(self, request: Request, result: Result) -> None:
        """Rules keep no state."""
