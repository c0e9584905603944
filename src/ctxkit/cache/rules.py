"""Providers' prompt-caching rules, as data.

Every figure below comes from the providers' documentation (checked 2026-11-24); where a
third-party page quotes the primary one verbatim it is listed too. Rules change with new
model families: register your own with :func:`register_cache_rules`.

Anthropic (explicit ``cache_control`` breakpoints)
    Source: https://platform.claude.com/docs/en/build-with-claude/prompt-caching
    (quoted in anthropics/anthropic-sdk-python#1194 and docs.orq.ai/docs/proxy/prompt-caching).

    * at most **4** ``cache_control`` breakpoints per request (a fifth is a 400 error);
    * the prefix is rendered ``tools`` → ``system`` → ``messages``; a breakpoint caches
      everything up to and including its block;
    * on a lookup the API checks for a hit at each breakpoint and up to **20 blocks** before it;
    * a prefix shorter than the model's minimum is not cached (no error; usage shows 0):

      ==============================================================  ======
      model                                                           tokens
      ==============================================================  ======
      Claude Opus 4.6, Opus 4.5, Haiku 4.5                            4,096
      Claude Sonnet 4.6, Sonnet 4.5, Opus 4.1, Opus 4, Sonnet 4,
      Sonnet 3.7, Sonnet 3.5, Opus 3                                  1,024
      Claude Haiku 3.5, Haiku 3                                       2,048
      ==============================================================  ======

    * TTL ``5m`` (default, refreshed on every hit) or ``1h``; a 1-hour breakpoint must come
      before any 5-minute one;
    * prices relative to the base input price: 5-minute write **1.25x**, 1-hour write
      **2x**, cache read (hit or refresh) **0.1x**.

OpenAI (automatic prefix caching)
    Source: https://developers.openai.com/api/docs/guides/prompt-caching
    (also the OpenAI cookbook "Prompt Caching 201").

    * automatic for prompts of **1024 tokens** or more; hits come in **128-token increments**;
    * requests are routed by a hash of the first ~256 tokens; ``prompt_cache_key`` is
      combined with it to keep related requests on the same cache;
    * in-memory retention: cleared after 5–10 minutes of inactivity, always within 1 hour
      (ctxkit plans with the conservative 5 minutes); ``prompt_cache_retention="24h"`` keeps
      prefixes up to 24 hours on supported models (GPT-5 and GPT-4.1 families here);
    * reads cost the model's *cached input* price (50–90% off); writes carry no fee on
      models before the GPT-5.6 family. GPT-5.6 and later bill writes at **1.25x** input and
      accept explicit ``prompt_cache_breakpoint`` marks on content blocks (up to 4 written
      per request, one of them the implicit breakpoint unless
      ``prompt_cache_options.mode="explicit"``; TTL ``30m``) — see the async-openai docs of
      ``PromptCacheOptionsParam`` quoting the API reference, and microsoft/agent-framework#7157.
      These models match a prefix exactly at a breakpoint (no 128-token rounding).

llama.cpp (local)
    The in-process ``Llama`` object and the server (with ``cache_prompt``) keep the KV
    cache of the previous prompt and re-evaluate only the tokens after the longest
    common prefix. No minimum, no TTL, no price.
"""

from __future__ import annotations

import re
import threading
from typing import Literal

from pydantic import ConfigDict, Field

from ctxkit._model import CtxkitModel
from ctxkit.errors import InvalidInputError, UnknownNameError
from ctxkit.models import get_model

__all__ = [
    "ANTHROPIC_MIN_CACHEABLE_TOKENS",
    "CacheRules",
    "Provider",
    "register_cache_rules",
    "rules_for",
]

Provider = Literal["anthropic", "openai", "llamacpp"]


class CacheRules(CtxkitModel):
    """How one model's provider caches prompt prefixes."""

    model_config = ConfigDict(frozen=True)

    provider: Provider
    model: str = Field(description="the model (or model family prefix) these rules are for")
    min_cacheable_tokens: int = Field(ge=0, description="a prefix shorter than this is never cached")
    increment_tokens: int = Field(default=1, ge=1, description="cache hits are rounded down to a multiple of this")
    explicit_breakpoints: bool = Field(description="the request marks what to cache (cache_control / breakpoints)")
    automatic: bool = Field(description="the provider caches without any mark")
    max_breakpoints: int = Field(default=0, ge=0, description="most explicit breakpoints per request (0: none)")
    lookback_blocks: int | None = Field(
        default=None, description="blocks before a breakpoint checked for a hit (None: no limit)"
    )
    ttls_s: dict[str, float] = Field(
        default_factory=dict, description="TTL choices, name -> seconds of inactivity before eviction"
    )
    default_ttl: str = ""
    write_multiplier: dict[str, float] = Field(
        default_factory=dict, description="cache-write price per TTL as a multiple of the input price"
    )
    read_multiplier: float | None = Field(
        default=None, description="cache-read price as a multiple of input (None: use the model's cached price)"
    )
    cache_key_param: str | None = Field(default=None, description="request parameter that pins related requests")
    source: str = ""

    def ttl_seconds(self, ttl: str | None = None) -> float:
        """Seconds of inactivity before an entry written with ``ttl`` (default: the default TTL) expires."""
        name = ttl or self.default_ttl
        if not self.ttls_s:
            return float("inf")
        if name not in self.ttls_s:
            raise InvalidInputError(f"{self.provider} has no cache TTL {name!r}; choose one of {sorted(self.ttls_s)}")
        return self.ttls_s[name]


_ANTHROPIC_DOC = "https://platform.claude.com/docs/en/build-with-claude/prompt-caching"
_OPENAI_DOC = "https://developers.openai.com/api/docs/guides/prompt-caching"

#: Minimum cacheable prefix per Claude model (longest matching name prefix wins); see the module docstring.
ANTHROPIC_MIN_CACHEABLE_TOKENS: dict[str, int] = {
    "claude-opus-4-6": 4096,
    "claude-opus-4-5": 4096,
    "claude-haiku-4-5": 4096,
    "claude-sonnet-4-6": 1024,
    "claude-sonnet-4-5": 1024,
    "claude-opus-4-1": 1024,
    "claude-opus-4": 1024,
    "claude-sonnet-4": 1024,
    "claude-3-7-sonnet": 1024,
    "claude-3-5-sonnet": 1024,
    "claude-3-opus": 1024,
    "claude-3-5-haiku": 2048,
    "claude-3-haiku": 2048,
}


def _anthropic(model: str, minimum: int) -> CacheRules:
    return CacheRules(
        provider="anthropic",
        model=model,
        min_cacheable_tokens=minimum,
        explicit_breakpoints=True,
        automatic=False,
        max_breakpoints=4,
        lookback_blocks=20,
        ttls_s={"5m": 300.0, "1h": 3600.0},
        default_ttl="5m",
        write_multiplier={"5m": 1.25, "1h": 2.0},
        read_multiplier=0.1,
        source=_ANTHROPIC_DOC,
    )


def _openai(model: str, *, explicit: bool = False, extended: bool = False) -> CacheRules:
    if explicit:  # GPT-5.6 family and later
        return CacheRules(
            provider="openai",
            model=model,
            min_cacheable_tokens=1024,
            increment_tokens=1,
            explicit_breakpoints=True,
            automatic=True,
            max_breakpoints=4,
            ttls_s={"30m": 1800.0},
            default_ttl="30m",
            write_multiplier={"30m": 1.25},
            cache_key_param="prompt_cache_key",
            source=_OPENAI_DOC,
        )
    return CacheRules(
        provider="openai",
        model=model,
        min_cacheable_tokens=1024,
        increment_tokens=128,
        explicit_breakpoints=False,
        automatic=True,
        ttls_s={"in_memory": 300.0, "24h": 86400.0} if extended else {"in_memory": 300.0},
        default_ttl="in_memory",
        write_multiplier={"in_memory": 1.0, "24h": 1.0} if extended else {"in_memory": 1.0},
        cache_key_param="prompt_cache_key",
        source=_OPENAI_DOC,
    )


_LLAMACPP = CacheRules(
    provider="llamacpp",
    model="llamacpp",
    min_cacheable_tokens=0,
    explicit_breakpoints=False,
    automatic=True,
    write_multiplier={"": 1.0},
    read_multiplier=0.0,
    source="llama.cpp keeps the previous prompt's KV cache and reuses the longest common prefix",
)

_GPT_VERSION = re.compile(r"^gpt-(\d+)(?:\.(\d+))?(?:-|$)")
_lock = threading.Lock()
_rules: dict[str, CacheRules] = {
    **{name: _anthropic(name, n) for name, n in ANTHROPIC_MIN_CACHEABLE_TOKENS.items()},
    "claude": _anthropic("claude", 1024),
    "gpt-5.6": _openai("gpt-5.6", explicit=True),
    "gpt-5": _openai("gpt-5", extended=True),
    "gpt-4.1": _openai("gpt-4.1", extended=True),
    "gpt-4o": _openai("gpt-4o"),
    "o1": _openai("o1"),
    "o3": _openai("o3"),
    "o4": _openai("o4"),
    "gpt": _openai("gpt"),
    "llamacpp": _LLAMACPP,
    "gguf": _LLAMACPP,
    "smollm2": _LLAMACPP,
}


def register_cache_rules(name: str, rules: CacheRules) -> None:
    """Add or replace the caching rules for a model name or name prefix."""
    with _lock:
        _rules[name] = rules


def rules_for(model: str) -> CacheRules:
    """The caching rules of ``model``: exact name, else the longest registered name prefix.

    A ``provider:`` prefix (``anthropic:claude-sonnet-4-5``) is ignored for lookup, and a
    model registered with :func:`ctxkit.register_model` is found by its provider.
    """
    key = model.split(":", 1)[1] if ":" in model and not model.startswith(("gguf", "llamacpp")) else model
    if model.startswith(("gguf", "llamacpp")):
        return _LLAMACPP
    with _lock:
        if key in _rules:
            return _rules[key]
        version = _GPT_VERSION.match(key)
        if version and (int(version.group(1)), int(version.group(2) or 0)) >= (5, 6):
            return _openai(key, explicit=True)  # "GPT-5.6 models and later model families"
        best = max((k for k in _rules if key.startswith(k)), key=len, default=None)
        if best is not None:
            return _rules[best]
    try:
        info = get_model(model)
    except UnknownNameError:
        info = None
    if info is not None:
        if info.local:
            return _LLAMACPP
        if info.provider == "anthropic":
            return _anthropic(info.name, 1024)
        if info.provider == "openai":
            return _openai(info.name)
    raise UnknownNameError(
        "model (cache rules)",
        model,
        sorted(_rules),
        hint="Register them with ctxkit.cache.register_cache_rules(name, CacheRules(...)).",
    )
