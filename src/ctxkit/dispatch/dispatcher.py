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
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ctxkit.assembly.assembler import Assembler
from ctxkit.budget import Budget
from ctxkit.dispatch.backends.base import Backend, PromptLike, Request, as_request
from ctxkit.dispatch.decision import RouteDecision
from ctxkit.dispatch.errors import AllBackendsFailedError, CircuitOpenError, ContextOverflowError, ResidencyError
from ctxkit.dispatch.policy import ResidencyPolicy
from ctxkit.dispatch.resilience import CircuitBreaker, RetryPolicy
from ctxkit.dispatch.result import Result, StreamEvent
from ctxkit.dispatch.routing.base import Router
from ctxkit.errors import BackendError, BudgetError, InvalidInputError, UnknownNameError
from ctxkit.messages import Message

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
        sleep: Callable[[float], None] = time.sleep,
        response_cache: ResponseCache | None = None,
    ) -> None:
        from ctxkit.dispatch.registry import get_backend

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
        if response_cache is not None and not callable(getattr(response_cache, "lookup", None)):
            raise InvalidInputError(
                f"response_cache must be a ctxkit ResponseCache, not {type(response_cache).__name__}"
            )
        self.response_cache = response_cache

    def __repr__(self) -> str:
        return f"Dispatcher(backends={list(self.backends)}, default={self.default!r}, router={self.router!r})"

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
            from ctxkit.tokenizers import get_chat_counter

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

    # ------------------------------------------------------------------ sync
    def run(self, prompt: PromptLike, **options: Any) -> Result:
        """Answer ``prompt`` through the routed backend, its retries and fallbacks (or the response cache)."""
        request, hit = self._cache(prompt, options)
        if hit is not None:
            return hit
        request, decision, names = self._prepare(request, {})
        errors: dict[str, BaseException] = {}
        for name in names:
            backend = self.backends[name]
            try:
                req = self.fit(request, backend)
            except BudgetError as exc:
                errors[name] = exc
                continue
            attempt = 0
            while True:
                wait = self.breaker.allow(name)
                if wait is not None:
                    errors[name] = CircuitOpenError(name, wait)
                    break
                try:
                    result = backend.generate(req)
                except BackendError as exc:
                    self.breaker.failure(name)
                    errors[name] = exc
                    delay = None if isinstance(exc, ContextOverflowError) else self.retry.delay(attempt, exc, self._rng)
                    if delay is None:
                        break
                    self.sleep(delay)
                    attempt += 1
                    continue
                self.breaker.success(name)
                result = self._finish(request, result, decision, name, attempt + 1)
                self._cache(request, {}, result)
                return result
        raise AllBackendsFailedError(errors)

    def stream(self, prompt: PromptLike, **options: Any) -> Iterator[StreamEvent]:
        """Stream from the routed backend; retries and fallbacks apply until the first event arrives."""
        request, hit = self._cache(prompt, options)
        if hit is not None:
            yield StreamEvent(kind="text", text=hit.text)
            yield StreamEvent(kind="done", result=hit)
            return
        request, decision, names = self._prepare(request, {})
        errors: dict[str, BaseException] = {}
        for name in names:
            backend = self.backends[name]
            try:
                req = self.fit(request, backend)
            except BudgetError as exc:
                errors[name] = exc
                continue
            attempt = 0
            while self.breaker.allow(name) is None:
                started = False
                try:
                    for event in backend.stream(req):
                        started = True
                        if event.kind == "done" and event.result is not None:
                            event = event.model_copy(
                                update={"result": self._finish(request, event.result, decision, name, attempt + 1)}
                            )
                            if event.result is not None:
                                self._cache(request, {}, event.result)
                        yield event
                except BackendError as exc:
                    self.breaker.failure(name)
                    if started:
                        raise
                    errors[name] = exc
                    delay = self.retry.delay(attempt, exc, self._rng)
                    if delay is None:
                        break
                    self.sleep(delay)
                    attempt += 1
                    continue
                self.breaker.success(name)
                return
            else:
                errors.setdefault(name, CircuitOpenError(name, self.breaker.allow(name) or 0.0))
        raise AllBackendsFailedError(errors)

    # ------------------------------------------------------------------ async
    async def arun(self, prompt: PromptLike, **options: Any) -> Result:
        """Async :meth:`run` (backoff waits with ``asyncio.sleep``)."""
        cache = self.response_cache is not None
        request, hit = await asyncio.to_thread(self._cache, prompt, options) if cache else self._cache(prompt, options)
        if hit is not None:
            return hit
        request, decision, names = self._prepare(request, {})
        errors: dict[str, BaseException] = {}
        for name in names:
            backend = self.backends[name]
            try:
                req = self.fit(request, backend)
            except BudgetError as exc:
                errors[name] = exc
                continue
            attempt = 0
            while True:
                wait = self.breaker.allow(name)
                if wait is not None:
                    errors[name] = CircuitOpenError(name, wait)
                    break
                try:
                    result = await backend.agenerate(req)
                except BackendError as exc:
                    self.breaker.failure(name)
                    errors[name] = exc
                    delay = None if isinstance(exc, ContextOverflowError) else self.retry.delay(attempt, exc, self._rng)
                    if delay is None:
                        break
                    await asyncio.sleep(delay) if self.sleep is time.sleep else self.sleep(delay)
                    attempt += 1
                    continue
                self.breaker.success(name)
                result = self._finish(request, result, decision, name, attempt + 1)
                if self.response_cache is not None:
                    await asyncio.to_thread(self._cache, request, {}, result)
                return result
        raise AllBackendsFailedError(errors)
