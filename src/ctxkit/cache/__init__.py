"""Cache-friendly prefixes: layout, lint, miss diagnosis, breakpoint planning, simulation.

Prompt caching only pays when the prefix of a request is byte-identical to a recent
one's. This package makes that prefix a first-class, checked thing:

* :mod:`~ctxkit.cache.layout` — stability classes (static / session / turn), the request
  as ordered segments, the stable prefix's fingerprint and token count, canonical tools;
* :mod:`~ctxkit.cache.lint` — volatile content (timestamps, ids, JWTs, counters,
  reordered tools) inside stable sections, with section, field and token position;
* :mod:`~ctxkit.cache.diff` — explain a miss between two consecutive requests;
* :mod:`~ctxkit.cache.rules` and :mod:`~ctxkit.cache.prices` — the providers' documented
  caching rules, and per-model prices read from the price book (:mod:`ctxkit.pricing`);
* :mod:`~ctxkit.cache.provider` and :mod:`~ctxkit.cache.providers` — one
  :class:`CacheProvider` object per provider (Anthropic, OpenAI, llama.cpp), looked up by
  name: its rules, prices, render order, planner, marks and replay;
* :mod:`~ctxkit.cache.plan` — Anthropic breakpoints and TTLs, OpenAI cache keys and
  breakpoints, with the expected saving;
* :mod:`~ctxkit.cache.simulate` — replay a session under a provider's rules, two
  layouts side by side;
* :mod:`~ctxkit.cache.compaction` — whether compacting history now is worth breaking the cache.
"""

from ctxkit.cache.compaction import CacheAwareCompaction, CompactionDecision, CompactionGate, decide_compaction
from ctxkit.cache.diff import MissReport, explain_miss, reusable_tokens
from ctxkit.cache.layout import (
    DEFAULT_STABILITY,
    PrefixInfo,
    Segment,
    Stability,
    canonical_tools,
    prefix_info,
    resolve_stability,
    segments,
    stable_prefix_fingerprint,
    stable_prefix_tokens,
)
from ctxkit.cache.lint import LintFinding, LintReport, lint, scan_text
from ctxkit.cache.plan import (
    Breakpoint,
    CachePlan,
    TtlChoice,
    choose_ttl,
    plan_anthropic,
    plan_cache,
    plan_llamacpp,
    plan_openai,
)
from ctxkit.cache.prices import DEFAULT_PRICES, CachePrices, prices_for
from ctxkit.cache.provider import CacheProvider, cache_provider, cache_providers, provider_for, register_cache_provider
from ctxkit.cache.providers import AnthropicCache, LlamaCppCache, OpenAICache
from ctxkit.cache.rules import ANTHROPIC_MIN_CACHEABLE_TOKENS, CacheRules, register_cache_rules, rules_for
from ctxkit.cache.simulate import CallCost, LayoutComparison, SimulationReport, compare, simulate

__all__ = [
    "ANTHROPIC_MIN_CACHEABLE_TOKENS",
    "DEFAULT_PRICES",
    "DEFAULT_STABILITY",
    "AnthropicCache",
    "Breakpoint",
    "CacheAwareCompaction",
    "CachePlan",
    "CachePrices",
    "CacheProvider",
    "CacheRules",
    "CallCost",
    "CompactionDecision",
    "CompactionGate",
    "LayoutComparison",
    "LintFinding",
    "LintReport",
    "LlamaCppCache",
    "MissReport",
    "OpenAICache",
    "PrefixInfo",
    "Segment",
    "SimulationReport",
    "Stability",
    "TtlChoice",
    "cache_provider",
    "cache_providers",
    "canonical_tools",
    "choose_ttl",
    "compare",
    "decide_compaction",
    "explain_miss",
    "lint",
    "plan_anthropic",
    "plan_cache",
    "plan_llamacpp",
    "plan_openai",
    "prefix_info",
    "prices_for",
    "provider_for",
    "register_cache_provider",
    "register_cache_rules",
    "resolve_stability",
    "reusable_tokens",
    "rules_for",
    "scan_text",
    "segments",
    "simulate",
    "stable_prefix_fingerprint",
    "stable_prefix_tokens",
]
