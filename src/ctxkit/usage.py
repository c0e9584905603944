"""Token usage of one call, in buckets with documented inclusion rules.

``input_tokens`` is *inclusive*: it counts every prompt token, cached or not.
``cache_read_tokens`` and ``cache_write_tokens`` are subsets of ``input_tokens``
(OpenAI reports cached tokens this way; Anthropic reports them apart, and
:meth:`Usage.from_anthropic` adds them back in). ``reasoning_tokens`` is a subset
of ``output_tokens``. Uncached input is ``input_tokens - cache_read - cache_write``.

Anthropic bills cache writes by time to live: 5-minute writes at 1.25x the input
price, 1-hour writes at 2x. ``cache_write_1h_tokens`` is the subset of
``cache_write_tokens`` written with the 1-hour TTL; the rest are 5-minute writes
(:attr:`Usage.cache_write_5m_tokens`). It defaults to 0, so code that only knows
``cache_write_tokens`` keeps working and prices every write at the 5-minute rate.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, model_validator

from ctxkit._model import CtxkitModel

__all__ = ["Usage"]


class Usage(CtxkitModel):
    """Token counts of one call (or a sum of calls)."""

    model_config = ConfigDict(frozen=True)

    input_tokens: int = Field(default=0, ge=0, description="all prompt tokens, cached ones included")
    cache_read_tokens: int = Field(default=0, ge=0, description="prompt tokens read from the cache (subset of input)")
    cache_write_tokens: int = Field(default=0, ge=0, description="prompt tokens written to the cache (subset of input)")
    cache_write_1h_tokens: int = Field(
        default=0, ge=0, description="cache writes with a 1-hour TTL (subset of cache_write_tokens)"
    )
    output_tokens: int = Field(default=0, ge=0, description="generated tokens, reasoning included")
    reasoning_tokens: int = Field(default=0, ge=0, description="hidden reasoning tokens (subset of output)")

    @model_validator(mode="after")
    def _check(self) -> Usage:
        if self.cache_read_tokens + self.cache_write_tokens > self.input_tokens:
            raise ValueError(
                "cache_read_tokens + cache_write_tokens exceed input_tokens; input_tokens must include them "
                "(use Usage.from_anthropic for Anthropic's exclusive counts)"
            )
        if self.cache_write_1h_tokens > self.cache_write_tokens:
            raise ValueError(
                "cache_write_1h_tokens exceed cache_write_tokens; cache_write_tokens must count 5-minute and "
                "1-hour writes together"
            )
        if self.reasoning_tokens > self.output_tokens:
            raise ValueError("reasoning_tokens exceed output_tokens; output_tokens must include them")
        return self

    @property
    def uncached_input_tokens(self) -> int:
        return self.input_tokens - self.cache_read_tokens - self.cache_write_tokens

    @property
    def cache_write_5m_tokens(self) -> int:
        """Cache writes with the default 5-minute TTL."""
        return self.cache_write_tokens - self.cache_write_1h_tokens

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            cache_write_1h_tokens=self.cache_write_1h_tokens + other.cache_write_1h_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
        )

    @classmethod
    def from_openai(cls, usage: dict[str, Any]) -> Usage:
        """From an OpenAI ``usage`` object (cached tokens are inside the prompt/input count).

        Accepts the chat-completions shape (``prompt_tokens``, ``prompt_tokens_details.cached_tokens``,
        ``completion_tokens_details.reasoning_tokens``) and the Responses API shape (``input_tokens``,
        ``input_tokens_details.cached_tokens``, ``output_tokens_details.reasoning_tokens``).
        """
        if "prompt_tokens" not in usage and "input_tokens" in usage:
            in_details = usage.get("input_tokens_details") or {}
            o_details = usage.get("output_tokens_details") or {}
            return cls(
                input_tokens=int(usage.get("input_tokens") or 0),
                cache_read_tokens=int(in_details.get("cached_tokens") or 0),
                output_tokens=int(usage.get("output_tokens") or 0),
                reasoning_tokens=int(o_details.get("reasoning_tokens") or 0),
            )
        details = usage.get("prompt_tokens_details") or {}
        out_details = usage.get("completion_tokens_details") or {}
        return cls(
            input_tokens=int(usage.get("prompt_tokens") or 0),
            cache_read_tokens=int(details.get("cached_tokens") or 0),
            output_tokens=int(usage.get("completion_tokens") or 0),
            reasoning_tokens=int(out_details.get("reasoning_tokens") or 0),
        )

    @classmethod
    def from_anthropic(cls, usage: dict[str, Any]) -> Usage:
        """From an Anthropic Messages ``usage`` object (its input_tokens exclude cache reads and writes).

        The optional ``cache_creation`` object (``ephemeral_5m_input_tokens``,
        ``ephemeral_1h_input_tokens``) splits the writes by TTL.
        """
        read = int(usage.get("cache_read_input_tokens") or 0)
        write = int(usage.get("cache_creation_input_tokens") or 0)
        split = usage.get("cache_creation") or {}
        write_5m = int(split.get("ephemeral_5m_input_tokens") or 0)
        write_1h = int(split.get("ephemeral_1h_input_tokens") or 0)
        write = max(write, write_5m + write_1h)
        return cls(
            input_tokens=int(usage.get("input_tokens") or 0) + read + write,
            cache_read_tokens=read,
            cache_write_tokens=write,
            cache_write_1h_tokens=write_1h,
            output_tokens=int(usage.get("output_tokens") or 0),
        )

    @classmethod
    def from_langchain(cls, usage_metadata: dict[str, Any]) -> Usage:
        """From a LangChain ``AIMessage.usage_metadata`` (``input_tokens`` there already includes cached tokens).

        ``input_token_details.cache_read`` / ``cache_creation`` and ``output_token_details.reasoning``
        become the matching buckets; ``ephemeral_1h_input_tokens`` (set by langchain-anthropic)
        splits the cache writes by TTL.
        """
        details = usage_metadata.get("input_token_details") or {}
        out_details = usage_metadata.get("output_token_details") or {}
        write = int(details.get("cache_creation") or 0)
        write_5m = int(details.get("ephemeral_5m_input_tokens") or 0)
        write_1h = int(details.get("ephemeral_1h_input_tokens") or 0)
        write = max(write, write_5m + write_1h)
        read = int(details.get("cache_read") or 0)
        return cls(
            input_tokens=int(usage_metadata.get("input_tokens") or 0),
            cache_read_tokens=read,
            cache_write_tokens=write,
            cache_write_1h_tokens=write_1h,
            output_tokens=int(usage_metadata.get("output_tokens") or 0),
            reasoning_tokens=int(out_details.get("reasoning") or 0),
        )
