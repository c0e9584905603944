"""Right-sizing: run a labelled task set through candidate backends or dispatchers, side by side.

For each candidate the report gives quality (share of tasks passed), total cost,
cost per task, cost per successful task, p50/p95 latency and the escalation rate,
so a team can pick the cheapest configuration that meets its bar
(:meth:`EvalReport.cheapest`). Unknown prices make costs ``None``, never 0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import numpy as np
from pydantic import ConfigDict, Field

from ctxkit._model import CtxkitModel
from ctxkit.dispatch.backends.base import PromptLike
from ctxkit.dispatch.result import Result
from ctxkit.errors import CtxkitError, InvalidInputError

__all__ = ["CandidateReport", "EvalReport", "EvalTask", "evaluate"]


class EvalTask(CtxkitModel):
    """A prompt and how to judge an answer: ``expected`` (substring, case-insensitive) or ``check``."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    prompt: Any
    expected: str | None = None
    check: Callable[[str], bool] | None = None
    id: str = ""

    def passed(self, text: str) -> bool:
        if self.check is not None:
            return bool(self.check(text))
        if self.expected is None:
            raise InvalidInputError("an EvalTask needs expected=... or check=...")
        return self.expected.strip().lower() in text.lower()


class CandidateReport(CtxkitModel):
    model_config = ConfigDict(frozen=True)

    name: str
    tasks: int
    passed: int
    failed_calls: int
    quality: float
    total_cost: Decimal | None
    cost_per_task: Decimal | None
    cost_per_success: Decimal | None
    p50_latency_s: float | None
    p95_latency_s: float | None
    escalation_rate: float
    input_tokens: int
    output_tokens: int


class EvalReport(CtxkitModel):
    model_config = ConfigDict(frozen=True)

    candidates: tuple[CandidateReport, ...]
    results: dict[str, list[Result | None]] = Field(default_factory=dict, repr=False)

    def cheapest(self, min_quality: float) -> CandidateReport | None:
        """The lowest cost per task among candidates with quality >= ``min_quality`` (known costs only)."""
        ok = [c for c in self.candidates if c.quality >= min_quality and c.cost_per_task is not None]
        return min(ok, key=lambda c: (c.cost_per_task, -c.quality)) if ok else None

    def table(self) -> str:
        head = ("candidate", "quality", "cost/task", "cost/success", "p50 s", "p95 s", "escalated")
        rows = [head]
        for c in self.candidates:
            rows.append(
                (
                    c.name,
                    f"{c.quality:.3f}",
                    _fmt(c.cost_per_task),
                    _fmt(c.cost_per_success),
                    f"{c.p50_latency_s:.3f}" if c.p50_latency_s is not None else "-",
                    f"{c.p95_latency_s:.3f}" if c.p95_latency_s is not None else "-",
                    f"{c.escalation_rate:.2f}",
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        return "\n".join("  ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)) for r in rows)

    def __str__(self) -> str:
        return self.table()


def _fmt(d: Decimal | None) -> str:
    return "unknown" if d is None else f"${d:.6f}"


def evaluate(
    tasks: Sequence[EvalTask],
    candidates: Mapping[str, Any],
    *,
    keep_results: bool = False,
    **options: Any,
) -> EvalReport:
    """Run every task through every candidate (a backend or a dispatcher); ``options`` go to each call."""
    if not tasks:
        raise InvalidInputError("evaluate needs at least one task")
    reports: list[CandidateReport] = []
    kept: dict[str, list[Result | None]] = {}
    for name, cand in candidates.items():
        call: Callable[..., Result] = cand.run if hasattr(cand, "run") else cand.generate
        results: list[Result | None] = []
        passed = failed = escalated = 0
        for task in tasks:
            prompt: PromptLike = task.prompt
            try:
                r = call(prompt, **options)
            except CtxkitError:
                results.append(None)
                failed += 1
                continue
            results.append(r)
            passed += task.passed(r.text)
            if r.decision is not None and (r.decision.escalated or any(t.escalated for t in r.decision.trail)):
                escalated += 1
        ok = [r for r in results if r is not None]
        costs = [r.cost for r in ok]
        total = (
            None if (not ok or any(c is None for c in costs)) else sum((c for c in costs if c is not None), Decimal(0))
        )
        lat = np.array([r.latency_s for r in ok]) if ok else None
        reports.append(
            CandidateReport(
                name=name,
                tasks=len(tasks),
                passed=passed,
                failed_calls=failed,
                quality=passed / len(tasks),
                total_cost=total,
                cost_per_task=None if total is None else total / len(tasks),
                cost_per_success=None if total is None or not passed else total / passed,
                p50_latency_s=float(np.percentile(lat, 50)) if lat is not None else None,
                p95_latency_s=float(np.percentile(lat, 95)) if lat is not None else None,
                escalation_rate=escalated / len(tasks),
                input_tokens=sum(r.usage.input_tokens for r in ok),
                output_tokens=sum(r.usage.output_tokens for r in ok),
            )
        )
        if keep_results:
            kept[name] = results
    return EvalReport(candidates=tuple(reports), results=kept)
