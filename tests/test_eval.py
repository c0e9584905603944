"""ctxkit.eval: scorers, statistics, resumable runs (killed for real), reports, the CLI, the Qwen assembly."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctxkit.errors import InvalidInputError, ResourceError
from ctxkit.eval import (
    CallRecord,
    EvalDocument,
    NaivePipeline,
    PricedBackend,
    Task,
    bootstrap_ci,
    build_report,
    contains_gold,
    exact_match,
    load_tasks,
    mcnemar,
    normalize_answer,
    numeric_match,
    paired_bootstrap_diff,
    read_records,
    run_eval,
    save_tasks,
    token_f1,
)
from ctxkit.eval.pipelines import parse_pipeline
from ctxkit.eval.runner import evidence_stats

ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- scorers
@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("The Eiffel Tower.", "eiffel tower"),
        ("  A  cat, an   apple; THE end!", "cat apple end"),
        ("theater", "theater"),  # articles only as whole words
        ("Rock 'n' Roll", "rock n roll"),
        ("", ""),
    ],
)
def test_squad_normalization(text: str, normalized: str) -> None:
    assert normalize_answer(text) == normalized


def test_exact_match_and_f1_follow_the_official_script() -> None:
    assert exact_match("the Eiffel Tower.", ["Eiffel Tower"]) == 1.0
    assert exact_match("Eiffel", ["Eiffel Tower"]) == 0.0
    assert exact_match("Paris", ["London", "paris"]) == 1.0
    # precision 2/3, recall 1 -> 0.8
    assert token_f1("Barack Obama president", "Barack Obama") == pytest.approx(0.8)
    # both normalize to empty: 1; one empty: 0 (official behaviour)
    assert token_f1("the", "a") == 1.0
    assert token_f1("the", "Paris") == 0.0
    # repeated tokens count once per occurrence (Counter intersection)
    assert token_f1("x b b", "b b c") == pytest.approx(2 / 3)
    assert token_f1("a b b", "b b c") == pytest.approx(0.8)  # "a" is an article: precision 1, recall 2/3
    assert token_f1("nothing shared", ["x", "nothing at all"]) == pytest.approx(0.4)  # p 1/2, r 1/3


def test_contains_gold_needs_whole_words() -> None:
    assert contains_gold("He was born in Paris, France.", ["paris"]) == 1.0
    assert contains_gold("a Parisian", ["Paris"]) == 0.0
    assert contains_gold("from 1986 to 2013", ["1986 to 2013"]) == 1.0
    assert contains_gold("anything", ["the"]) == 0.0  # a gold that normalizes to nothing never matches


def test_numeric_match_gsm8k() -> None:
    assert numeric_match("so she has 3 + 4 = 7 apples\n#### 1,234", ["1234"]) == 1.0
    assert numeric_match("The answer is 3.50.", ["3.5"]) == 1.0
    assert numeric_match("The answer is 12", ["#### 13"]) == 0.0
    assert numeric_match("no number here", ["5"]) == 0.0
    assert numeric_match("-4", ["-4"]) == 1.0


def test_scorers_need_a_gold() -> None:
    with pytest.raises(InvalidInputError):
        exact_match("x", [])


@given(st.text(max_size=40), st.lists(st.text(max_size=30), min_size=1, max_size=3))
def test_scorer_invariants(pred: str, golds: list[str]) -> None:
    em, f1, cg = exact_match(pred, golds), token_f1(pred, golds), contains_gold(pred, golds)
    assert 0.0 <= f1 <= 1.0
    assert em in (0.0, 1.0) and cg in (0.0, 1.0)
    if em == 1.0:
        assert f1 == 1.0
        if any(normalize_answer(g) for g in golds if normalize_answer(g) == normalize_answer(pred)):
            assert cg == 1.0
    assert token_f1(pred, golds[0]) == pytest.approx(token_f1(golds[0], pred))  # F1 is symmetric


# --------------------------------------------------------------------------- statistics
def test_mcnemar_known_values() -> None:
    a = [True] * 1 + [False] * 6 + [True] * 5  # only-A right: 1, only-B right: 6, both right: 5
    b = [False] * 1 + [True] * 6 + [True] * 5
    r = mcnemar(a, b)
    assert (r.b, r.c) == (1, 6)
    assert r.p_value == pytest.approx(2 * (1 + 7) / 128)  # exact two-sided binomial, n=7
    chi = mcnemar([True] * 10 + [False] * 2, [False] * 10 + [True] * 2, exact=False)
    assert chi.statistic == pytest.approx(49 / 12)
    assert chi.p_value == pytest.approx(0.043308, abs=1e-6)
    assert mcnemar([True, False], [True, False]).p_value == 1.0


def test_mcnemar_matches_scipy_and_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    cases = [(rng.random(60) < 0.5, rng.random(60) < 0.4) for _ in range(5)]
    with_scipy = [mcnemar(x, y) for x, y in cases]
    for (x, y), r in zip(cases, with_scipy, strict=True):
        n = r.b + r.c
        assert r.p_value == pytest.approx(stats.binomtest(min(r.b, r.c), n, 0.5).pvalue)
        chi = mcnemar(x, y, exact=False)
        assert chi.p_value == pytest.approx(stats.chi2.sf(chi.statistic, 1))
    monkeypatch.setitem(sys.modules, "scipy.stats", None)  # the math.comb path
    for (x, y), r in zip(cases, with_scipy, strict=True):
        assert mcnemar(x, y).p_value == pytest.approx(r.p_value, rel=1e-12)


def test_bootstrap_interval_matches_the_normal_approximation_and_scipy() -> None:
    x = np.array([1.0] * 120 + [0.0] * 280)  # p = 0.3, n = 400
    lo, hi = bootstrap_ci(x, n_boot=20_000)
    se = math.sqrt(0.3 * 0.7 / 400)
    assert lo == pytest.approx(0.3 - 1.96 * se, abs=0.006)
    assert hi == pytest.approx(0.3 + 1.96 * se, abs=0.006)
    stats = pytest.importorskip("scipy.stats")
    ref = stats.bootstrap((x,), np.mean, method="percentile", n_resamples=20_000, random_state=1).confidence_interval
    assert lo == pytest.approx(ref.low, abs=0.006) and hi == pytest.approx(ref.high, abs=0.006)
    assert bootstrap_ci([1, 1, 1]) == (1.0, 1.0)
    assert bootstrap_ci(x) == bootstrap_ci(x)  # seeded


def test_paired_bootstrap_difference() -> None:
    a = np.array([1, 1, 0, 1, 0, 1, 1, 0] * 20, dtype=float)
    b = np.array([1, 0, 0, 1, 0, 0, 1, 0] * 20, dtype=float)
    d, lo, hi = paired_bootstrap_diff(a, b)
    assert d == pytest.approx(0.25)
    assert lo < d < hi and lo > 0
    with pytest.raises(InvalidInputError):
        paired_bootstrap_diff([1.0], [1.0, 0.0])


# --------------------------------------------------------------------------- tasks and pipelines
def _tasks(n: int = 5) -> list[Task]:
    return [
        Task(
            id=f"t{i}",
            question=f"What is the code of item {i}?",
            answers=(f"code {i}",),
            documents=(
                EvalDocument(id="d0", title="Item list", text=f"Item {i} has code {i}. It is blue."),
                EvalDocument(id="d1", title="Other", text="Nothing relevant is here."),
            ),
            evidence=(f"Item {i} has code {i}.",),
        )
        for i in range(n)
    ]


def test_tasks_round_trip_and_validation(tmp_path: Path) -> None:
    tasks = _tasks(3)
    path = save_tasks(tasks, tmp_path / "tasks.jsonl")
    assert load_tasks(path) == tasks
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "question": "q", "answers": []}\n')
    with pytest.raises(InvalidInputError, match=r"bad\.jsonl:1"):
        load_tasks(bad)
    with pytest.raises(ResourceError):
        load_tasks(tmp_path / "missing.jsonl")


def test_naive_pipeline_keeps_everything_and_stamps_the_time() -> None:
    t = _tasks(1)[0]
    built = NaivePipeline().assemble(t)
    assert built.messages[0].content.startswith("Current time: ")
    assert all(d.text in built.context for d in t.documents)
    assert evidence_stats(t, built.context) == (True, 1.0, True)
    assert evidence_stats(t, "Nothing relevant is here.") == (False, 0.0, False)


def test_parse_pipeline_names() -> None:
    assert parse_pipeline("ctxkit-512").name == "ctxkit-512"
    assert parse_pipeline("naive-top4").top_k == 4  # type: ignore[attr-defined]
    assert parse_pipeline("ctxkit-256-prune0.5").prune_rate == 0.5  # type: ignore[attr-defined]
    with pytest.raises(InvalidInputError, match="unknown pipeline"):
        parse_pipeline("ctxkit")


# --------------------------------------------------------------------------- runner and report
def _echo_backend() -> object:
    from ctxkit.dispatch import FunctionBackend

    # answers with the last code it saw: right on every task
    def fn(messages: object) -> str:
        m = re.search(r"Item (\d+)", messages[-1].content)  # type: ignore[index]
        return f"code {m[1]}" if m else "none"

    return FunctionBackend(fn, model="gpt-4o-mini", local=True)


def test_run_prices_at_the_list_model_and_reports(tmp_path: Path) -> None:
    from ctxkit.pricing import cost

    tasks = _tasks(4)
    run = run_eval(
        tasks,
        [NaivePipeline(), NaivePipeline(name="naive-nostamp", timestamp=False)],
        _echo_backend(),
        model="echo",
        price_as="gpt-4o",
        path=tmp_path / "run.jsonl",
        progress=False,
    )
    assert len(run.records) == 8 and all(r.success for r in run.records)
    r0 = run.records[0]
    assert r0.price_as == "gpt-4o" and r0.priced_input_tokens and r0.priced_output_tokens
    from ctxkit.usage import Usage

    assert r0.cost == cost(Usage(input_tokens=r0.priced_input_tokens, output_tokens=r0.priced_output_tokens), "gpt-4o")
    assert isinstance(r0.cost, Decimal) and r0.cost > 0
    report = run.report(baseline="naive")
    p = report.get("naive")
    assert p.accuracy == 1.0 and p.successes == 4
    assert p.total_cost == sum((r.cost for r in run.records if r.pipeline == "naive" and r.cost), Decimal(0))
    assert p.cost_per_success == p.total_cost / 4  # type: ignore[operator]
    c = report.comparison("naive-nostamp", "naive")
    assert c.accuracy_diff == 0.0 and c.mcnemar.p_value == 1.0
    assert c.input_tokens_ratio is not None and c.input_tokens_ratio < 1  # no timestamp header
    html = report._repr_html_()
    assert html.count("<table>") == 2 and "naive-nostamp" in html
    assert "accuracy [95% CI]" in str(report) and "| pipeline |" in report.markdown()
    png = report.pareto(tmp_path / "pareto.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [q.pipeline for q in report.pareto_front()] == ["naive-nostamp"]  # same accuracy, cheaper


def test_unknown_price_is_none_never_zero(tmp_path: Path) -> None:
    run = run_eval(_tasks(2), [NaivePipeline()], _echo_backend(), price_as="no-such-model-xyz", progress=False)
    assert all(r.cost is None for r in run.records)
    p = run.report().get("naive")
    assert p.total_cost is None and p.cost_per_success is None
    assert "unknown" in str(run.report())


def test_html_repr_escapes_names() -> None:
    rec = CallRecord(pipeline="<b>x</b>", task_id="1", model="m", scorer="em", score=1.0, success=True, cost=Decimal(1))
    html = build_report([rec])._repr_html_()
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html


_CHILD = r"""
import sys, time
from pathlib import Path
from ctxkit.dispatch import FunctionBackend
from ctxkit.eval import NaivePipeline, Task, run_eval

calls = Path(sys.argv[2])

def fn(messages):
    with open(calls, "a") as f:
        f.write(messages[-1].content.split("\n")[-1] + "\n")
    time.sleep(float(sys.argv[3]))
    return "answer"

tasks = [Task(id=f"t{i}", question=f"question {i}", answers=("answer",)) for i in range(12)]
pipes = [NaivePipeline(), NaivePipeline(name="plain", timestamp=False)]
backend = FunctionBackend(fn, model="gpt-4o-mini", local=True)
run_eval(tasks, pipes, backend, model="fn", path=sys.argv[1], progress=False)
"""


def test_a_killed_run_resumes_without_duplicates_or_gaps(tmp_path: Path) -> None:
    out, calls, script = tmp_path / "run.jsonl", tmp_path / "calls.log", tmp_path / "child.py"
    script.write_text(_CHILD)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    child = subprocess.Popen([sys.executable, str(script), str(out), str(calls), "0.2"], env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not out.is_file() or out.read_text().count("\n") < 5):
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    first = read_records(out)
    assert 5 <= len(first) < 24
    with open(out, "a") as f:  # a torn last line, as if the kill landed mid-write
        f.write('{"pipeline": "naive", "task_')
    done = subprocess.run([sys.executable, str(script), str(out), str(calls), "0"], env=env, timeout=300)
    assert done.returncode == 0
    records = read_records(out)
    keys = [(r.pipeline, r.task_id, r.model) for r in records]
    assert len(keys) == len(set(keys)) == 24  # every (pipeline, task) once
    assert {(p, f"t{i}") for p in ("naive", "plain") for i in range(12)} == {(k[0], k[1]) for k in keys}
    assert all(line.startswith("{") and line.endswith("}") for line in out.read_text().splitlines())
    n_calls = len(calls.read_text().splitlines())
    assert 24 <= n_calls <= 25  # only the call in flight at the kill is made again
    assert [(r.pipeline, r.task_id) for r in records[: len(first)]] == [(r.pipeline, r.task_id) for r in first]


@pytest.mark.model
def test_runner_with_the_local_model(tmp_path: Path) -> None:
    from ctxkit.dispatch import LlamaCppBackend

    backend = LlamaCppBackend.from_path(n_ctx=2048)
    tasks = [
        Task(
            id="fr",
            question="What is the capital of France?",
            answers=("Paris",),
            documents=(EvalDocument(id="d0", title="France", text="Paris is the capital of France."),),
            evidence=("Paris is the capital of France.",),
        ),
        Task(id="two", question="What is 2 + 2? Reply with the number.", answers=("4",)),
    ]
    run = run_eval(
        tasks,
        [NaivePipeline()],
        backend,
        model="smollm2",
        price_as="gpt-4o-mini",
        max_tokens=8,
        path=tmp_path / "r.jsonl",
        progress=False,
    )
    assert [r.task_id for r in run.records] == ["fr", "two"]
    for r in run.records:
        assert r.error is None and r.input_tokens > 0 and r.output_tokens > 0 and r.latency_s > 0
        assert isinstance(r.cost, Decimal) and r.cost > 0  # a local call priced at the list model, not free
    assert run.records[0].evidence_in_context is True
    again = run_eval(
        tasks,
        [NaivePipeline()],
        backend,
        model="smollm2",
        price_as="gpt-4o-mini",
        max_tokens=8,
        path=tmp_path / "r.jsonl",
        progress=False,
    )
    assert [r.prediction for r in again.records] == [r.prediction for r in run.records]  # resumed, not re-run
    assert len(read_records(tmp_path / "r.jsonl")) == 2


def test_priced_backend_keeps_local_usage() -> None:
    b = PricedBackend(_echo_backend(), "gpt-4o")
    r = b.generate("Item 3 is here")
    assert r.raw is not None and r.raw["price_as"] == "gpt-4o"
    assert r.usage.input_tokens > 0 and r.cost is not None and r.cost > 0


def test_dispatch_evaluation_names_still_import() -> None:
    import ctxkit.dispatch as dispatch
    import ctxkit.eval as ev
    from ctxkit.dispatch.evaluation import CandidateReport, EvalReport, EvalTask, evaluate

    assert dispatch.evaluate is evaluate is ev.evaluate
    assert {CandidateReport, EvalReport, EvalTask} <= {ev.CandidateReport, ev.EvalReport, ev.EvalTask}


# --------------------------------------------------------------------------- CLI
def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, "-c", "from ctxkit.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def test_cli_eval_rejects_an_unknown_pipeline(tmp_path: Path) -> None:
    path = save_tasks(_tasks(1), tmp_path / "t.jsonl")
    out = _cli("eval", str(path), "--pipelines", "magic")
    assert out.returncode == 2 and "unknown pipeline" in out.stderr


@pytest.mark.model
def test_cli_eval_on_a_task_file(tmp_path: Path) -> None:
    path = save_tasks(_tasks(2), tmp_path / "t.jsonl")
    run = tmp_path / "run.jsonl"
    out = _cli("eval", str(path), "--pipelines", "naive,naive-top1", "--out", str(run), "--max-tokens", "6")
    assert out.returncode == 0, out.stderr
    assert "naive-top1" in out.stdout and "accuracy [95% CI]" in out.stdout
    records = [json.loads(x) for x in run.read_text().splitlines()]
    assert len(records) == 4 and {r["price_as"] for r in records} == {"gpt-4o-mini"}


# --------------------------------------------------------------------------- the Qwen file
def test_qwen_assembly_checks_size_and_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ctxkit.eval.models as models

    parts = []
    for i in range(3):
        p = tmp_path / f"part{i}.bin"
        p.write_bytes(bytes([i]) * 1000)
        parts.append(p)
    blob = b"".join(p.read_bytes() for p in parts)
    monkeypatch.setattr(models, "_part_paths", lambda: parts)
    monkeypatch.setattr(models, "QWEN25_CODER_05B_SIZE", len(blob))
    monkeypatch.setattr(models, "QWEN25_CODER_05B_SHA256", hashlib.sha256(blob).hexdigest())
    out = models.qwen25_coder_05b(tmp_path / "cache")
    assert out.read_bytes() == blob
    assert models.qwen25_coder_05b(tmp_path / "cache") == out  # verified, reused
    monkeypatch.setattr(models, "QWEN25_CODER_05B_SHA256", "0" * 64)  # the packages hold something else
    with pytest.raises(ResourceError, match="sha256"):
        models.qwen25_coder_05b(tmp_path / "other")
    assert not (tmp_path / "other" / models.QWEN25_CODER_05B_NAME).exists()  # nothing half-written left
    assert [p.name for p in (tmp_path / "other").iterdir()] == []
    monkeypatch.setattr(models, "QWEN25_CODER_05B_SIZE", len(blob) + 1)
    with pytest.raises(ResourceError, match="bytes"):
        models.qwen25_coder_05b(tmp_path / "third")


@pytest.mark.model
def test_peer_style_and_ctxkit_pipelines_build_prompts() -> None:
    """LangChain-style top 4, LlamaIndex-style top 2 and ctxkit's budget retrieval on one task with history."""
    pytest.importorskip("langchain_core")
    pytest.importorskip("llama_index.core")
    from ctxkit.eval import CtxkitPipeline, LangChainStylePipeline, LlamaIndexStylePipeline
    from ctxkit.messages import Message
    from ctxkit.tokenizers import get_tokenizer

    docs = tuple(
        EvalDocument(id=f"d{i}", title=f"Doc {i}", text=f"Fact number {i}: the river {i} is {i * 10} km long.")
        for i in range(8)
    )
    history = (Message.user("word " * 900), Message.assistant("ok"), Message.user("next"), Message.assistant("sure"))
    task = Task(
        id="x",
        question="How long is river 3?",
        answers=("30 km",),
        documents=docs,
        history=history,
        evidence=("Fact number 3: the river 3 is 30 km long.",),
    )
    lc = LangChainStylePipeline(history_tokens=300).assemble(task)
    assert lc.meta["documents"] == 4 and lc.context.count("<document") == 4
    assert [m.content for m in lc.messages[1:-1]] == ["next", "sure"]  # trim_messages dropped the long turn
    li = LlamaIndexStylePipeline().assemble(task)
    assert li.meta["documents"] == 2 and li.context.count("<document") == 2
    ck = CtxkitPipeline(60).assemble(task)
    tok = get_tokenizer("gpt-4o-mini")
    assert 0 < tok.count(ck.context) <= 60
    assert evidence_stats(task, ck.context)[0] is True  # the one relevant sentence fits 60 tokens
