"""Pipeline-level evaluation: the same answers for less money and time, measured.

A **task** is a question with its documents (or none), optional history, gold answers and a
scorer (:mod:`ctxkit.eval.tasks`). A **pipeline** is a named configuration of ctxkit parts —
retrieval budget, pruning, layout, routing — or a baseline (:mod:`ctxkit.eval.pipelines`).
:func:`run_eval` runs every task through every pipeline on one model, one JSONL record per
call, resumable after a kill (:mod:`ctxkit.eval.runner`); :meth:`EvalRun.report` gives
accuracy with a bootstrap 95% interval, McNemar's paired test against a baseline,
input/cached/output tokens, p50/p95 latency, list-price cost (``Decimal``; unknown is
``None``), cost per successful task and an accuracy-vs-cost Pareto plot
(:mod:`ctxkit.eval.report`). Scorers: SQuAD exact match and token F1, contains-gold, numeric
match, an LLM judge (:mod:`ctxkit.eval.scorers`). ``ctxkit eval`` runs it from the shell.

:func:`evaluate` (from :mod:`ctxkit.eval.compare`, also importable from
``ctxkit.dispatch.evaluation``) compares backends or dispatchers on prompts with expected answers.
"""

from __future__ import annotations

from ctxkit.eval.compare import CandidateReport, EvalReport, EvalTask, evaluate
from ctxkit.eval.models import qwen25_coder_05b
from ctxkit.eval.pipelines import (
    BuiltPrompt,
    CompressedPipeline,
    CtxkitPipeline,
    LangChainStylePipeline,
    LlamaIndexStylePipeline,
    NaivePipeline,
    Pipeline,
)
from ctxkit.eval.report import (
    Comparison,
    McNemarResult,
    PipelineReport,
    Report,
    bootstrap_ci,
    build_report,
    mcnemar,
    paired_bootstrap_diff,
)
from ctxkit.eval.runner import CallRecord, EvalRun, PricedBackend, read_records, run_eval
from ctxkit.eval.scorers import (
    ContainsGold,
    ExactMatch,
    Judge,
    NumericMatch,
    Scorer,
    TokenF1,
    contains_gold,
    exact_match,
    get_scorer,
    normalize_answer,
    numeric_match,
    token_f1,
)
from ctxkit.eval.tasks import (
    EvalDocument,
    Task,
    from_qa_example,
    hotpotqa_tasks,
    load_tasks,
    save_tasks,
    squad_tasks,
    suite,
)

__all__ = [
    "BuiltPrompt",
    "CallRecord",
    "CandidateReport",
    "Comparison",
    "CompressedPipeline",
    "ContainsGold",
    "CtxkitPipeline",
    "EvalDocument",
    "EvalReport",
    "EvalRun",
    "EvalTask",
    "ExactMatch",
    "Judge",
    "LangChainStylePipeline",
    "LlamaIndexStylePipeline",
    "McNemarResult",
    "NaivePipeline",
    "NumericMatch",
    "Pipeline",
    "PipelineReport",
    "PricedBackend",
    "Report",
    "Scorer",
    "Task",
    "TokenF1",
    "bootstrap_ci",
    "build_report",
    "contains_gold",
    "evaluate",
    "exact_match",
    "from_qa_example",
    "get_scorer",
    "hotpotqa_tasks",
    "load_tasks",
    "mcnemar",
    "normalize_answer",
    "numeric_match",
    "paired_bootstrap_diff",
    "qwen25_coder_05b",
    "read_records",
    "run_eval",
    "save_tasks",
    "squad_tasks",
    "suite",
    "token_f1",
]
