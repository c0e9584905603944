"""The ctxkit command line, run as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("typer")


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from ctxkit.cli import main; main()", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_count_stdin_and_files(tmp_path: Path) -> None:
    import tiktoken

    out = run("count", "-m", "gpt-4o", stdin="hello world, counted exactly")
    assert out.returncode == 0, out.stderr
    expected = len(tiktoken.get_encoding("o200k_base").encode_ordinary("hello world, counted exactly"))
    assert out.stdout.split()[0] == str(expected)
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("one two three")
    b.write_text("four five")
    out = run("count", str(a), str(b), "--model", "claude-sonnet-4")
    assert out.returncode == 0, out.stderr
    assert "total" in out.stdout and "estimate" in out.stdout


def test_inspect_openai_and_anthropic_requests(tmp_path: Path) -> None:
    openai_req = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        ],
        "tools": [{"type": "function", "function": {"name": "w", "description": "weather", "parameters": {}}}],
    }
    f = tmp_path / "req.json"
    f.write_text(json.dumps(openai_req))
    out = run("inspect", str(f))
    assert out.returncode == 0, out.stderr
    assert "total" in out.stdout and "tool" in out.stdout
    anthropic_req = {
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "w", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "sunny"}]},
        ],
    }
    out = run("inspect", "-", "-m", "claude-sonnet-4", stdin=json.dumps(anthropic_req))
    assert out.returncode == 0, out.stderr
    assert "total" in out.stdout


def test_bad_input_is_a_clear_error() -> None:
    out = run("inspect", "-", stdin=json.dumps({"nope": 1}))
    assert out.returncode == 2
    assert "needs a 'messages' list" in out.stderr
    out = run("count", "-m", "no-such-model", stdin="x")
    assert out.returncode == 2 and "unknown" in out.stderr


def test_inspect_reports_cache_lint_and_plan(tmp_path: Path) -> None:
    req = {
        "system": "Today is 2026-11-24 10:31:07. " + "You are a support agent. " * 300,
        "messages": [{"role": "user", "content": "My router blinks red."}],
    }
    f = tmp_path / "req.json"
    f.write_text(json.dumps(req))
    out = run("inspect", str(f), "-m", "claude-sonnet-4-5")
    assert out.returncode == 0, out.stderr
    assert "cache lint" in out.stdout and "2026-11-24" in out.stdout
    assert "cache plan" in out.stdout and "breakpoint" in out.stdout.lower()


def test_diff_names_the_first_divergence(tmp_path: Path) -> None:
    system = "You are a support agent. " * 300
    a = {"messages": [{"role": "system", "content": system}, {"role": "user", "content": "hi"}]}
    b = {"messages": [{"role": "system", "content": "Now: 10:31. " + system}, {"role": "user", "content": "hi"}]}
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    out = run("diff", str(tmp_path / "a.json"), str(tmp_path / "b.json"))
    assert out.returncode == 0, out.stderr
    assert "miss at system" in out.stdout


def test_report_reads_a_ledger_file(tmp_path: Path) -> None:
    from ctxkit import Ledger, Usage

    ledger = Ledger()
    ledger.record(model="gpt-4o-mini", workflow="faq", usage=Usage(input_tokens=1200, output_tokens=80), latency_s=0.8)
    path = tmp_path / "ledger.jsonl"
    ledger.to_jsonl(path)
    out = run("report", str(path), "--baseline", "gpt-4o")
    assert out.returncode == 0, out.stderr
    assert "faq" in out.stdout and "gpt-4o-mini" in out.stdout and "Savings" in out.stdout
