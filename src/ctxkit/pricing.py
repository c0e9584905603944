"""Exact prices of model calls, from a price book shipped as data.

The built-in book (``ctxkit/data/prices.json``) lists, per model and in USD per
million tokens, the price of uncached input, cache reads, cache writes with a
5-minute and a 1-hour TTL, output, and reasoning where it differs from output,
with the date it was checked (``as_of``) and the pages it came from.

Cost is an exact :class:`decimal.Decimal` computed from the buckets of
:class:`ctxkit.usage.Usage` (input *including* cached tokens)::

    uncached input  = input - cache_read - cache_write      at ``input``
    cache reads                                             at ``cache_read``
    5-minute writes = cache_write - cache_write_1h          at ``cache_write_5m``
    1-hour writes                                           at ``cache_write_1h``
    visible output  = output - reasoning                    at ``output``
    reasoning                                               at ``reasoning`` (else ``output``)

An unknown model, or tokens in a bucket whose price the provider does not
publish, gives ``None`` -- never 0. Local models (``llamacpp:...``, a ``.gguf``
path, models registered with ``ModelInfo(local=True)``) are priced at 0 explicitly.

Users override or extend the book with :func:`register_price` or
:func:`load_prices`, or build their own :class:`PriceBook`.
"""

from __future__ import annotations

import json
import re
import threading
from datetime import date
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, ValidationError, field_validator

from ctxkit._model import CtxkitModel
from ctxkit.errors import InvalidInputError, ResourceError, UnknownNameError
from ctxkit.models import get_model
from ctxkit.usage import Usage

__all__ = [
    "CostBreakdown",
    "ModelPrice",
    "PriceBook",
    "PriceTier",
    "cost",
    "cost_breakdown",
    "default_price_book",
    "get_price",
    "load_prices",
    "register_price",
]

_MILLION = Decimal(1_000_000)
_ZERO = Decimal(0)


def _dec(value: Any) -> Decimal | None:
    if value is None or isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        # a float has already lost the exact price; go through its shortest repr ("0.075", not 0.07499...)
        return Decimal(repr(value))
    return Decimal(str(value))


class _Rates(CtxkitModel):
    """Prices per million tokens for each bucket (``None``: not published)."""

    model_config = ConfigDict(frozen=True)

    input: Decimal = Field(ge=0, description="uncached prompt tokens")
    output: Decimal = Field(ge=0, description="generated tokens")
    cache_read: Decimal | None = Field(default=None, ge=0, description="prompt tokens read from the cache")
    cache_write_5m: Decimal | None = Field(default=None, ge=0, description="cache writes, 5-minute TTL")
    cache_write_1h: Decimal | None = Field(default=None, ge=0, description="cache writes, 1-hour TTL")
    reasoning: Decimal | None = Field(default=None, ge=0, description="reasoning tokens, when not the output price")

    @field_validator("input", "output", "cache_read", "cache_write_5m", "cache_write_1h", "reasoning", mode="before")
    @classmethod
    def _exact(cls, value: Any) -> Decimal | None:
        return _dec(value)


class PriceTier(_Rates):
    """Rates that apply to a whole request once its input exceeds ``above_input_tokens``."""

    above_input_tokens: int = Field(gt=0)
    note: str = ""


class ModelPrice(_Rates):
    """List prices of one model, in ``currency`` per million tokens."""

    model: str
    provider: str = ""
    currency: str = "USD"
    local: bool = False
    aliases: tuple[str, ...] = ()
    tiers: tuple[PriceTier, ...] = ()
    as_of: date | None = None
    sources: tuple[str, ...] = ()
    note: str = ""

    def rates_for(self, usage: Usage) -> _Rates:
        """The rates that apply to ``usage``: the highest tier its input exceeds, else the base rates."""
        best: _Rates = self
        for tier in sorted(self.tiers, key=lambda t: t.above_input_tokens):
            if usage.input_tokens > tier.above_input_tokens:
                best = tier
        return best

    def breakdown(self, usage: Usage) -> CostBreakdown:
        """Cost of ``usage`` per bucket (a bucket whose price is unknown and has tokens is ``None``)."""
        if not isinstance(usage, Usage):
            raise InvalidInputError(
                f"usage must be a ctxkit.Usage (Usage.from_openai(...) builds one), not {type(usage).__name__}"
            )
        rates = self.rates_for(usage)

        def part(tokens: int, price: Decimal | None) -> Decimal | None:
            if tokens == 0:
                return _ZERO
            return None if price is None else tokens * price / _MILLION

        reasoning_price = rates.reasoning if rates.reasoning is not None else rates.output
        return CostBreakdown(
            model=self.model,
            currency=self.currency,
            input=part(usage.uncached_input_tokens, rates.input),
            cache_read=part(usage.cache_read_tokens, rates.cache_read),
            cache_write_5m=part(usage.cache_write_5m_tokens, rates.cache_write_5m),
            cache_write_1h=part(usage.cache_write_1h_tokens, rates.cache_write_1h),
            output=part(usage.output_tokens - usage.reasoning_tokens, rates.output),
            reasoning=part(usage.reasoning_tokens, reasoning_price),
        )

    def cost(self, usage: Usage) -> Decimal | None:
        """Exact cost of ``usage``, or ``None`` if a bucket with tokens has no published price."""
        return self.breakdown(usage).total


class CostBreakdown(CtxkitModel):
    """Cost of one usage per bucket; ``total`` is ``None`` if any bucket is unknown."""

    model_config = ConfigDict(frozen=True)

    model: str
    currency: str = "USD"
    input: Decimal | None
    cache_read: Decimal | None
    cache_write_5m: Decimal | None
    cache_write_1h: Decimal | None
    output: Decimal | None
    reasoning: Decimal | None

    @property
    def total(self) -> Decimal | None:
        parts = (self.input, self.cache_read, self.cache_write_5m, self.cache_write_1h, self.output, self.reasoning)
        if any(p is None for p in parts):
            return None
        return sum((p for p in parts if p is not None), _ZERO)


_DATE_SUFFIX = re.compile(r"(-\d{8}|-\d{4}-\d{2}-\d{2}|-latest)$")
_VERSION_SUFFIX = re.compile(r"-v\d+(:\d+)?$")
_VENDOR_PREFIX = re.compile(r"^((us|eu|apac|global)\.)?(anthropic|openai)\.")


class PriceBook:
    """A set of :class:`ModelPrice` looked up by model id, with exact cost computation.

    Lookup is exact (names and aliases, case-insensitive), then after removing a
    ``provider:`` prefix, a cloud vendor prefix (``us.anthropic.``), a version suffix
    (``-v1:0``) and a date snapshot suffix (``-20250929``, ``-2024-08-06``) or
    ``-latest``. It never falls back to a "family" price: an id it cannot resolve
    has no price (``None``). Thread-safe.
    """

    def __init__(
        self,
        prices: list[ModelPrice] | None = None,
        *,
        as_of: date | None = None,
        sources: dict[str, list[str]] | None = None,
        local_prefixes: tuple[str, ...] = ("llamacpp", "gguf", "local"),
        use_model_registry: bool = True,
    ) -> None:
        self.as_of = as_of
        self.sources = dict(sources or {})
        self.local_prefixes = tuple(local_prefixes)
        self.use_model_registry = use_model_registry
        self._lock = threading.Lock()
        self._prices: dict[str, ModelPrice] = {}
        self._index: dict[str, str] = {}
        for price in prices or []:
            self.register(price, replace=True)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_dict(cls, data: dict[str, Any], *, use_model_registry: bool = True) -> PriceBook:
        """Build a book from the JSON layout of ``prices.json`` (``models``: name -> rates)."""
        if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
            raise InvalidInputError("a price book needs a 'models' object mapping model ids to their rates")
        as_of_raw = data.get("as_of")
        try:
            as_of = date.fromisoformat(as_of_raw) if as_of_raw else None
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"price book 'as_of' must be an ISO date (YYYY-MM-DD), got {as_of_raw!r}") from exc
        currency = str(data.get("currency", "USD"))
        prices: list[ModelPrice] = []
        for name, entry in data["models"].items():
            if not isinstance(entry, dict):
                raise InvalidInputError(f"price of {name!r} must be an object with input/output/... rates")
            fields = {"model": name, "currency": currency, "as_of": as_of, **entry}
            try:
                prices.append(ModelPrice.model_validate(fields))
            except ValidationError as exc:
                raise InvalidInputError(f"bad price entry for model {name!r}: {exc}") from exc
        raw_sources = data.get("sources") or {}
        if not isinstance(raw_sources, dict) or not all(
            isinstance(v, list | tuple) and all(isinstance(u, str) for u in v) for v in raw_sources.values()
        ):
            raise InvalidInputError("price book 'sources' must map names to lists of URLs")
        sources = {str(k): list(v) for k, v in raw_sources.items()}
        prefixes = data.get("local_prefixes") or ("llamacpp", "gguf", "local")
        if (
            isinstance(prefixes, str)
            or not isinstance(prefixes, list | tuple)
            or not all(isinstance(p, str) for p in prefixes)
        ):
            raise InvalidInputError("price book 'local_prefixes' must be a list of strings such as ['llamacpp']")
        return cls(
            prices,
            as_of=as_of,
            sources=sources,
            local_prefixes=tuple(prefixes),
            use_model_registry=use_model_registry,
        )

    @classmethod
    def from_json(cls, path: str | Path) -> PriceBook:
        """Load a book from a JSON file with the layout of ``prices.json``."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidInputError(f"cannot read price book {str(path)!r}: {exc}") from exc
        try:
            data = json.loads(text, parse_float=Decimal)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"price book {str(path)!r} is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    @classmethod
    def builtin(cls) -> PriceBook:
        """A fresh copy of the price book shipped with ctxkit."""
        try:
            text = resources.files("ctxkit").joinpath("data/prices.json").read_text(encoding="utf-8")
            data = json.loads(text, parse_float=Decimal)
        except (OSError, json.JSONDecodeError) as exc:
            raise ResourceError(
                f"ctxkit's price book data/prices.json is missing or corrupt ({exc}); reinstall ctxkit"
            ) from exc
        return cls.from_dict(data)

    # ------------------------------------------------------------------ editing
    def register(self, price: ModelPrice, *, replace: bool = False) -> ModelPrice:
        """Add a model's price; ``replace=True`` overrides an existing one (name or alias)."""
        keys = [price.model.lower(), *(a.lower() for a in price.aliases)]
        with self._lock:
            if not replace:
                taken = [k for k in keys if k in self._index]
                if taken:
                    raise InvalidInputError(f"model {taken[0]!r} already has a price; pass replace=True to override it")
            old = self._prices.get(price.model.lower())
            if old is not None:
                for alias in old.aliases:
                    self._index.pop(alias.lower(), None)
            self._prices[price.model.lower()] = price
            for key in keys:
                self._index[key] = price.model.lower()
        return price

    def update(self, data: dict[str, Any]) -> None:
        """Override or add the models of ``data`` (same layout as ``prices.json``)."""
        other = PriceBook.from_dict(data, use_model_registry=False)
        for price in other.prices():
            self.register(price, replace=True)

    def prices(self) -> list[ModelPrice]:
        with self._lock:
            return sorted(self._prices.values(), key=lambda p: p.model)

    def models(self) -> list[str]:
        return [p.model for p in self.prices()]

    # ------------------------------------------------------------------ lookup
    def _exact(self, key: str) -> ModelPrice | None:
        with self._lock:
            name = self._index.get(key.lower())
            return None if name is None else self._prices[name]

    def get(self, model: str) -> ModelPrice | None:
        """The price of ``model`` (see the class docstring for how ids resolve), or ``None``."""
        if model is not None and not isinstance(model, str):
            raise InvalidInputError(f"a model name is a str such as 'gpt-4o', not {type(model).__name__}")
        if not model:
            return None
        hit = self._exact(model)
        if hit is not None:
            return hit
        key = model.strip()
        provider = ""
        if ":" in key:
            head, rest = key.split(":", 1)
            if not rest.isdigit():  # "openai:gpt-4o"; not Bedrock's "...-v2:0"
                provider, key = head, rest
        if provider.lower() in self.local_prefixes or key.lower().endswith(".gguf"):
            return self._local_price(model)
        for candidate in self._candidates(key):
            hit = self._exact(candidate)
            if hit is not None:
                return hit
        if self.use_model_registry:
            return self._registry_local(model)
        return None

    @staticmethod
    def _candidates(key: str) -> list[str]:
        out = [key]
        stripped = _VENDOR_PREFIX.sub("", key)
        stripped = _VERSION_SUFFIX.sub("", stripped)
        out.append(stripped)
        undated = _DATE_SUFFIX.sub("", stripped)
        out.append(undated)
        if "/" in undated:  # "openai/gpt-4o" (router-style ids)
            out.append(undated.rsplit("/", 1)[1])
        return out

    def _local_price(self, model: str) -> ModelPrice:
        return ModelPrice(
            model=model,
            provider="local",
            local=True,
            input=_ZERO,
            output=_ZERO,
            cache_read=_ZERO,
            cache_write_5m=_ZERO,
            cache_write_1h=_ZERO,
            note="local model: no per-token charge",
        )

    def _registry_local(self, model: str) -> ModelPrice | None:
        try:
            info = get_model(model)
        except UnknownNameError:
            return None
        return self._local_price(model) if info.local else None

    def cost(self, usage: Usage, model: str) -> Decimal | None:
        """Exact cost of ``usage`` on ``model``; ``None`` when the price is unknown (never 0)."""
        if not isinstance(usage, Usage):
            raise InvalidInputError(
                f"usage must be a ctxkit.Usage (Usage.from_openai(...) builds one), not {type(usage).__name__}"
            )
        price = self.get(model)
        return None if price is None else price.cost(usage)

    def breakdown(self, usage: Usage, model: str) -> CostBreakdown | None:
        price = self.get(model)
        return None if price is None else price.breakdown(usage)

    def __contains__(self, model: object) -> bool:
        return isinstance(model, str) and self.get(model) is not None

    def __len__(self) -> int:
        return len(self._prices)

    def __repr__(self) -> str:
        return f"PriceBook({len(self)} models, as_of={self.as_of})"


_default_lock = threading.Lock()
_default: PriceBook | None = None


def default_price_book() -> PriceBook:
    """The process-wide book: ctxkit's shipped prices plus the user's overrides."""
    global _default
    with _default_lock:
        if _default is None:
            _default = PriceBook.builtin()
        return _default


def get_price(model: str) -> ModelPrice | None:
    """Price of ``model`` from the default book, or ``None`` if unknown."""
    return default_price_book().get(model)


def cost(usage: Usage, model: str) -> Decimal | None:
    """Exact cost of ``usage`` on ``model`` from the default book; ``None`` if unknown, never 0."""
    return default_price_book().cost(usage, model)


def cost_breakdown(usage: Usage, model: str) -> CostBreakdown | None:
    """Cost of ``usage`` on ``model`` per bucket, or ``None`` if the model has no price."""
    return default_price_book().breakdown(usage, model)


def register_price(price: ModelPrice | None = None, *, replace: bool = True, **rates: Any) -> ModelPrice:
    """Add or override a model's price in the default book.

    Pass a :class:`ModelPrice`, or its fields as keywords::

        register_price(model="my-ft-model", input="0.30", output="1.20", cache_read="0.03")
    """
    if price is None:
        try:
            price = ModelPrice.model_validate(rates)
        except ValidationError as exc:
            raise InvalidInputError(f"bad price: {exc}") from exc
    elif rates:
        raise InvalidInputError("pass either a ModelPrice or keyword rates, not both")
    return default_price_book().register(price, replace=replace)


def load_prices(source: str | Path | dict[str, Any]) -> PriceBook:
    """Merge a JSON file (or dict) with the ``prices.json`` layout into the default book; returns it."""
    book = default_price_book()
    if isinstance(source, dict):
        book.update(source)
    else:
        for price in PriceBook.from_json(source).prices():
            book.register(price, replace=True)
    return book
