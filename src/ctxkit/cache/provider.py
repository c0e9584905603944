"""The cache-provider abstraction and its registry.

A :class:`CacheProvider` is everything ctxkit knows about how one provider caches prompt
prefixes: its rules (:func:`~ctxkit.cache.rules.rules_for`), its prices (the price book,
:func:`~ctxkit.cache.prices.prices_for`), the order in which it renders a request (Anthropic
puts system blocks before the turns and has its own tool schema), how a plan is made and
marked on the request, and how a session is replayed against its cache. Planning
(:func:`~ctxkit.cache.plan.plan_cache`), rendering (:meth:`~ctxkit.cache.plan.CachePlan.apply`),
segmentation (:func:`~ctxkit.cache.layout.segments`) and simulation
(:func:`~ctxkit.cache.simulate.simulate`) look the provider up here by name and dispatch to it.

The built-in providers (``anthropic``, ``openai``, ``llamacpp``) live in
:mod:`ctxkit.cache.providers` and register themselves when :mod:`ctxkit.cache` is imported.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from ctxkit.cache.prices import CachePrices, prices_for
from ctxkit.cache.rules import CacheRules, rules_for
from ctxkit.errors import InvalidInputError, UnknownNameError
from ctxkit.messages import ToolSpec

if TYPE_CHECKING:
    from ctxkit.assembly.prompt import AssembledPrompt
    from ctxkit.cache.plan import CachePlan
    from ctxkit.cache.simulate import CallCost, Replay

__all__ = [
    "PLAN_OPTIONS",
    "CacheProvider",
    "cache_provider",
    "cache_providers",
    "provider_for",
    "provider_name",
    "register_cache_provider",
]

#: Every option :func:`~ctxkit.cache.plan.plan_cache` accepts; a provider takes a subset (``plan_options``).
PLAN_OPTIONS: frozenset[str] = frozenset(
    {
        "prices",
        "rules",
        "remaining_calls",
        "interval_s",
        "static_interval_s",
        "cache_key",
        "counter",
        "stability",
        "may_be_cached",
    }
)


class CacheProvider(ABC):
    """One provider's prompt caching: rules, prices, render order, planning, marks and replay."""

    #: the name plans, rules and reports carry (``CacheRules.provider``)
    name: ClassVar[str]
    #: system-role messages are rendered apart, before all other messages
    system_first: ClassVar[bool] = False
    #: hits end at a block (message or tool) boundary, never inside one
    block_boundaries: ClassVar[bool] = False
    #: the :data:`PLAN_OPTIONS` this provider's planner takes
    plan_options: ClassVar[frozenset[str]] = PLAN_OPTIONS

    def rules(self, model: str) -> CacheRules:
        """The caching rules of ``model`` under this provider."""
        return rules_for(model)

    def prices(self, model: str) -> CachePrices:
        """``model``'s prices from the price book."""
        return prices_for(model)

    def tool_wire(self, tool: ToolSpec) -> dict[str, Any]:
        """A tool definition as this provider's request carries it."""
        return tool.to_openai()

    def message_order(self, prompt: AssembledPrompt) -> list[int]:
        """Indices of ``prompt.messages`` in the order the provider renders them (after the tools)."""
        order = list(range(len(prompt.messages)))
        if self.system_first:
            order.sort(key=lambda k: 0 if prompt.messages[k].role in ("system", "developer") else 1)
        return order

    @abstractmethod
    def plan(self, prompt: AssembledPrompt, **options: Any) -> CachePlan:
        """A cache plan for ``prompt`` (options: this provider's :attr:`plan_options`)."""

    @abstractmethod
    def apply(self, plan: CachePlan, prompt: AssembledPrompt) -> dict[str, Any]:
        """Request keyword arguments for this provider with ``plan``'s marks in place."""

    @abstractmethod
    def replay(self, session: Replay) -> list[CallCost]:
        """Bill each call of ``session`` against this provider's cache, in order."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


_lock = threading.Lock()
_providers: dict[str, CacheProvider] = {}


def register_cache_provider(provider: CacheProvider) -> CacheProvider:
    """Add or replace the provider registered under ``provider.name``; returns it."""
    if not isinstance(provider, CacheProvider):
        raise InvalidInputError(
            f"register_cache_provider needs a CacheProvider (subclass it), not {type(provider).__name__}"
        )
    with _lock:
        _providers[provider.name] = provider
    return provider


def cache_providers() -> dict[str, CacheProvider]:
    """The registered providers by name."""
    with _lock:
        return dict(_providers)


def cache_provider(name: str) -> CacheProvider:
    """The provider registered as ``name`` (``"anthropic"``, ``"openai"``, ``"llamacpp"``, ...)."""
    with _lock:
        found = _providers.get(name)
        known = list(_providers)
    if found is None:
        raise UnknownNameError(
            "cache provider",
            str(name),
            known,
            hint="Register one with ctxkit.cache.register_cache_provider(...).",
        )
    return found


def provider_name(model: str) -> str:
    """The name of ``model``'s cache provider, from its rules (a model without rules renders as OpenAI)."""
    try:
        return rules_for(model).provider
    except UnknownNameError:
        return "openai"


def provider_for(model: str) -> CacheProvider:
    """``model``'s cache provider object."""
    return cache_provider(provider_name(model))
