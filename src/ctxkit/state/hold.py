"""The dispatcher's side of shared budgets: hold a call's worst case before sending, settle after."""

from __future__ import annotations

import json
from decimal import Decimal
from types import TracebackType
from typing import Any

from ctxkit.errors import InvalidInputError, UnknownNameError
from ctxkit.pricing import PriceBook
from ctxkit.state.budgets import BudgetStore, Reservation
from ctxkit.tokenizers import get_chat_counter
from ctxkit.usage import Usage

__all__ = ["BudgetHold", "worst_case_cost", "worst_case_input_tokens"]


def worst_case_input_tokens(request: Any, model: str) -> int:
    """The request's input tokens on ``model``; without a tokenizer for it, its characters (never fewer)."""

    try:
        return int(get_chat_counter(model).count_messages(request.messages, request.tools))
    except UnknownNameError:
        chars = sum(len(m.content) + 16 for m in request.messages)
        return chars + sum(len(json.dumps(t.model_dump(mode="json"))) for t in request.tools)


def worst_case_cost(request: Any, model: str, price_book: PriceBook) -> Decimal:
    """Input tokens plus ``max_tokens`` output tokens at ``model``'s list price (cache writes included)."""
    n, out = worst_case_input_tokens(request, model), int(request.max_tokens)
    shapes = (
        Usage(input_tokens=n, output_tokens=out),
        Usage(input_tokens=n, cache_write_tokens=n, output_tokens=out),
        Usage(input_tokens=n, cache_write_tokens=n, cache_write_1h_tokens=n, output_tokens=out),
    )
    costs = [price_book.cost(u, model) for u in shapes]
    known = [c for c in costs if c is not None]
    if not known:
        raise InvalidInputError(
            f"a shared budget needs the list price of {model!r} to hold the call's worst case; register it with "
            "ctxkit.register_price(model=..., input=..., output=...) or pass price_book=..."
        )
    return max(known)


class BudgetHold:
    """Context manager around one backend call: reserves on enter, releases on exit unless settled.

    A call that failed before producing anything is released; a stream cut after it started
    (``started``) is settled at the held worst case, since its tokens may have been spent.
    """

    def __init__(
        self,
        store: BudgetStore | None,
        request: Any,
        model: str,
        *,
        workflow: str,
        price_book: PriceBook,
        timeout_s: float,
    ) -> None:
        self.store, self.request, self.model = store, request, model
        self.workflow, self.price_book, self.timeout_s = workflow, price_book, timeout_s
        self.reservation: Reservation | None = None
        self.started = False
        self._done = store is None

    def _amount(self) -> Decimal:
        return worst_case_cost(self.request, self.model, self.price_book)

    def actual(self, result: Any) -> Decimal:
        assert self.reservation is not None
        cost = getattr(result, "cost", None)
        if cost is None:
            usage = getattr(result, "usage", None)
            cost = self.price_book.cost(usage, getattr(result, "model", "") or self.model) if usage else None
        return self.reservation.amount if cost is None else Decimal(cost)

    def __enter__(self) -> BudgetHold:
        if self.store is not None:
            self.reservation = self.store.reserve(self.workflow, self._amount(), timeout_s=self.timeout_s)
        return self

    def settle(self, result: Any) -> None:
        if self.store is not None and self.reservation is not None and not self._done:
            self._done = True
            self.store.settle(self.reservation, self.actual(result))

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if self._done or self.store is None or self.reservation is None:
            return
        self._done = True
        if self.started:
            self.store.settle(self.reservation, self.reservation.amount)
        else:
            self.store.release(self.reservation)

    async def __aenter__(self) -> BudgetHold:
        if self.store is not None:
            self.reservation = await self.store.areserve(self.workflow, self._amount(), timeout_s=self.timeout_s)
        return self

    async def asettle(self, result: Any) -> None:
        if self.store is not None and self.reservation is not None and not self._done:
            self._done = True
            await self.store.asettle(self.reservation, self.actual(result))

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._done or self.store is None or self.reservation is None:
            return
        self._done = True
        if self.started:
            await self.store.asettle(self.reservation, self.reservation.amount)
        else:
            await self.store.arelease(self.reservation)
