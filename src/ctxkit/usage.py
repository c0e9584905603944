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

from collections.abc import Mapping
from typing import Any

from pydantic import ConfigDict, Field, model_validator

from ctxkit._model import CtxkitModel
from ctxkit.errors import InvalidInputError

__all__ = ["Usage"]


def _count(data: Mapping[str, Any], key: str) -> int:
    """A token count from a provider payload: a non-negative int (``None``/missing is 0)."""
    value = data.get(key)
    if value is None:
        return 0
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not whole or value < 0:
        raise InvalidInputError(
            f"usage field {key!r} must be a token count (an int >= 0), got {value!r}; pass the provider's "
            "usage object unchanged"
        )
    return int(value)


def _obj(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"usage field {key!r} must be an object of token counts, not {type(value).__name__}")
    return value


def _payload(usage: Any, source: str) -> Mapping[str, Any]:
    if isinstance(usage, Mapping):
        return usage
    dump = getattr(usage, "model_dump", None)  # the SDK's own usage object
    if callable(dump):
        data = dump()
        if isinstance(data, Mapping):
            return data
    raise InvalidInputError(f"Usage.from_{source} takes the provider's usage dict, not {type(usage).__name__}")


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
    def from_openai(cls, usage: Mapping[str, Any]) -> Usage:
        """From an OpenAI ``usage`` object (cached tokens are inside the prompt/input count).

        Accepts the chat-completions shape (``prompt_tokens``, ``prompt_tokens_details.cached_tokens``,
        ``completion_tokens_details.reasoning_tokens``) and the Responses API shape (``input_tokens``,
        ``input_tokens_details.cached_tokens``, ``output_tokens_details.reasoning_tokens``).
        """
        usage = _payload(usage, "openai")
        if "prompt_tokens" not in usage and "input_tokens" in usage:
            in_details = _obj(usage, "input_tokens_details")
            o_details = _obj(usage, "output_tokens_details")
            return cls(
                input_tokens=_count(usage, "input_tokens"),
                cache_read_tokens=_count(in_details, "cached_tokens"),
                output_tokens=_count(usage, "output_tokens"),
                reasoning_tokens=_count(o_details, "reasoning_tokens"),
            )
        details = _obj(usage, "prompt_tokens_details")
        out_details = _obj(usage, "completion_tokens_details")
        return cls(
            input_tokens=_count(usage, "prompt_tokens"),
            cache_read_tokens=_count(details, "cached_tokens"),
            output_tokens=_count(usage, "completion_tokens"),
            reasoning_tokens=_count(out_details, "reasoning_tokens"),
        )

    @classmethod
    def from_anthropic(cls, usage: Mapping[str, Any]) -> Usage:
        """From an Anthropic Messages ``usage`` object (its input_tokens exclude cache reads and writes).

        The optional ``cache_creation`` object (``ephemeral_5m_input_tokens``,
        ``ephemeral_1h_input_tokens``) splits the writes by TTL.
        """
        usage = _payload(usage, "anthropic")
        read = _count(usage, "cache_read_input_tokens")
        write = _count(usage, "cache_creation_input_tokens")
        split = _obj(usage, "cache_creation")
        write_5m = _count(split, "ephemeral_5m_input_tokens")
        write_1h = _count(split, "ephemeral_1h_input_tokens")
        write = max(write, write_5m + write_1h)
        return cls(
            input_tokens=_count(usage, "input_tokens") + read + write,
            cache_read_tokens=read,
            cache_write_tokens=write,
            cache_write_1h_tokens=write_1h,
            output_tokens=_count(usage, "output_tokens"),
        )

    @classmethod
    def from_langchain(cls, usage_metadata: Mapping[str, Any]) -> Usage:
        """From a LangChain ``AIMessage.usage_metadata`` (``input_tokens`` there already includes cached tokens).

        ``input_token_details.cache_read`` / ``cache_creation`` and ``output_token_details.reasoning``
        become the matching buckets; ``ephemeral_1h_input_tokens`` (set by langchain-anthropic)
        splits the cache writes by TTL.
        """
        usage_metadata = _payload(usage_metadata, "langchain")
        details = _obj(usage_metadata, "input_token_details")
        out_details = _obj(usage_metadata, "output_token_details")
        write = _count(details, "cache_creation")
        write_5m = _count(details, "ephemeral_5m_input_tokens")
        write_1h = _count(details, "ephemeral_1h_input_tokens")
        write = max(write, write_5m + write_1h)
        read = _count(details, "cache_read")
        return cls(
            input_tokens=_count(usage_metadata, "input_tokens"),
            cache_read_tokens=read,
            cache_write_tokens=write,
            cache_write_1h_tokens=write_1h,
            output_tokens=_count(usage_metadata, "output_tokens"),
            reasoning_tokens=_count(out_details, "reasoning"),
        )
