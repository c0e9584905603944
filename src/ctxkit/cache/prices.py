"""Per-token prices for cache planning and simulation: a float view of ctxkit's price book.

The numbers live in one place, the price book (:mod:`ctxkit.pricing`, ``ctxkit/data/prices.json``,
exact decimals with their sources and the date they were checked). :func:`prices_for` reads a
model's entry there and converts it, at this edge, to the float :class:`CachePrices` the
planner's arithmetic uses, with the write prices keyed by the provider's TTL names
(Anthropic ``5m`` / ``1h``; OpenAI ``in_memory`` / ``24h`` / ``30m``, where a write costs the
input price unless the book lists a write price).

Override a price once with :func:`ctxkit.register_price` (or :func:`ctxkit.pricing.load_prices`):
the planner, the simulator and telemetry then bill with the same figure. Pass your own
:class:`CachePrices` to price one call differently.

:data:`DEFAULT_PRICES`, kept for code that imported it, is a read-only view of the same
book (model name -> :class:`CachePrices`), not a second table; it cannot be assigned to.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import ConfigDict, Field, model_validator

from ctxkit._model import CtxkitModel
from ctxkit.cache.rules import rules_for
from ctxkit.errors import InvalidInputError, UnknownNameError
from ctxkit.pricing import ModelPrice, default_price_book, get_price

__all__ = ["DEFAULT_PRICES", "CachePrices", "prices_for"]

_PER = 1_000_000.0
_BOOK_RATES = ("input", "cache_read", "cache_write_5m", "cache_write_1h", "output")


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
        """Prices from Anthropic's documented multipliers (:mod:`ctxkit.cache.rules`): writes 1.25x (5m) /
        2x (1h), reads 0.1x input."""
        rules = rules_for("claude")
        return cls(
            model=model,
            input=input,
            cache_read=round(input * (rules.read_multiplier or 0.0), 6),
            cache_write={ttl: round(input * m, 6) for ttl, m in rules.write_multiplier.items()},
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
    def from_price(cls, price: ModelPrice) -> CachePrices:
        """From a price-book entry (:class:`ctxkit.pricing.ModelPrice`): its exact prices as floats.

        An OpenAI entry without a write price bills writes at the input price (no write fee).
        """
        prices = cls.from_mapping({k: getattr(price, k) for k in _BOOK_RATES}, model=price.model)
        if price.provider == "openai" and price.cache_write_5m is None:
            return cls.openai(prices.input, prices.cache_read, prices.output, model=price.model)
        return prices

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


def prices_for(model: str) -> CachePrices:
    """Prices for ``model`` from ctxkit's price book (:mod:`ctxkit.pricing`), the one source that
    telemetry bills with too. Variants (``gpt-5-mini``) are *not* matched to their family: their prices differ.
    """
    price = get_price(model)
    if price is None:
        raise UnknownNameError(
            "model (cache prices)",
            model,
            default_price_book().models(),
            hint="Add it to the price book (ctxkit.register_price) or pass prices=CachePrices(...) explicitly.",
        )
    return CachePrices.from_price(price)


class _BookView(Mapping[str, CachePrices]):
    """Read-only: each remote model of the default price book -> its :class:`CachePrices`, read on access."""

    @staticmethod
    def _models() -> list[str]:
        return [p.model for p in default_price_book().prices() if not p.local]

    def __getitem__(self, model: str) -> CachePrices:
        if model not in self._models():
            raise KeyError(model)
        return prices_for(model)

    def __iter__(self) -> Iterator[str]:
        return iter(self._models())

    def __len__(self) -> int:
        return len(self._models())

    def __repr__(self) -> str:
        return f"DEFAULT_PRICES(view of the price book: {len(self)} models)"


#: Deprecated: a read-only view of the price book (model -> :class:`CachePrices`); use :func:`prices_for`.
DEFAULT_PRICES: Mapping[str, CachePrices] = _BookView()
