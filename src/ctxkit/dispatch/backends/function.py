"""A backend over a plain Python function: a test double for your own tests and docs.

``FunctionBackend(lambda messages: "42", model="gpt-4o-mini")`` answers every request
with what the function returns; usage is counted with the model's own chat counter and
priced from the price book, so routing, dispatch and telemetry behave as with a real
backend. ctxkit's own tests use real models wherever this machine has them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from ctxkit.dispatch.backends.base import BaseBackend, Request, estimate_usage
from ctxkit.dispatch.result import Result, price_usage
from ctxkit.errors import InvalidInputError
from ctxkit.messages import Message

__all__ = ["FunctionBackend"]


class FunctionBackend(BaseBackend):
    """Answers with ``fn(messages)``; ``local`` marks it as keeping data on this machine."""

    def __init__(
        self,
        fn: Callable[[Sequence[Message]], str],
        *,
        model: str = "gpt-4o-mini",
        name: str | None = None,
        local: bool = False,
    ) -> None:
        if not callable(fn):
            raise InvalidInputError("FunctionBackend needs a callable taking the messages and returning text")
        super().__init__(name or f"function:{model}", model, local=local)
        self.fn = fn
        self.calls: list[Request] = []

    def _generate(self, request: Request) -> Result:
        t0 = time.perf_counter()
        text = self.fn(request.messages)
        if not isinstance(text, str):
            raise InvalidInputError(f"the FunctionBackend function returned {type(text).__name__}, not str")
        self.calls.append(request)
        usage = estimate_usage(request, self.model, text)
        return Result(
            text=text,
            finish_reason="stop",
            usage=usage,
            model=self.model,
            backend=self.name,
            latency_s=time.perf_counter() - t0,
            cost=price_usage(usage, self.model),
            local=self.local,
        )
