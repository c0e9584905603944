"""Cache-aware summarization: prefix stability over generated conversations, real LLM and MiniLM summarizers."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxkit.assembly import group_turns
from ctxkit.compress import (
    BackendSummarizer,
    CallableSummarizer,
    CompactingHistory,
    CompactionTrigger,
    ExtractiveSummarizer,
    LlamaCppSummarizer,
    Summarizer,
    render_transcript,
)
from ctxkit.errors import InvalidInputError
from ctxkit.messages import Message, ToolCall, canonical_json

EXAMPLES = settings().max_examples  # the conftest profile (CTXKIT_HYPOTHESIS_EXAMPLES)

BOOKING = [
    Message.user("I want to book a flight from Boston to Lisbon on March 3 for 2 people."),
    Message.assistant("Economy or business? The cheapest economy fare I see is $540 per person."),
    Message.user("Economy please, and we need one checked bag each."),
    Message.assistant("Booked: TAP flight TP218 on March 3 for 2 passengers with 2 checked bags, total $1,180."),
]


def first_sentences(prompt: list[Message], max_tokens: int) -> str:
    """A deterministic summarizer function: the first clause of every transcript line."""
    transcript = prompt[-1].content.split("Conversation:\n", 1)[1].rsplit("\n\nSummary:", 1)[0]
    return " | ".join(line.split(".")[0][:40] for line in transcript.split("\n"))


def _render(messages: list[Message]) -> list[str]:
    return [canonical_json(m.to_openai()) for m in messages]


@st.composite
def conversations(draw: st.DrawFn) -> list[list[Message]]:
    """A list of steps; each step is the messages appended before the next compaction check."""
    steps: list[list[Message]] = []
    call = 0
    for t in range(draw(st.integers(1, 25))):
        text = f"question {t} " + "word " * draw(st.integers(0, 30))
        step = [Message.user(text, pinned=draw(st.integers(0, 9)) == 0)]
        if draw(st.booleans()):
            ids = []
            for _ in range(draw(st.integers(1, 3))):
                call += 1
                ids.append(f"c{call}")
            step.append(Message.assistant("", tool_calls=[ToolCall(id=i, name="f") for i in ids]))
            step.extend(Message.tool("result " * draw(st.integers(1, 20)), i) for i in ids)
        step.append(Message.assistant(f"answer {t}. " + "more " * draw(st.integers(0, 20))))
        steps.append(step)
    return steps


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    conversations(),
    st.sampled_from(
        [
            CompactionTrigger(max_tokens=300),
            CompactionTrigger(max_share=0.5, window=400),
            CompactionTrigger(max_turns=4),
            CompactionTrigger(max_tokens=500, max_turns=6),
        ]
    ),
    st.integers(0, 3),
)
def test_prefix_is_byte_stable_between_and_across_compactions(
    steps: list[list[Message]], trigger: CompactionTrigger, keep_last: int
) -> None:
    hist = CompactingHistory(CallableSummarizer(first_sentences), trigger, keep_last_turns=keep_last)
    hist.add(Message.system("You are a travel agent."))
    prev = _render(hist.messages())
    seen_pinned: list[Message] = []
    for step in steps:
        hist.add(*step)
        seen_pinned += [m for m in step if m.pinned]
        n_epochs = len(hist.epochs)
        epoch = hist.maybe_compact()
        now = _render(hist.messages())
        if epoch is None:
            assert len(hist.epochs) == n_epochs
            assert now[: len(prev)] == prev  # append-only: the whole previous render is a prefix
        else:
            stable = 1 + n_epochs  # system prompt and earlier epochs are untouched
            assert now[:stable] == prev[:stable]
            assert hist.live_turns() <= keep_last
            assert epoch.index == n_epochs and epoch.turns >= 1
        group_turns(hist.messages())  # tool calls never split from results
        for m in seen_pinned:
            assert m in hist.live
        prev = now


def test_trigger_validation_and_fires() -> None:
    with pytest.raises(InvalidInputError, match="at least one"):
        CompactionTrigger()
    with pytest.raises(InvalidInputError, match="window"):
        CompactionTrigger(max_share=0.5)
    t = CompactionTrigger(max_share=0.5, window=1000, max_turns=3)
    assert t.fires(tokens=501, turns=0) and not t.fires(tokens=500, turns=3) and t.fires(tokens=0, turns=4)


def test_transcript_and_protocol() -> None:
    calls = [
        Message.assistant("", tool_calls=[ToolCall(id="x", name="weather", arguments='{"city":"Oslo"}')]),
        Message.tool("-3C and snow", "x"),
    ]
    text = render_transcript([*BOOKING[:1], *calls])
    assert 'Assistant calls weather({"city":"Oslo"}) [x]' in text and "Tool result (x): -3C and snow" in text
    assert isinstance(CallableSummarizer(first_sentences), Summarizer)


@pytest.fixture(scope="module")
def llm_summarizer() -> LlamaCppSummarizer:
    s = LlamaCppSummarizer()
    yield s  # type: ignore[misc]
    s.close()


@pytest.mark.model
def test_llamacpp_summarizer_real_model(llm_summarizer: LlamaCppSummarizer) -> None:
    out = llm_summarizer.summarize(BOOKING, max_tokens=80)
    assert out and len(llm_summarizer.llama.tokenize(out.encode())) <= 80
    assert "Lisbon" in out or "Boston" in out  # SmolLM2-135M keeps at least the route
    again = asyncio.run(llm_summarizer.asummarize(BOOKING, max_tokens=80))
    assert again == out  # greedy decoding: reproducible

    hist = CompactingHistory(llm_summarizer, CompactionTrigger(max_turns=1), keep_last_turns=1, summary_tokens=60)
    hist.add(Message.system("You are a travel agent."), *BOOKING)
    epoch = hist.maybe_compact()
    assert epoch is not None and epoch.turns == 1
    msgs = hist.messages()
    assert msgs[0].content == "You are a travel agent." and msgs[1].content.startswith("Summary of an earlier")
    assert msgs[2:] == BOOKING[2:]
    assert epoch.tokens_after < epoch.tokens_before or len(epoch.text) > 0


@pytest.mark.model
def test_backend_summarizer_over_ctxkit_llamacpp_backend(llm_summarizer: LlamaCppSummarizer) -> None:
    from ctxkit.dispatch.backends.llamacpp import LlamaCppBackend

    backend = LlamaCppBackend.from_llama(llm_summarizer.llama)
    s = BackendSummarizer(backend)
    out = s.summarize(BOOKING, max_tokens=60)
    assert out and len(llm_summarizer.llama.tokenize(out.encode())) <= 61
    assert asyncio.run(s.asummarize(BOOKING, max_tokens=60)) == out
    assert s.summarize([], max_tokens=60) == ""


@pytest.mark.model
def test_extractive_summarizer_real_minilm() -> None:
    s = ExtractiveSummarizer()
    chat = [
        *BOOKING,
        Message.user("Also, what is the baggage allowance on TAP flights to Lisbon?"),
        Message.assistant("TAP allows one checked bag of 23 kg on economy fares to Lisbon. Sure."),
    ]
    out = s.summarize(chat, max_tokens=45)
    assert 0 < s.tokenizer.count(out) <= 45
    lines = out.split("\n")
    sents = s.sentences(chat)
    assert all(line in sents for line in lines)
    assert [sents.index(line) for line in lines] == sorted(sents.index(line) for line in lines)  # source order
    assert "Assistant: Sure." not in lines  # filler is not central
    scores = s.centrality(sents)
    assert scores.shape == (len(sents),) and abs(float(scores.sum()) - 1.0) < 1e-9
