"""Run tasks through pipelines on one model; every call is one JSONL record, and a killed run resumes.

A record is keyed by ``(pipeline, task id, model)``. :func:`run_eval` first reads the records
already in ``path`` (a line cut short by a kill is dropped and rewritten), then runs only the
missing keys, appending each record as soon as its call returns (flushed and fsynced). So a
run killed at any point continues where it stopped, with no call made twice and none missing.

Costs are list prices: :class:`PricedBackend` wraps any backend so that each result's ``cost``
is what the *same prompt and answer* would cost on a named list-price model, counted with that
model's tokenizer (:func:`~ctxkit.dispatch.backends.base.estimate_usage`) and priced from
:mod:`ctxkit.pricing`. A local model's calls are therefore never counted as free; their
compute time is reported separately (``latency_s``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field

from ctxkit._model import CtxkitModel
from ctxkit.dispatch.backends.base import BaseBackend, Request, estimate_usage
from ctxkit.dispatch.registry import get_backend
from ctxkit.dispatch.result import Result
from ctxkit.errors import CtxkitError, InvalidInputError
from ctxkit.eval.pipelines import Pipeline, assemble_task
from ctxkit.eval.report import build_report
from ctxkit.eval.scorers import ContainsGold, ExactMatch, Scorer, TokenF1, get_scorer, normalize_answer
from ctxkit.eval.tasks import Task
from ctxkit.pricing import cost as list_cost
from ctxkit.usage import Usage

__all__ = ["CallRecord", "EvalRun", "PricedBackend", "evidence_stats", "read_records", "run_eval"]


class PricedBackend(BaseBackend):
    """``backend`` answering, priced as ``price_as`` (a model in ctxkit's price book).

    The result keeps the backend's own usage and latency; its ``cost`` is the list price of
    the request and answer counted in ``price_as``'s tokenizer, and ``raw["priced_usage"]``
    holds those counts. An unknown price gives ``cost=None``, never 0.
    """

    def __init__(self, backend: Any, price_as: str, *, name: str | None = None) -> None:
        self.inner = get_backend(backend)
        self.price_as = price_as
        super().__init__(name or f"{self.inner.name}@{price_as}", self.inner.model, local=self.inner.local)

    def __repr__(self) -> str:
        return f"PricedBackend({self.inner.name!r}, price_as={self.price_as!r})"

    @property
    def context_window(self) -> int | None:
        w = getattr(self.inner, "context_window", None)
        return w if isinstance(w, int) else None

    def _generate(self, request: Request) -> Result:
        result = self.inner.generate(request)
        priced = estimate_usage(request, self.price_as, result.text)
        raw = {"priced_usage": priced.model_dump(), "price_as": self.price_as}
        return result.model_copy(update={"cost": list_cost(priced, self.price_as), "raw": raw})


class CallRecord(CtxkitModel):
    """One call of one pipeline on one task with one model, as stored in the run's JSONL."""

    model_config = ConfigDict(frozen=True)

    pipeline: str
    task_id: str
    model: str
    prediction: str = ""
    scorer: str
    score: float
    success: bool
    scores: dict[str, float] = Field(default_factory=dict)
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    priced_input_tokens: int | None = None
    priced_output_tokens: int | None = None
    price_as: str | None = None
    cost: Decimal | None = None
    latency_s: float = 0.0
    prep_s: float = 0.0
    evidence_in_context: bool | None = None
    evidence_recall: float | None = None
    answer_in_context: bool | None = None
    escalated: bool = False
    route: str | None = None
    finish_reason: str = ""
    error: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)
    at: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.pipeline, self.task_id, self.model)

    @property
    def total_s(self) -> float:
        return self.prep_s + self.latency_s


def read_records(path: str | Path) -> list[CallRecord]:
    """The complete records of a run file (a last line cut short by a kill is ignored)."""
    p = Path(path)
    if not p.is_file():
        return []
    out: list[CallRecord] = []
    for line in p.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            out.append(CallRecord.model_validate_json(line))
        except ValueError:
            continue  # a torn final line; it is rewritten when the run resumes
    return out


def _repair(path: Path) -> None:
    """Cut a torn final line (no newline: the process died mid-write) so appends start clean."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


_WS = re.compile(r"\s+")


def _squash(text: str) -> str:
    return _WS.sub(" ", text).strip().lower()


def evidence_stats(task: Task, context: str) -> tuple[bool | None, float | None, bool | None]:
    """Whether every evidence sentence is in ``context``, the share that is, and whether a gold answer is.

    Sentences are compared with whitespace collapsed and case folded; the answer as SQuAD-normalized
    whole words. ``None`` where the task has no evidence (or the context is empty, for the answer).
    """
    ctx = _squash(context)
    answer = None
    if task.answers and ctx:
        norm = f" {normalize_answer(context)} "
        answer = any((n := normalize_answer(a)) and f" {n} " in norm for a in task.answers)
    if not task.evidence:
        return None, None, answer
    found = [bool(_squash(s)) and _squash(s) in ctx for s in task.evidence]
    return all(found), sum(found) / len(found), answer


_STANDARD: tuple[Scorer, ...] = (ExactMatch(), TokenF1(), ContainsGold())


class EvalRun:
    """The records of a run (in memory), with :meth:`report` for the statistics."""

    def __init__(self, records: Sequence[CallRecord], *, path: Path | None = None) -> None:
        self.records = list(records)
        self.path = path

    def __repr__(self) -> str:
        pipes = sorted({r.pipeline for r in self.records})
        return (
            f"EvalRun(records={len(self.records)}, pipelines={pipes}, path={str(self.path) if self.path else None!r})"
        )

    @classmethod
    def load(cls, path: str | Path) -> EvalRun:
        return cls(read_records(path), path=Path(path))

    def report(self, baseline: str | None = None, **kw: Any) -> Any:
        """A :class:`~ctxkit.eval.report.Report` over these records (see :func:`~ctxkit.eval.report.build_report`)."""

        return build_report(self.records, baseline=baseline, **kw)


def _call(backend: Any, messages: Sequence[Any], options: dict[str, Any]) -> Result:
    if hasattr(backend, "run"):  # a Dispatcher
        out: Result = backend.run(list(messages), **options)
        return out
    res: Result = backend.generate(list(messages), **options)
    return res


def run_eval(
    tasks: Sequence[Task],
    pipelines: Iterable[Pipeline],
    backend: Any = None,
    *,
    model: str | None = None,
    path: str | Path | None = None,
    scorer: str | Scorer = "contains_gold",
    price_as: str | None = None,
    max_tokens: int = 32,
    progress: bool = True,
    **options: Any,
) -> EvalRun:
    """Run every task through every pipeline and record each call (resumable through ``path``).

    ``backend`` answers for pipelines without their own (a backend or a dispatcher);
    ``model`` labels the records (default: the backend's name); ``price_as`` wraps the
    backend in :class:`PricedBackend`. Greedy decoding (``temperature=0``) unless
    ``options`` say otherwise. Calls that raise a ctxkit error are recorded as failures
    with the error, never dropped.
    """
    pipes = list(pipelines)
    if not tasks:
        raise InvalidInputError("run_eval needs at least one task")
    if not pipes:
        raise InvalidInputError("run_eval needs at least one pipeline")
    names = [p.name for p in pipes]
    if len(set(names)) != len(names):
        raise InvalidInputError(f"pipeline names must be unique, got {names}")
    ids = [t.id for t in tasks]
    if len(set(ids)) != len(ids):
        raise InvalidInputError("task ids must be unique")
    if backend is None and any(getattr(p, "backend", None) is None for p in pipes):
        raise InvalidInputError("pass a backend for the pipelines that have none of their own")
    if backend is not None and price_as is not None:
        backend = PricedBackend(backend, price_as)
    label = model or (getattr(backend, "name", None) if backend is not None else None) or "pipeline-models"
    default_scorer = get_scorer(scorer)
    options = {"temperature": 0.0, "max_tokens": max_tokens, **options}

    out_path = Path(path) if path is not None else None
    records: list[CallRecord] = []
    done: set[tuple[str, str, str]] = set()
    if out_path is not None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        _repair(out_path)
        for r in read_records(out_path):
            if r.model == label and r.key not in done:
                done.add(r.key)
                records.append(r)
    # task by task (every pipeline on a task before the next task): a run cut short stays paired
    todo = [(p, t) for t in tasks for p in pipes if (p.name, t.id, label) not in done]
    bar = None
    if progress:
        from tqdm.auto import tqdm  # type: ignore[import-untyped]

        bar = tqdm(total=len(pipes) * len(tasks), initial=len(pipes) * len(tasks) - len(todo), desc="eval", unit="call")
    sink = open(out_path, "a", encoding="utf-8") if out_path is not None else None  # noqa: SIM115
    try:
        for pipe, task in todo:
            rec = _one(pipe, task, backend, label, default_scorer, options)
            records.append(rec)
            if sink is not None:
                sink.write(rec.model_dump_json() + "\n")
                sink.flush()
                os.fsync(sink.fileno())
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(pipe.name)
    finally:
        if sink is not None:
            sink.close()
        if bar is not None:
            bar.close()
    wanted = {(p.name, t.id, label) for p in pipes for t in tasks}
    return EvalRun([r for r in records if r.key in wanted], path=out_path)


def _one(pipe: Pipeline, task: Task, backend: Any, label: str, scorer: Scorer, options: dict[str, Any]) -> CallRecord:
    chosen = get_scorer(task.scorer) if task.scorer else scorer
    built = assemble_task(pipe, task)
    answerer = getattr(pipe, "backend", None) or backend
    ev, recall, ans = evidence_stats(task, built.context)
    base: dict[str, Any] = {
        "pipeline": pipe.name,
        "task_id": task.id,
        "model": label,
        "scorer": chosen.name,
        "prep_s": built.prep_s,
        "evidence_in_context": ev,
        "evidence_recall": recall,
        "answer_in_context": ans,
        "meta": built.meta,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    try:
        result = _call(answerer, built.messages, dict(options))
    except CtxkitError as exc:
        return CallRecord(score=0.0, success=False, error=f"{type(exc).__name__}: {exc}", **base)
    text = result.text.strip()
    score = chosen.score(text, task.answers, task.question)
    scores = {s.name: s.score(text, task.answers, task.question) for s in _STANDARD}
    priced = (result.raw or {}).get("priced_usage") if isinstance(result.raw, dict) else None
    pu = Usage.model_validate(priced) if isinstance(priced, dict) else None
    decision = result.decision
    escalated = bool(decision is not None and (decision.escalated or any(t.escalated for t in decision.trail)))
    return CallRecord(
        prediction=text,
        score=score,
        success=chosen.passed(score),
        scores=scores,
        input_tokens=result.usage.input_tokens,
        cached_tokens=result.usage.cache_read_tokens,
        output_tokens=result.usage.output_tokens,
        priced_input_tokens=pu.input_tokens if pu else None,
        priced_output_tokens=pu.output_tokens if pu else None,
        price_as=(result.raw or {}).get("price_as") if isinstance(result.raw, dict) else None,
        cost=result.cost,
        latency_s=result.latency_s,
        escalated=escalated,
        route=decision.route if decision is not None else None,
        finish_reason=result.finish_reason,
        **base,
    )
