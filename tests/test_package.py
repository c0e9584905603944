"""The public surface, cheap import, the error tree, and the runnable examples."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ctxkit
from ctxkit import errors

ROOT = Path(__file__).resolve().parents[1]

OPTIONAL = [
    "torch",
    "transformers",
    "sentence_transformers",
    "faiss",
    "bm25s",
    "llama_cpp",
    "llmlingua",
    "openai",
    "anthropic",
    "langchain_core",
    "llama_index",
    "opentelemetry",
    "qdrant_client",
    "matplotlib",
    "pandas",
    "tokenizers",
    "typer",
    "tqdm",
    "httpx",
]


def test_all_is_sorted_and_resolvable() -> None:
    assert ctxkit.__all__ == sorted(ctxkit.__all__)
    for name in ctxkit.__all__:
        assert getattr(ctxkit, name) is not None, name
    with pytest.raises(AttributeError):
        _ = ctxkit.not_a_name  # type: ignore[attr-defined]


def test_import_pulls_no_optional_dependency() -> None:
    code = (
        "import sys, json, ctxkit; "
        "from ctxkit import Assembler, Budget, count_tokens; count_tokens('hi'); "
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {OPTIONAL!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_error_tree() -> None:
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.CtxkitError)
    err = errors.MissingDependencyError("semantic routing", "retrieval", package="faiss-cpu")
    assert "pip install 'ctxkit[retrieval]'" in str(err)
    assert isinstance(err, ImportError) and isinstance(err, errors.UsageError)
    over = errors.SectionOverBudgetError("query", 500, 120)
    assert (over.section, over.needed, over.room) == ("query", 500, 120)
    assert isinstance(over, errors.BudgetError) and not isinstance(over, errors.UsageError)
    backend = errors.BackendError("rate limited", backend="openai", status_code=429, retryable=True)
    assert backend.retryable and "429" in str(backend)


def test_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from ctxkit._optional import require

    monkeypatch.setitem(sys.modules, "tokenizers", None)  # simulate "not installed"
    with pytest.raises(errors.MissingDependencyError, match=r"pip install 'ctxkit\[hf\]'") as info:
        require("tokenizers", feature="HF tokenizer.json loading", extra="hf")
    assert isinstance(info.value.__cause__, ImportError)


@pytest.mark.slow
def test_quickstart_runs_offline() -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_PROXY": "*"}
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")], capture_output=True, text=True, env=env, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "gpt-4o" in out.stdout and "total" in out.stdout
    # savings are reported with quality: accuracy and cost per successful task against naive, not "saved 100%"
    assert "accuracy" in out.stdout and "per success" in out.stdout and "ctxkit-384 minus naive" in out.stdout
    assert "(100%)" not in out.stdout and "are not free savings" in out.stdout


def test_all_matches_the_lazy_name_map() -> None:
    assert set(ctxkit.__all__) == {*ctxkit._NAMES, "__version__"}
