"""The integration examples run as documentation promises: the same pipeline as-is and with ctxkit.

Each example answers the same questions twice on the local SmolLM2-135M-Instruct — once
with the framework's usual components, once with the two ctxkit lines swapped in — and
reports the tokens sent and the cost both ways, measured by ctxkit's telemetry hooks.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"ctxkit_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check(module: ModuleType, out: dict[str, Any], printed: str) -> None:
    before, after = out["before"], out["after"]
    n = len(module.QUESTIONS)
    assert before["calls"] >= n and after["calls"] == n  # every call was measured
    assert before["input_tokens"] > 0 and after["input_tokens"] > 0
    assert after["input_tokens"] < before["input_tokens"], "the budgeted prompt sends fewer tokens"
    assert after["priced_cost"] < before["priced_cost"]
    assert after["cost"] == 0  # the local model has no per-token price (the as-is model name may be unpriced)
    assert before["cost"] in (None, 0)
    assert all(isinstance(a, str) and a.strip() for a in before["answers"] + after["answers"])
    assert f"tokens sent: {before['input_tokens']} -> {after['input_tokens']}" in printed


@pytest.mark.model
@pytest.mark.slow
def test_langchain_rag_example(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("langchain_community")
    pytest.importorskip("llama_cpp")
    module = _load("langchain_rag")
    out = module.main([])
    _check(module, out, capsys.readouterr().out)
    # every ctxkit call fit its budget: the whole prompt, as llama.cpp counted it
    assert out["after"]["input_tokens"] <= module.BUDGET * len(module.QUESTIONS)
    assert out["after"]["cache_read_tokens"] > 0, "the stable system prefix is reused from llama.cpp's KV cache"


@pytest.mark.model
@pytest.mark.slow
def test_llamaindex_query_example(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("llama_index.llms.llama_cpp")
    pytest.importorskip("llama_cpp")
    module = _load("llamaindex_query")
    out = module.main([])
    _check(module, out, capsys.readouterr().out)
