"""Cascade: answer with the cheap model first, escalate when its confidence is below a threshold.

Confidence is the answer's mean token log-probability (a backend that returns
logprobs: llama.cpp, OpenAI-compatible servers), or any verifier
``(request, result) -> float``. A :class:`Cascade` is itself a backend, so it can be
a route of a dispatcher. Its result carries the summed usage and cost of every step
it ran, and a decision whose ``trail`` records each step's confidence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from ctxkit.dispatch.backends.base import Backend, BaseBackend, Request
from ctxkit.dispatch.decision import RouteDecision
from ctxkit.dispatch.registry import get_backend
from ctxkit.dispatch.result import Result
from ctxkit.errors import InvalidInputError
from ctxkit.usage import Usage

__all__ = ["Cascade", "Verifier", "mean_logprob"]

Verifier = Callable[[Request, Result], float]


def mean_logprob(request: Request, result: Result) -> float:
    """Mean token log-probability of the answer; ``-inf`` for an empty answer."""
    m = result.mean_logprob
    if m is None:
        if result.text:
            raise InvalidInputError(
                f"backend {result.backend!r} returned no logprobs; use a verifier for this cascade step"
            )
        return float("-inf")
    return m


class Cascade(BaseBackend):
    """Try ``steps`` in order; accept step *i*'s answer when its confidence >= ``thresholds[i]``.

    There is one threshold per step but the last (the last step's answer is final).
    """

    def __init__(
        self,
        steps: Sequence[Backend | Any],
        thresholds: Sequence[float],
        *,
        scorer: Verifier | str = "mean_logprob",
        name: str = "cascade",
    ) -> None:

        self.steps: list[Backend] = [get_backend(s) for s in steps]
        if len(self.steps) < 2:
            raise InvalidInputError("a cascade needs at least two steps (cheap first, strong last)")
        if len(thresholds) != len(self.steps) - 1:
            raise InvalidInputError(
                f"a cascade of {len(self.steps)} steps needs {len(self.steps) - 1} thresholds (none for the last step)"
            )
        if isinstance(scorer, str):
            if scorer != "mean_logprob":
                raise InvalidInputError(f"unknown scorer {scorer!r}; use 'mean_logprob' or a callable verifier")
            scorer = mean_logprob
        self.thresholds = [float(t) for t in thresholds]
        self.scorer: Verifier = scorer
        super().__init__(name, self.steps[-1].model, local=all(s.local for s in self.steps))

    def __repr__(self) -> str:
        return f"Cascade(steps={[s.name for s in self.steps]}, thresholds={self.thresholds})"

    @property
    def context_window(self) -> int | None:
        windows = [getattr(s, "context_window", None) for s in self.steps]
        known = [w for w in windows if isinstance(w, int)]
        return min(known) if known else None

    def _finish(self, result: Result, runs: list[Result], trail: list[RouteDecision]) -> Result:
        usage = sum((r.usage for r in runs), Usage())
        costs = [r.cost for r in runs]
        cost = None if any(c is None for c in costs) else sum((c for c in costs if c is not None), Decimal(0))
        last = trail[-1]
        decision = last.model_copy(update={"trail": tuple(trail), "router": self.name})
        return result.model_copy(
            update={
                "usage": usage,
                "cost": cost,
                "latency_s": sum(r.latency_s for r in runs),
                "ttft_s": sum(r.latency_s for r in runs[:-1]) + (result.ttft_s or result.latency_s),
                "decision": decision,
                "attempts": sum(r.attempts for r in runs),
            }
        )

    def _step_decision(self, i: int, result: Result, score: float | None) -> RouteDecision:
        name = self.steps[i].name
        if i == len(self.steps) - 1:
            return RouteDecision(
                route=name, reason="last cascade step: answer accepted", score=score, router=self.name, escalated=i > 0
            )
        thr = self.thresholds[i]
        assert score is not None
        ok = score >= thr
        return RouteDecision(
            route=name,
            score=score,
            threshold=thr,
            router=self.name,
            escalated=i > 0,
            reason=f"confidence {score:.3f} {'>=' if ok else '<'} {thr}: " + ("accepted" if ok else "escalated"),
        )

    def _step_request(self, i: int, request: Request) -> Request:
        """The request step ``i`` gets: with logprobs asked for when the default scorer will read them."""
        last = i == len(self.steps) - 1
        return request if last or self.scorer is not mean_logprob else request.model_copy(update={"logprobs": True})

    def _accepts(
        self, i: int, request: Request, result: Result, runs: list[Result], trail: list[RouteDecision]
    ) -> bool:
        """Record step ``i``'s answer; whether it stands (the last step's always does)."""
        last = i == len(self.steps) - 1
        runs.append(result)
        score = None if last else self.scorer(request, result)
        trail.append(self._step_decision(i, result, score))
        return last or (score is not None and score >= self.thresholds[i])

    def _generate(self, request: Request) -> Result:
        runs: list[Result] = []
        trail: list[RouteDecision] = []
        for i, step in enumerate(self.steps):
            result = step.generate(self._step_request(i, request))
            if self._accepts(i, request, result, runs, trail):
                return self._finish(result, runs, trail)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _agenerate(self, request: Request) -> Result:
        runs: list[Result] = []
        trail: list[RouteDecision] = []
        for i, step in enumerate(self.steps):
            result = await step.agenerate(self._step_request(i, request))
            if self._accepts(i, request, result, runs, trail):
                return self._finish(result, runs, trail)
        raise AssertionError("unreachable")  # pragma: no cover
