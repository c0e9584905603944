"""Right-sizing across backends or dispatchers; now part of :mod:`ctxkit.eval` (:mod:`ctxkit.eval.compare`).

Kept so ``from ctxkit.dispatch.evaluation import evaluate`` keeps working.
"""

from __future__ import annotations

from ctxkit.eval.compare import CandidateReport, EvalReport, EvalTask, evaluate

__all__ = ["CandidateReport", "EvalReport", "EvalTask", "evaluate"]
