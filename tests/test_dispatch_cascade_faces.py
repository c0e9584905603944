"""Cascade on its sync and async faces, offline (function backends, a verifier): both faces share one
step logic, so each accepts, escalates, asks for logprobs and records its trail the same way."""

from __future__ import annotations

import asyncio

import pytest

from ctxkit import Message
from ctxkit.dispatch import Cascade, FunctionBackend
from ctxkit.dispatch.result import Result


def _steps() -> tuple[FunctionBackend, FunctionBackend, FunctionBackend]:
    return (
        FunctionBackend(lambda m: "cheap guess", name="cheap"),
        FunctionBackend(lambda m: "middle: Paris", name="middle"),
        FunctionBackend(lambda m: "strong: Paris", name="strong"),
    )


def _score(req: object, res: Result) -> float:
    return 1.0 if "Paris" in res.text else 0.0


@pytest.mark.parametrize("face", ["sync", "async"])
def test_each_face_escalates_until_a_step_is_accepted(face: str) -> None:
    cheap, middle, strong = _steps()
    cascade = Cascade([cheap, middle, strong], thresholds=[0.5, 0.5], scorer=_score)
    prompt = [Message.user("Capital of France?")]
    r = (
        cascade.generate(prompt, max_tokens=8)
        if face == "sync"
        else asyncio.run(cascade.agenerate(prompt, max_tokens=8))
    )
    assert r.text == "middle: Paris" and len(strong.calls) == 0
    assert r.decision is not None and r.decision.route == "middle" and r.decision.escalated
    assert [(d.route, d.score, d.threshold) for d in r.decision.trail] == [("cheap", 0.0, 0.5), ("middle", 1.0, 0.5)]
    assert r.usage.output_tokens > 0 and r.attempts == 2
    # a verifier reads no logprobs, so none are asked for
    assert [c.logprobs for c in cheap.calls + middle.calls] == [False, False]


@pytest.mark.parametrize("face", ["sync", "async"])
def test_each_face_runs_the_last_step_when_none_is_accepted(face: str) -> None:
    cheap, _, strong = _steps()
    cascade = Cascade([cheap, strong], thresholds=[2.0], scorer=_score)
    prompt = [Message.user("Capital of France?")]
    r = (
        cascade.generate(prompt, max_tokens=8)
        if face == "sync"
        else asyncio.run(cascade.agenerate(prompt, max_tokens=8))
    )
    assert r.text == "strong: Paris"
    assert r.decision is not None and [(d.route, d.score) for d in r.decision.trail] == [
        ("cheap", 0.0),
        ("strong", None),
    ]
    assert r.decision.reason == "last cascade step: answer accepted"


@pytest.mark.parametrize("face", ["sync", "async"])
def test_the_default_scorer_asks_every_step_but_the_last_for_logprobs(face: str) -> None:
    empty = FunctionBackend(lambda m: "", name="empty")  # an empty answer scores -inf: escalate
    strong = FunctionBackend(lambda m: "Paris", name="strong")
    cascade = Cascade([empty, strong], thresholds=[-1.0])
    prompt = [Message.user("Capital of France?")]
    r = (
        cascade.generate(prompt, max_tokens=8)
        if face == "sync"
        else asyncio.run(cascade.agenerate(prompt, max_tokens=8))
    )
    assert r.text == "Paris"
    assert [c.logprobs for c in empty.calls] == [True] and [c.logprobs for c in strong.calls] == [False]
