"""Evaluation tasks: a question, its documents (or none), optional history, gold answers, a scorer.

Tasks come from ctxkit's QA loaders (:func:`hotpotqa_tasks`, :func:`squad_tasks`), from a
JSONL file (:func:`load_tasks`, one :class:`Task` object per line) or are built directly.
``evidence`` lists the sentences that hold the answer (HotpotQA's supporting facts), so a
run can say whether the packed context still contained them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator

from ctxkit._model import CtxkitModel
from ctxkit.datasets import hotpotqa, squad_v2_dev
from ctxkit.errors import InvalidInputError, ResourceError
from ctxkit.messages import Message

__all__ = [
    "EvalDocument",
    "Task",
    "from_qa_example",
    "hotpotqa_tasks",
    "load_tasks",
    "save_tasks",
    "squad_tasks",
    "suite",
]


class EvalDocument(CtxkitModel):
    """A titled document given with a task."""

    model_config = ConfigDict(frozen=True)

    id: str
    text: str
    title: str = ""


class Task(CtxkitModel):
    """One question to answer and how to judge the answer.

    ``scorer`` names the scorer for this task (``exact_match``, ``token_f1``,
    ``contains_gold``, ``numeric_match``); ``None`` uses the run's scorer.
    """

    model_config = ConfigDict(frozen=True)

    id: str = Field(min_length=1)
    question: str = Field(min_length=1)
    answers: tuple[str, ...]
    documents: tuple[EvalDocument, ...] = ()
    history: tuple[Message, ...] = ()
    evidence: tuple[str, ...] = ()
    kind: str = ""
    scorer: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("answers")
    @classmethod
    def _has_answer(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v or not any(a.strip() for a in v):
            raise ValueError("a task needs at least one non-empty gold answer")
        return v


def from_qa_example(example: Any) -> Task:
    """A :class:`Task` from a :class:`ctxkit.datasets.QAExample` (passages become documents)."""
    docs = tuple(EvalDocument(id=f"p{i}", title=p.title, text=p.text) for i, p in enumerate(example.passages))
    evidence = tuple(example.passages[i].sentences[k] for i, k in example.supporting)
    return Task(
        id=str(example.id),
        question=str(example.question),
        answers=tuple(example.answers),
        documents=docs,
        evidence=evidence,
        kind=str(example.kind),
    )


def hotpotqa_tasks(split: Literal["dev", "heldout"] = "heldout", n: int | None = None, offset: int = 0) -> list[Task]:
    """HotpotQA (distractor setting) as tasks, in file order: ``n`` tasks from ``offset``."""

    examples = hotpotqa(split)
    end = None if n is None else offset + n
    return [from_qa_example(e) for e in examples[offset:end]]


def squad_tasks(n: int | None = None, offset: int = 0) -> list[Task]:
    """SQuAD v2 dev (answerable questions) as tasks, in file order: for final reports only."""

    end = None if n is None else offset + n
    return [from_qa_example(e) for e in squad_v2_dev()[offset:end]]


_SUITES = ("hotpotqa-heldout", "hotpotqa-dev", "squad")


def suite(name: str, n: int = 20) -> list[Task]:
    """A named task suite: ``hotpotqa-heldout``, ``hotpotqa-dev`` or ``squad`` (first ``n`` questions)."""
    if n < 1:
        raise InvalidInputError(f"a suite needs n >= 1, got {n}")
    if name == "hotpotqa-heldout":
        return hotpotqa_tasks("heldout", n)
    if name == "hotpotqa-dev":
        return hotpotqa_tasks("dev", n)
    if name == "squad":
        return squad_tasks(n)
    raise InvalidInputError(f"unknown suite {name!r}; choose one of {list(_SUITES)} or pass a JSONL task file")


def load_tasks(path: str | Path) -> list[Task]:
    """Tasks from a JSONL file, one :class:`Task` object per line (blank lines skipped)."""
    p = Path(path)
    if not p.is_file():
        raise ResourceError(f"no task file at {str(p)!r}")
    tasks: list[Task] = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            tasks.append(Task.model_validate_json(line))
        except InvalidInputError as exc:  # CtxkitModel turns pydantic's errors into this, scrubbed
            raise InvalidInputError(f"{p}:{n} is not a valid task: {exc}") from exc
    if not tasks:
        raise InvalidInputError(f"{p} holds no tasks")
    ids = [t.id for t in tasks]
    if len(set(ids)) != len(ids):
        raise InvalidInputError(f"{p} repeats task ids; every task needs a unique id")
    return tasks


def save_tasks(tasks: Sequence[Task], path: str | Path) -> Path:
    """Write tasks as JSONL (the format :func:`load_tasks` reads)."""
    p = Path(path)
    p.write_text("".join(json.dumps(t.model_dump(mode="json")) + "\n" for t in tasks), encoding="utf-8")
    return p
