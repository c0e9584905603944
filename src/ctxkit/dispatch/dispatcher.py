"""The dispatcher: route a request, keep it resident, fit it, call with retries, fall back.

One request flows through :meth:`Dispatcher.run` in order:

1. **route** — the router (or the default route) names a backend, with a reason;
2. **candidates** — that route, then its fallbacks, in order, without repeats;
3. **residency** — sensitive requests keep only local candidates; if none is left a
   :class:`~ctxkit.dispatch.errors.ResidencyError` is raised and nothing is sent;
4. **fit** — when a candidate's context window is smaller than the prompt needs, the
   prompt is re-assembled for that model's budget (history trimmed, never sent
   oversize); if it cannot fit, the candidate is skipped;
5. **call** — through the circuit breaker, retrying retryable errors with backoff and
   jitter (honouring Retry-After); then the next candidate.

The result carries the decision, the attempts and the summed cost of what was tried.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, cast

from ctxkit.assembly.assembler import Assembler
from ctxkit.budget import Budget
from ctxkit.dispatch.backends.base import Backend, PromptLike, Request, as_request
from ctxkit.dispatch.decision import RouteDecision
from ctxkit.dispatch.errors import AllBackendsFailedError, CircuitOpenError, ContextOverflowError, ResidencyError
from ctxkit.dispatch.policy import ResidencyPolicy
from ctxkit.dispatch.registry import get_backend
from ctxkit.dispatch.resilience import CircuitBreaker, RetryPolicy
from ctxkit.dispatch.result import Result, StreamEvent
from ctxkit.dispatch.routing.base import Router
from ctxkit.errors import BackendError, BudgetError, InvalidInputError, UnknownNameError
from ctxkit.messages import Message
from ctxkit.pricing import default_price_book
from ctxkit.state.hold import BudgetHold
from ctxkit.tokenizers import get_chat_counter

if TYPE_CHECKING:
    from ctxkit.responses import ResponseCache

__all__ = ["Dispatcher", "reassemble"]


def reassemble(request: Request, model: str, context_window: int) -> Request:
    """Re-assemble ``request`` for a model with ``context_window`` tokens (output reserve = ``max_tokens``).

    Sections are taken from the assembled prompt when there is one (system, examples,
    memory, history, and the final query), else leading system messages are the
    system prompt, the last message the query and the rest history. History loses its
    oldest turns first. Raises :class:`~ctxkit.errors.BudgetError` when it cannot fit.
    """
    msgs = list(request.messages)
    sections = list(request.prompt.section_of) if request.prompt is not None else None
    if sections is None:
        lead = 0
        while lead < len(msgs) - 1 and msgs[lead].role in ("system", "developer"):
            lead += 1
        sections = ["system"] * lead + ["history"] * (len(msgs) - lead - 1) + ["query"]
    if msgs[-1].role != "user":
        raise InvalidInputError("re-assembly needs the request to end with the user's message")
    by: dict[str, list[Message]] = {}
    for m, s in zip(msgs[:-1], sections[:-1], strict=True):
        by.setdefault(s, []).append(m)
    system = "\n\n".join(m.content for m in by.get("system", [])) or None
    memory = "\n\n".join(m.content for m in by.get("memory", [])) or None
    reserve = min(request.max_tokens, context_window - 1)
    budget = Budget(context_window=context_window, output_reserve=reserve, model=model)
    assembler = Assembler(model, budget, memory_header="")
    prompt = assembler.assemble(
        query=msgs[-1].content,
        system=system,
        tools=request.tools,
        examples=by.get("examples", []),
        memory=memory,
        history=by.get("history", []),
    )
    return request.model_copy(update={"messages": prompt.messages, "prompt": prompt})


class Dispatcher:
    """Routes requests to named backends, with residency, fitting, retries, a breaker and fallbacks.

    ``backends`` maps route names to backends (or specs/clients, resolved by
    :func:`~ctxkit.dispatch.get_backend`). ``fallbacks`` is either one list tried after
    any route, or a mapping route -> list. Without a router every request goes to
    ``default`` (the first backend if not given).
    """

    def __init__(
        self,
        backends: Mapping[str, Backend | Any],
        *,
        router: Router | None = None,
        default: str | None = None,
        fallbacks: Sequence[str] | Mapping[str, Sequence[str]] = (),
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        residency: ResidencyPolicy | None = None,
        refit: bool = True,
        sleep: Callable[[float], None] | Callable[[float], Awaitable[None]] = time.sleep,
        budget_store: Any = None,
        budget_workflow: str = "default",
        budget_timeout_s: float = 600.0,
        price_book: Any = None,
        response_cache: ResponseCache | None = None,
    ) -> None:

        if not isinstance(backends, Mapping):
            raise InvalidInputError(
                f"backends must map route names to backends ({{'local': 'llamacpp:default'}}), "
                f"not {type(backends).__name__}"
            )
        if not backends:
            raise InvalidInputError("a dispatcher needs at least one backend")
        bad_names = [k for k in backends if not isinstance(k, str) or not k]
        if bad_names:
            raise InvalidInputError(f"route names must be non-empty strings, got {bad_names[0]!r}")
        self.backends: dict[str, Backend] = {k: get_backend(v) for k, v in backends.items()}
        if default is not None and not isinstance(default, str):
            raise InvalidInputError(f"default must be a route name, not {type(default).__name__}")
        self.default = default or next(iter(self.backends))
        if router is not None and not callable(getattr(router, "route", None)):
            raise InvalidInputError(f"router must be a ctxkit Router (with .route()), not {type(router).__name__}")
        self.router = router
        if isinstance(fallbacks, str):
            fallbacks = (fallbacks,)
        if isinstance(fallbacks, Mapping):
            groups = list(fallbacks.values())
        elif isinstance(fallbacks, Iterable):
            fallbacks = tuple(fallbacks)
            groups = [fallbacks]
        else:
            raise InvalidInputError(f"fallbacks must be a list of route names, not {type(fallbacks).__name__}")
        if any(isinstance(g, str) or not isinstance(g, Iterable) for g in groups) and isinstance(fallbacks, Mapping):
            raise InvalidInputError("fallbacks as a mapping must map each route to a list of route names")
        self.fallbacks = fallbacks
        names: list[Any] = [self.default, *(x for g in groups for x in g)]
        bad = [n for n in names if not isinstance(n, str)]
        if bad:
            raise InvalidInputError(f"fallbacks must name routes (strings), got {bad[0]!r}")
        unknown = [n for n in names if n not in self.backends]
        if unknown:
            raise UnknownNameError("route", unknown[0], list(self.backends))
        for value, kind, label in (
            (retry, RetryPolicy, "retry"),
            (breaker, CircuitBreaker, "breaker"),
            (residency, ResidencyPolicy, "residency"),
        ):
            if value is not None and not isinstance(value, kind):
                raise InvalidInputError(f"{label} must be a {kind.__name__}, not {type(value).__name__}")
        if not callable(sleep):
            raise InvalidInputError("sleep must be a callable taking seconds")
        self.retry = retry or RetryPolicy()
        self.breaker = breaker or CircuitBreaker()
        self.residency = residency or ResidencyPolicy()
        self.refit = bool(refit)
        self.sleep = sleep
        self._rng = random.Random(self.retry.seed)
        # shared budget (ctxkit.state): each call holds its worst case before it is sent, settles after
        if budget_store is not None and not callable(getattr(budget_store, "reserve", None)):
            raise InvalidInputError(
                f"budget_store must be a ctxkit.state BudgetStore, not {type(budget_store).__name__}"
            )
        self.budget_store = budget_store
        self.budget_workflow = budget_workflow
        self.budget_timeout_s = budget_timeout_s
        self.price_book = price_book
        # response cache (ctxkit.responses): answered before routing when it holds the answer, filled after
        if response_cache is not None and not callable(getattr(response_cache, "lookup", None)):
            raise InvalidInputError(
                f"response_cache must be a ctxkit ResponseCache, not {type(response_cache).__name__}"
            )
        self.response_cache = response_cache

    def __repr__(self) -> str:
        return f"Dispatcher(backends={list(self.backends)}, default={self.default!r}, router={self.router!r})"

    def forced(self, route: str) -> Dispatcher:
        """This dispatcher with every request sent to ``route`` first, everything else kept.

        Fallbacks, retries, the breaker (and its health state), residency, sleep, the shared budget
        and the other settings are this dispatcher's; only the router is bypassed. ``route`` may
        also be a backend spec that is not one of the routes, added for these calls
        (``forced("openai:gpt-4o-mini")``). Framework adapters use it for a per-call ``model=``.
        """

        if not isinstance(route, str) or not route:
            raise InvalidInputError(f"a forced route must be a route name or backend spec, not {route!r}")
        if route == self.default and self.router is None:
            return self
        clone = copy.copy(self)
        if route not in self.backends:
            clone.backends = {**self.backends, route: get_backend(route)}
        clone.default = route
        clone.router = None
        return clone

    # ------------------------------------------------------------------ planning
    def decide(self, request: Request) -> RouteDecision:
        if self.router is None:
            return RouteDecision(route=self.default, reason="no router: default route", router="default")
        decision = self.router.route(request)
        if decision.route not in self.backends:
            raise UnknownNameError(
                "route",
                decision.route,
                list(self.backends),
                hint=f"the router {self.router!r} chose a route this dispatcher does not have.",
            )
        return decision

    def candidates(self, request: Request, decision: RouteDecision) -> list[str]:
        """The route then its fallbacks, filtered by the residency policy."""
        if isinstance(self.fallbacks, Mapping):
            extra = list(self.fallbacks.get(decision.route, ()))
        else:
            extra = list(self.fallbacks)
        order = list(dict.fromkeys([decision.route, *extra]))
        allowed = [n for n in order if self.residency.allowed(request, self.backends[n])]
        if not allowed:
            # try every local backend before refusing: residency outranks the router's choice
            allowed = [n for n, b in self.backends.items() if self.residency.allowed(request, b)]
            if not allowed:
                raise ResidencyError(order)
        return allowed

    def fit(self, request: Request, backend: Backend) -> Request:
        """The request, re-assembled if ``backend``'s window is smaller than it needs."""
        window = getattr(backend, "context_window", None)
        if not self.refit or not isinstance(window, int):
            return request
        try:
            counter = get_chat_counter(backend.model)
        except UnknownNameError:
            return request
        need = counter.count_messages(request.messages, request.tools) + request.max_tokens
        if need <= window:
            return request
        return reassemble(request, backend.model, window)

    def _prepare(self, prompt: PromptLike, options: dict[str, Any]) -> tuple[Request, RouteDecision, list[str]]:
        request = as_request(prompt, **options)
        if self.residency.is_sensitive(request) and not request.sensitive:
            request = request.model_copy(update={"sensitive": True})
        decision = self.decide(request)
        return request, decision, self.candidates(request, decision)

    def _finish(self, request: Request, result: Result, decision: RouteDecision, route: str, attempts: int) -> Result:
        if route != decision.route:
            decision = RouteDecision(
                route=route,
                router=decision.router,
                trail=(decision,),
                reason=f"fallback to {route!r} after {decision.route!r} failed",
            )
        elif result.decision is not None and result.decision.trail:  # a cascade's own decision
            decision = decision.model_copy(update={"trail": (result.decision,)})
        result = result.model_copy(update={"decision": decision, "attempts": attempts})
        if self.router is not None:
            self.router.observe(request, result)
        return result

    def _hold(self, request: Request, backend: Backend) -> Any:
        """A :class:`ctxkit.state.hold.BudgetHold` for one call (a no-op without ``budget_store``)."""

        return BudgetHold(
            self.budget_store,
            request,
            backend.model,
            workflow=self.budget_workflow,
            price_book=self.price_book or default_price_book(),
            timeout_s=self.budget_timeout_s,
        )

    # ------------------------------------------------------------------ response cache
    def _cache(
        self, prompt: PromptLike, options: dict[str, Any], result: Result | None = None
    ) -> tuple[Request, Result | None]:
        """Before routing (``result=None``): the request and the cache's hit (or None). After: store ``result``."""
        request = as_request(prompt, **options)
        if self.residency.is_sensitive(request) and not request.sensitive:
            request = request.model_copy(update={"sensitive": True})
        if self.response_cache is None:
            return request, None
        if result is None:
            hit = self.response_cache.lookup(request)
            return request, None if hit is None else hit.result
        self.response_cache.store(request, result)
        return request, None

    async def _acache(
        self, prompt: PromptLike, options: dict[str, Any], result: Result | None = None
    ) -> tuple[Request, Result | None]:
        """:meth:`_cache` off the event loop (a lookup embeds the question; a store may write to disk)."""
        if self.response_cache is None:
            return self._cache(prompt, options, result)
        return await asyncio.to_thread(self._cache, prompt, options, result)

    def _attempts(self, request: Request) -> tuple[Request, RouteDecision, _Attempts]:
        """The routed request, its route and the attempt loop over its backends (shared by the four calls)."""
        request, decision, names = self._prepare(request, {})
        return request, decision, _Attempts(self, request, names)

    @staticmethod
    def _hit_events(hit: Result) -> list[StreamEvent]:
        return [StreamEvent(kind="text", text=hit.text), StreamEvent(kind="done", result=hit)]

    # ------------------------------------------------------------------ calls
    # One attempt loop (:class:`_Attempts`) decides which backend to try, when to retry and when to
    # fall back; each flavour below only does its own I/O: call or stream, sync or async, and sleep.
    def run(self, prompt: PromptLike, **options: Any) -> Result:
        """Answer ``prompt`` through the routed backend, its retries and fallbacks (or the response cache)."""
        request, hit = self._cache(prompt, options)
        if hit is not None:
            return hit
        request, decision, attempts = self._attempts(request)
        while (a := attempts.next()) is not None:
            try:
                with self._hold(a.request, a.backend) as hold:
                    result = a.backend.generate(a.request)
                    hold.settle(result)
            except BackendError as exc:
                delay = attempts.failed(exc)
                if delay is not None:
                    self._sleep(delay)
                continue
            attempts.succeeded()
            result = self._finish(request, result, decision, a.name, a.number)
            self._cache(request, {}, result)
            return result
        raise AllBackendsFailedError(attempts.errors)

    def stream(self, prompt: PromptLike, **options: Any) -> Iterator[StreamEvent]:
        """Stream from the routed backend; retries and fallbacks apply until the first event arrives."""
        request, hit = self._cache(prompt, options)
        if hit is not None:
            yield from self._hit_events(hit)
            return
        request, decision, attempts = self._attempts(request)
        while (a := attempts.next()) is not None:
            started = False
            try:
                with self._hold(a.request, a.backend) as hold:
                    for event in a.backend.stream(a.request):
                        started = hold.started = True
                        event = self._settled_event(event, hold, request, decision, a)
                        if event.kind == "done" and event.result is not None:
                            self._cache(request, {}, event.result)
                        yield event
            except BackendError as exc:
                if started:  # the caller has seen part of this answer: no silent retry elsewhere
                    attempts.failed(exc, final=True)
                    raise
                delay = attempts.failed(exc)
                if delay is not None:
                    self._sleep(delay)
                continue
            attempts.succeeded()
            return
        raise AllBackendsFailedError(attempts.errors)

    async def arun(self, prompt: PromptLike, **options: Any) -> Result:
        """Async :meth:`run`; backoff waits do not block the event loop (see :meth:`_asleep`)."""
        request, hit = await self._acache(prompt, options)
        if hit is not None:
            return hit
        request, decision, attempts = self._attempts(request)
        while (a := attempts.next()) is not None:
            try:
                async with self._hold(a.request, a.backend) as hold:
                    result = await a.backend.agenerate(a.request)
                    await hold.asettle(result)
            except BackendError as exc:
                delay = attempts.failed(exc)
                if delay is not None:
                    await self._asleep(delay)
                continue
            attempts.succeeded()
            result = self._finish(request, result, decision, a.name, a.number)
            await self._acache(request, {}, result)
            return result
        raise AllBackendsFailedError(attempts.errors)

    async def astream(self, prompt: PromptLike, **options: Any) -> AsyncIterator[StreamEvent]:
        """Async :meth:`stream`: the same retries and fallbacks until the first event arrives."""
        request, hit = await self._acache(prompt, options)
        if hit is not None:
            for cached in self._hit_events(hit):
                yield cached
            return
        request, decision, attempts = self._attempts(request)
        while (a := attempts.next()) is not None:
            started = False
            try:
                async with self._hold(a.request, a.backend) as hold:
                    async for event in a.backend.astream(a.request):
                        started = hold.started = True
                        if event.kind == "done" and event.result is not None:
                            await hold.asettle(event.result)
                        event = self._settled_event(event, hold, request, decision, a)
                        if event.kind == "done" and event.result is not None:
                            await self._acache(request, {}, event.result)
                        yield event
            except BackendError as exc:
                if started:
                    attempts.failed(exc, final=True)
                    raise
                delay = attempts.failed(exc)
                if delay is not None:
                    await self._asleep(delay)
                continue
            attempts.succeeded()
            return
        raise AllBackendsFailedError(attempts.errors)

    def _settled_event(
        self, event: StreamEvent, hold: Any, request: Request, decision: RouteDecision, a: _Attempt
    ) -> StreamEvent:
        """A streamed event; the final ``done`` settles the budget hold and carries the finished result."""
        if event.kind != "done" or event.result is None:
            return event
        hold.settle(event.result)  # no-op when the async path already settled it
        return event.model_copy(update={"result": self._finish(request, event.result, decision, a.name, a.number)})

    def _sleep(self, delay: float) -> None:
        """Wait ``delay`` seconds in a sync call: the injected sleep, or ``time.sleep`` when that is a coroutine
        function (it serves :meth:`arun` and :meth:`astream`)."""
        if inspect.iscoroutinefunction(self.sleep):
            time.sleep(delay)
        else:
            self.sleep(delay)

    async def _asleep(self, delay: float) -> None:
        """Wait ``delay`` seconds without blocking the loop: ``asyncio.sleep`` for the default sleep, an
        injected coroutine function awaited, an injected plain function run in a worker thread."""
        if self.sleep is time.sleep:
            await asyncio.sleep(delay)
        elif inspect.iscoroutinefunction(self.sleep):
            await cast("Callable[[float], Awaitable[None]]", self.sleep)(delay)
        else:
            await asyncio.to_thread(self.sleep, delay)


@dataclass(frozen=True)
class _Attempt:
    """One call to make: which route, its backend, the request fitted to it, and its 1-based number there."""

    name: str
    backend: Backend
    request: Request
    number: int


class _Attempts:
    """The candidates x retries loop without I/O, shared by every call flavour of :class:`Dispatcher`.

    :meth:`next` gives the next call to make (fitting the request to each candidate and asking
    the circuit breaker first), or ``None`` when every candidate is spent; the caller reports
    :meth:`succeeded` or :meth:`failed`, which returns the backoff to wait before the next
    call to the same route, or ``None`` to move on. A context overflow is not retried on the
    same route (the next candidate may have a larger window). ``errors`` keeps each route's
    last error for :class:`~ctxkit.dispatch.errors.AllBackendsFailedError`.
    """

    def __init__(self, dispatcher: Dispatcher, request: Request, names: Sequence[str]) -> None:
        self.d = dispatcher
        self.request = request
        self.pending = list(names)
        self.errors: dict[str, BaseException] = {}
        self.current: _Attempt | None = None

    def next(self) -> _Attempt | None:
        d = self.d
        while True:
            if self.current is None:
                if not self.pending:
                    return None
                name = self.pending.pop(0)
                backend = d.backends[name]
                try:
                    fitted = d.fit(self.request, backend)
                except BudgetError as exc:
                    self.errors[name] = exc
                    continue
                self.current = _Attempt(name, backend, fitted, 0)
            wait = d.breaker.allow(self.current.name)
            if wait is not None:
                self.errors[self.current.name] = CircuitOpenError(self.current.name, wait)
                self.current = None
                continue
            self.current = replace(self.current, number=self.current.number + 1)
            return self.current

    def succeeded(self) -> None:
        assert self.current is not None
        self.d.breaker.success(self.current.name)

    def failed(self, exc: BackendError, *, final: bool = False) -> float | None:
        """Record a failed call; the seconds to wait before retrying this route, or ``None`` to move on."""
        assert self.current is not None
        d, name = self.d, self.current.name
        d.breaker.failure(name)
        self.errors[name] = exc
        delay = None
        if not final and not isinstance(exc, ContextOverflowError):
            delay = d.retry.delay(self.current.number - 1, exc, d._rng)
        if delay is None:
            self.current = None
        return delay
