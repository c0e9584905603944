"""Per-token prices for cache planning and simulation, as explicit inputs.

:class:`CachePrices` holds one model's USD prices per million tokens, bucketed the way
providers bill prompt caching. The defaults below are list prices for a few models,
checked 2026-11-24 (standard tier, text tokens):

=================  =====  ==========  ==========  ===========  ======
model              input  cache_read  write (5m)  write (1h)   output
=================  =====  ==========  ==========  ===========  ======
claude-sonnet-4-5   3.00        0.30        3.75         6.00   15.00
claude-haiku-4-5    1.00        0.10        1.25         2.00    5.00
claude-opus-4-1    15.00        1.50       18.75        30.00   75.00
claude-3-5-haiku    0.80        0.08        1.00         1.60    4.00
gpt-4o              2.50        1.25        2.50         2.50   10.00
gpt-4o-mini         0.15       0.075        0.15         0.15    0.60
gpt-4.1             2.00        0.50        2.00         2.00    8.00
gpt-5               1.25       0.125        1.25         1.25   10.00
=================  =====  ==========  ==========  ===========  ======

Sources: https://platform.claude.com/docs/en/about-claude/pricing (Anthropic's cache
multipliers 1.25x / 2x / 0.1x of input), https://developers.openai.com/api/docs/pricing
(OpenAI writes carry no fee before GPT-5.6, so a "write" costs the input price).
Prices change: pass your own :class:`CachePrices` for anything that matters, or build
one from a price book with :meth:`CachePrices.from_mapping`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import ConfigDict, Field, model_validator

from ctxkit._model import CtxkitModel
from ctxkit.errors import InvalidInputError, UnknownNameError

__all__ = ["DEFAULT_PRICES", "CachePrices", "prices_for"]

_PER = 1_000_000.0
_SNAPSHOT = re.compile(r"(-\d{4}-\d{2}-\d{2}|-\d{8}|-latest)$")


class CachePrices(CtxkitModel):
    """USD per million tokens: uncached input, cache reads, cache writes per TTL, and output.

    ``cache_write`` maps a TTL name (``"5m"``, ``"1h"``, ``"in_memory"``, ...) to its write
    price; a TTL missing from it is billed at ``input`` (no write premium).
    """

    model_config = ConfigDict(frozen=True)

    model: str = ""
    input: float = Field(ge=0, description="uncached prompt tokens")
    cache_read: float = Field(ge=0, description="prompt tokens served from the cache")
    cache_write: dict[str, float] = Field(default_factory=dict, description="prompt tokens written, per TTL")
    output: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> CachePrices:
        if any(v < 0 for v in self.cache_write.values()):
            raise ValueError("cache_write prices must be >= 0")
        return self

    @classmethod
    def anthropic(cls, input: float, output: float, *, model: str = "") -> CachePrices:
        """Prices from Anthropic's documented multipliers: writes 1.25x (5m) / 2x (1h), reads 0.1x input."""
        return cls(
            model=model,
            input=input,
            cache_read=round(input * 0.1, 6),
            cache_write={"5m": round(input * 1.25, 6), "1h": round(input * 2.0, 6)},
            output=output,
        )

    @classmethod
    def openai(
        cls, input: float, cached: float, output: float, *, model: str = "", write: float | None = None
    ) -> CachePrices:
        """OpenAI prices: ``cached`` is the cached-input price; writes cost ``write`` (default: input, no fee)."""
        w = input if write is None else write
        return cls(
            model=model,
            input=input,
            cache_read=cached,
            cache_write={"in_memory": w, "24h": w, "30m": w},
            output=output,
        )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, model: str = "") -> CachePrices:
        """From a price-book entry with keys ``input``, ``cache_read``, ``cache_write_5m``,
        ``cache_write_1h`` and ``output`` (numbers or numeric strings, per million tokens)."""
        try:
            inp = float(data["input"])
            raw_read = data.get("cache_read")
            read = inp if raw_read is None else float(raw_read)
            writes: dict[str, float] = {}
            for key, ttl in (("cache_write_5m", "5m"), ("cache_write_1h", "1h")):
                if data.get(key) is not None:
                    writes[ttl] = float(data[key])
            out = float(data.get("output") or 0.0)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"a price entry needs numeric 'input' (and optional cache_read, cache_write_5m, cache_write_1h, "
                f"output) per million tokens; got {dict(data)!r}"
            ) from exc
        for ttl in ("in_memory", "24h", "30m"):
            writes.setdefault(ttl, writes.get("5m", inp))
        return cls(model=model, input=inp, cache_read=read, cache_write=writes, output=out)

    def write_price(self, ttl: str) -> float:
        """Price per million tokens written with ``ttl``."""
        return self.cache_write.get(ttl, self.input)

    def cost(self, *, uncached: int = 0, read: int = 0, written: int = 0, ttl: str = "", output: int = 0) -> float:
        """USD for the given token counts."""
        return (
            uncached * self.input + read * self.cache_read + written * self.write_price(ttl) + output * self.output
        ) / _PER


DEFAULT_PRICES: dict[str, CachePrices] = {
    "claude-sonnet-4-5": CachePrices.anthropic(3.0, 15.0, model="claude-sonnet-4-5"),
    "claude-haiku-4-5": CachePrices.anthropic(1.0, 5.0, model="claude-haiku-4-5"),
    "claude-opus-4-1": CachePrices.anthropic(15.0, 75.0, model="claude-opus-4-1"),
    "claude-3-5-haiku": CachePrices.anthropic(0.80, 4.0, model="claude-3-5-haiku"),
    "gpt-4o-mini": CachePrices.openai(0.15, 0.075, 0.60, model="gpt-4o-mini"),
    "gpt-4o": CachePrices.openai(2.50, 1.25, 10.0, model="gpt-4o"),
    "gpt-4.1": CachePrices.openai(2.00, 0.50, 8.0, model="gpt-4.1"),
    "gpt-5": CachePrices.openai(1.25, 0.125, 10.0, model="gpt-5"),
}


def prices_for(model: str) -> CachePrices:
    """Prices for ``model`` from ctxkit's price book (:mod:`ctxkit.pricing`), the one source of
    truth that telemetry bills with; :data:`DEFAULT_PRICES` is the fallback for a model the
    book lacks. Variants (``gpt-5-mini``) are *not* matched to their family: their prices differ.
    """
    from ctxkit.pricing import get_price

    book = get_price(model)
    if book is not None:
        entry = {
            k: v
            for k, v in book.model_dump().items()
            if k in ("input", "cache_read", "cache_write_5m", "cache_write_1h", "output")
        }
        prices = CachePrices.from_mapping(entry, model=book.model)
        if book.provider == "openai" and entry.get("cache_write_5m") is None:
            prices = CachePrices.openai(prices.input, prices.cache_read, prices.output, model=book.model)
        return prices
    key = model.split(":", 1)[1] if ":" in model else model
    key = _SNAPSHOT.sub("", key)
    if key not in DEFAULT_PRICES:
        raise UnknownNameError(
            "model (cache prices)",
            model,
            list(DEFAULT_PRICES),
            hint="Add it to the price book (ctxkit.register_price) or pass prices=CachePrices(...) explicitly.",
        )
    return DEFAULT_PRICES[key]
