"""ctxkit.agents: sticky, reversible, structure-safe context editing for agent loops."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxkit.agents import (
    STUB_PREFIX,
    AgentContext,
    EditPolicy,
    FileOffloadStore,
    MemoryOffloadStore,
    content_id,
    search_offloaded,
)
from ctxkit.assembly import group_turns
from ctxkit.compress import CallableSummarizer
from ctxkit.errors import InvalidInputError, ResourceError, SectionOverBudgetError
from ctxkit.messages import Message, ToolCall

WORDS = ("alpha", "beta", "gamma", "delta", "cache", "tool", "file", "essay", "token", "prefix", "42", "x")
STUB_ID = re.compile(r"id=([0-9a-f]{12})")


def _text(n: int, seed: int) -> str:
    return " ".join(WORDS[(seed * 7 + i * 3) % len(WORDS)] + str(seed) for i in range(n))


@st.composite
def transcripts(draw: st.DrawFn) -> list[list[Message]]:
    """A growing agent transcript: the histories seen before each model call (tasks, steps, parallel calls)."""
    tools = ("read_file", "grep", "list_files", "memory")
    hist: list[Message] = [Message.system("You are an agent.")]
    snapshots: list[list[Message]] = []
    n_tasks = draw(st.integers(1, 3))
    call = 0
    for t in range(n_tasks):
        hist.append(Message.user(f"task {t}", pinned=draw(st.booleans()) and t == 0))
        for _ in range(draw(st.integers(1, 4))):
            n_par = draw(st.integers(1, 3))
            calls = []
            for _ in range(n_par):
                calls.append(ToolCall(id=f"c{call}", name=draw(st.sampled_from(tools)), arguments="{}"))
                call += 1
            think = "<think>plan " + _text(draw(st.integers(0, 30)), call) + "</think>" if draw(st.booleans()) else ""
            hist.append(Message.assistant(think, tool_calls=calls))
            for c in calls:
                hist.append(Message.tool(_text(draw(st.integers(0, 400)), call + len(c.id)), c.id))
            snapshots.append(list(hist))
        hist.append(Message.assistant(f"answer {t}"))
    return snapshots


def _check_structure(sent: list[Message], history: list[Message]) -> None:
    group_turns(sent)  # raises on any orphaned result or unanswered call
    answered = [m.tool_call_id for m in sent if m.role == "tool"]
    made = [c.id for m in sent for c in m.tool_calls]
    assert answered == made  # every call answered, in order, none orphaned


@settings(max_examples=max(1, settings().max_examples // 5))
@given(transcripts(), st.integers(0, 3), st.integers(150, 2500), st.booleans())
def test_edits_keep_structure_and_round_trip(
    snaps: list[list[Message]], keep: int, trigger: int, compact: bool
) -> None:
    window = trigger + 1500
    summarizer = CallableSummarizer(lambda msgs, n: "summary: " + msgs[-1].content[:60])
    policy = EditPolicy(
        clear_trigger_tokens=trigger,
        keep_tool_uses=keep,
        never_clear=("memory",),
        min_result_tokens=20,
        max_input_tokens=window,
        compact_trigger_tokens=trigger + 500 if compact else None,
        keep_thinking=1,
    )
    ctx = AgentContext(policy, store=MemoryOffloadStore(), summarizer=summarizer if compact else None)
    previous: list[Message] | None = None
    for hist in snaps:
        error: SectionOverBudgetError | None = None
        try:
            prepared = ctx.prepare(hist)
        except SectionOverBudgetError as exc:  # raised, never sent over the window
            error = exc
        if error is not None:
            assert error.needed > window and error.room == window
            return
        sent = list(prepared.messages)
        assert ctx.counter.count_messages(sent) <= window
        assert prepared.report.tokens_out == ctx.counter.count_messages(sent)
        _check_structure(sent, hist)
        names = {c.id: c.name for m in hist for c in m.tool_calls}
        for m, o in zip(sent, prepared.origin, strict=True):
            if o is None:
                assert m.role == "system"
                continue
            orig = hist[o]
            assert (m.role, m.tool_call_id, m.tool_calls) == (orig.role, orig.tool_call_id, orig.tool_calls)
            if m.content != orig.content:
                if m.role == "tool":  # offloaded: the stub names an id that expands to the exact original
                    assert m.content.startswith(STUB_PREFIX)
                    assert names[orig.tool_call_id or ""] != "memory"
                    assert ctx.expand(STUB_ID.search(m.content).group(1)) == orig.content  # type: ignore[union-attr]
                else:
                    assert m.role == "assistant" and "<think>" in orig.content and "<think>" not in m.content
        # a parallel batch is edited together: within one step, clearable results are all stubs or none
        by_step: list[list[tuple[Message, Message]]] = []
        for m, o in zip(sent, prepared.origin, strict=True):
            if m.tool_calls:
                by_step.append([])
            elif m.role == "tool" and o is not None:
                by_step[-1].append((m, hist[o]))
        for step in by_step:
            clearable = [
                (m, orig)
                for m, orig in step
                if names[orig.tool_call_id or ""] != "memory" and ctx._tokens(orig) >= policy.min_result_tokens
            ]
            stubbed = {m.content.startswith(STUB_PREFIX) for m, _ in clearable}
            assert len(stubbed) <= 1
        # stickiness: without a new edit, the previous request is a prefix of this one
        if previous is not None and prepared.report.first_changed is None and not prepared.report.compacted:
            assert sent[: len(previous)] == previous
        previous = sent


def _loop(n: int) -> list[Message]:
    hist = [Message.system("sys"), Message.user("go")]
    for k in range(n):
        hist.append(Message.assistant("", tool_calls=[ToolCall(id=f"c{k}", name="read_file", arguments="{}")]))
        hist.append(Message.tool(_text(300, k), f"c{k}"))
    return hist


def test_keeps_newest_results_and_clears_the_rest_in_one_batch() -> None:
    ctx = AgentContext(EditPolicy(clear_trigger_tokens=2000, keep_tool_uses=2, price_edits=False))
    hist = _loop(6)
    prepared = ctx.prepare(hist)
    tools = [m for m in prepared.messages if m.role == "tool"]
    assert [m.content.startswith(STUB_PREFIX) for m in tools] == [True, True, True, True, False, False]
    assert prepared.report.cleared == 4
    assert prepared.report.first_changed == 3
    assert prepared.report.tokens_out < prepared.report.tokens_in
    # the next call, one result later and under the trigger again, only appends: the prefix is byte-stable
    hist += [
        Message.assistant("", tool_calls=[ToolCall(id="c6", name="grep", arguments="{}")]),
        Message.tool("ok", "c6"),
    ]
    again = ctx.prepare(hist)
    assert list(again.messages[: len(prepared.messages)]) == list(prepared.messages)
    assert again.report.first_changed is None


def test_price_gate_defers_a_batch_that_does_not_pay() -> None:
    # one call left: re-writing the cached tail costs more than the tokens saved once
    ctx = AgentContext(EditPolicy(clear_trigger_tokens=1000, keep_tool_uses=2, remaining_calls=0))
    prepared = ctx.prepare(_loop(6))
    assert prepared.report.cleared == 0
    assert "keep the cached history" in prepared.report.reason
    ctx = AgentContext(EditPolicy(clear_trigger_tokens=1000, keep_tool_uses=2, remaining_calls=50))
    assert ctx.prepare(_loop(6)).report.cleared == 4


def test_clear_at_least_batches_small_savings() -> None:
    ctx = AgentContext(EditPolicy(clear_trigger_tokens=1000, keep_tool_uses=2, clear_at_least=10**6))
    assert ctx.prepare(_loop(6)).report.cleared == 0


def test_window_is_a_hard_ceiling() -> None:
    ctx = AgentContext(
        EditPolicy(clear_trigger_tokens=1000, keep_tool_uses=5, max_input_tokens=1500, remaining_calls=0)
    )
    prepared = ctx.prepare(_loop(6))
    assert prepared.report.forced
    assert prepared.report.tokens_out <= 1500
    tiny = AgentContext(EditPolicy(clear_trigger_tokens=10, max_input_tokens=50))
    with pytest.raises(SectionOverBudgetError, match="newest step"):
        tiny.prepare(_loop(2))


def test_a_rewritten_history_resets_the_edits() -> None:
    ctx = AgentContext(EditPolicy(clear_trigger_tokens=1000, keep_tool_uses=1, price_edits=False))
    assert ctx.prepare(_loop(5)).report.cleared == 4
    fresh = ctx.prepare([Message.system("other"), Message.user("hi")])
    assert fresh.report.cleared == 0 and ctx.calls == 1


def test_compaction_appends_a_summary_epoch() -> None:
    summarizer = CallableSummarizer(lambda msgs, n: "the agent read files")
    policy = EditPolicy(clear_trigger_tokens=100_000, compact_trigger_tokens=800, keep_last_turns=1)
    ctx = AgentContext(policy, summarizer=summarizer)
    hist = [Message.system("sys")]
    for t in range(4):
        hist += [Message.user(f"task {t} " + _text(200, t)), Message.assistant(f"done {t}")]
    prepared = ctx.prepare(hist)
    assert prepared.report.compacted
    assert prepared.origin[1] is None and "the agent read files" in prepared.messages[1].content
    assert prepared.messages[-2].content.startswith("task 3")


def test_rejects_orphans_and_bad_input() -> None:
    ctx = AgentContext()
    with pytest.raises(InvalidInputError, match="orphaned"):
        ctx.prepare([Message.user("x"), Message.tool("r", "nope")])
    with pytest.raises(InvalidInputError, match="list of ctxkit Messages"):
        ctx.prepare("hello")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="not a ctxkit agent tool"):
        ctx.call_tool("rm", {})


def test_file_store_is_content_addressed_atomic_and_verified(tmp_path: Path) -> None:
    store = FileOffloadStore(tmp_path)
    text = "naïve – ünïcode\n" * 50
    key = store.put(text)
    assert key == content_id(text) and store.put(text) == key
    assert store.get(key) == text and store.get(key[:12]) == text
    assert store.ids() == [key]
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".tmp-")]
    again = FileOffloadStore(tmp_path)  # another process sees the same results
    assert again.get(key[:8]) == text
    path = tmp_path / key[:2] / f"{key}.txt"
    path.write_bytes(b"tampered")
    with pytest.raises(ResourceError, match="does not match"):
        store.get(key)
    with pytest.raises(InvalidInputError, match="no offloaded tool result"):
        store.get("abcdef123456")
    with pytest.raises(InvalidInputError, match="not an offload id"):
        store.get("../etc/passwd")


def test_search_and_tools() -> None:
    ctx = AgentContext(
        EditPolicy(clear_trigger_tokens=0, keep_tool_uses=0, price_edits=False), store=MemoryOffloadStore()
    )
    hist = [Message.user("go"), Message.assistant("", tool_calls=[ToolCall(id="a", name="grep", arguments="{}")])]
    body = "line one\nthe Needle is here\n" + _text(200, 1)
    hist.append(Message.tool(body, "a"))
    prepared = ctx.prepare(hist)
    stub = prepared.messages[-1].content
    key = STUB_ID.search(stub).group(1)  # type: ignore[union-attr]
    assert ctx.call_tool("expand", {"id": key}) == body
    assert ctx.call_tool("search_offloaded", {"query": "needle HERE"}) == f"{key}:2: the Needle is here"
    hits = search_offloaded(ctx.store, "needle")
    assert [(h.id[:12], h.line) for h in hits] == [(key, 2)]
    assert json.loads(json.dumps([t.to_openai() for t in ctx.tools]))[0]["function"]["name"] == "expand"


def test_example_runs_as_documented(capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "examples" / "agent_context_editing.py"
    spec = importlib.util.spec_from_file_location("ctxkit_example_agents", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.main([])["simulated"]
    assert out["ctxkit_tokens"] < 0.35 * out["naive_tokens"]
    assert out["stubs"] >= 10 and out["expand_exact"] is True
    assert f"naive {out['naive_tokens']}, ctxkit {out['ctxkit_tokens']}" in capsys.readouterr().out


def test_a_ceiling_lowers_the_default_trigger() -> None:
    assert EditPolicy(max_input_tokens=8000).clear_trigger_tokens == 6000
    assert EditPolicy().clear_trigger_tokens == 20_000
    with pytest.raises(InvalidInputError, match="must not exceed"):
        EditPolicy(max_input_tokens=8000, clear_trigger_tokens=9000)


def test_a_long_single_turn_loop_shrinks_old_stubs_to_stay_in_the_window() -> None:
    ctx = AgentContext(EditPolicy(clear_trigger_tokens=1500, keep_tool_uses=1, max_input_tokens=3600))
    hist = _loop(40)  # one user turn: nothing for compaction to summarize, 40 stubs with head and tail would not fit
    prepared = ctx.prepare(hist)
    assert prepared.report.tokens_out <= 3600 and prepared.report.forced
    stubs = [m for m in prepared.messages if m.content.startswith(STUB_PREFIX)]
    assert len(stubs) == 39 and any("head: " not in m.content for m in stubs)
    for m in stubs:
        original = next(h.content for h in hist if h.tool_call_id == m.tool_call_id)
        assert ctx.expand(STUB_ID.search(m.content).group(1)) == original  # type: ignore[union-attr]
