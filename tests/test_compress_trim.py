"""Structure-safe trimming: examples and hypothesis invariants over generated histories."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxkit.assembly import group_turns
from ctxkit.compress import (
    BaseCompressor,
    CompressionResult,
    CompressOlderTurns,
    KeepLastTurns,
    TokenWindow,
    TrimPipeline,
    TruncateToolOutputs,
)
from ctxkit.errors import InvalidInputError, SectionOverBudgetError
from ctxkit.messages import Message, ToolCall
from ctxkit.tokenizers import get_chat_counter, get_tokenizer

EXAMPLES = settings().max_examples  # the conftest profile (CTXKIT_HYPOTHESIS_EXAMPLES)
COUNTER = get_chat_counter("gpt-4o")
TOK = get_tokenizer("gpt-4o")

words = st.lists(
    st.sampled_from(["alpha", "beta", "42", "ß", "user_id", "résumé", "{", "}", "\n", "error:", "ok", "数据"]),
    max_size=40,
).map(" ".join)


@st.composite
def histories(draw: st.DrawFn) -> list[Message]:
    out: list[Message] = []
    if draw(st.booleans()):
        out.append(Message.system(draw(words) or "sys"))
    n_turns = draw(st.integers(0, 12))
    call_no = 0
    for _ in range(n_turns):
        if draw(st.integers(0, 9)) == 0:
            out.append(Message(role="developer", content=draw(words)))
        out.append(Message.user(draw(words), pinned=draw(st.integers(0, 7)) == 0))
        for _ in range(draw(st.integers(0, 3))):  # agent steps within one turn
            n_calls = draw(st.integers(0, 4))  # parallel tool calls
            if n_calls:
                calls = []
                for _ in range(n_calls):
                    call_no += 1
                    calls.append(ToolCall(id=f"call_{call_no}", name="lookup", arguments='{"q": 1}'))
                out.append(Message.assistant(draw(words), tool_calls=calls, pinned=draw(st.integers(0, 9)) == 0))
                results = [
                    Message(
                        role="tool",
                        content=draw(words) * draw(st.integers(1, 6)),
                        tool_call_id=c.id,
                        pinned=draw(st.integers(0, 11)) == 0,
                    )
                    for c in calls
                ]
                out.extend(draw(st.permutations(results)))  # results may come back in any order
            else:
                out.append(Message.assistant(draw(words)))
    return out


def _is_subsequence_modulo_tool_content(before: list[Message], after: list[Message]) -> bool:
    it = iter(before)
    for a in after:
        for b in it:
            if a == b or (a.role == b.role == "tool" and a.tool_call_id == b.tool_call_id and not b.pinned):
                break
        else:
            return False
    return True


def _check_invariants(before: list[Message], after: list[Message]) -> None:
    group_turns(after)  # raises on split calls, orphaned results, unanswered calls
    assert _is_subsequence_modulo_tool_content(before, after)
    for m in before:
        if m.pinned or m.role in ("system", "developer"):
            assert any(a is m or a == m for a in after), f"lost or altered protected message {m!r}"
    calls = {c.id for m in after for c in m.tool_calls}
    results = {m.tool_call_id for m in after if m.role == "tool"}
    assert calls == results
    if after:
        assert after[0].role != "tool"


SETTINGS = settings(max_examples=EXAMPLES, deadline=None)


@SETTINGS
@given(histories(), st.integers(0, 6))
def test_keep_last_turns_invariants(history: list[Message], n: int) -> None:
    after = KeepLastTurns(n).apply(history)
    _check_invariants(history, after)
    turns_before = group_turns(history)
    free = [t for t in turns_before if not any(m.pinned or m.role in ("system", "developer") for m in t)]
    turns_after = group_turns(after)
    free_after = [t for t in turns_after if not any(m.pinned or m.role in ("system", "developer") for m in t)]
    assert len(free_after) == min(n, len(free))
    if n:
        assert free_after == free[max(0, len(free) - n) :]  # exactly the newest n, verbatim


@SETTINGS
@given(histories(), st.integers(1, 400))
def test_token_window_invariants(history: list[Message], window: int) -> None:
    policy = TokenWindow(window, counter=COUNTER)
    protected = [t for t in group_turns(history) if any(m.pinned or m.role in ("system", "developer") for m in t)]
    need = COUNTER.base_tokens + sum(COUNTER.message_tokens(m) for t in protected for m in t)
    if need > window:
        with pytest.raises(SectionOverBudgetError):
            policy.apply(history)
        return
    after = policy.apply(history)
    _check_invariants(history, after)
    assert COUNTER.count_messages(after) <= window
    # maximal: the newest dropped turn would not have fit
    kept = {id(m) for m in after}
    turns = group_turns(history)
    dropped = [t for t in turns if not any(id(m) in kept for m in t)]
    if dropped:
        newest = dropped[-1]
        assert COUNTER.count_messages(after) + sum(COUNTER.message_tokens(m) for m in newest) > window


@SETTINGS
@given(histories(), st.integers(1, 30), st.sampled_from(["head", "head_tail"]))
def test_truncate_tool_outputs_invariants(history: list[Message], limit: int, keep: str) -> None:
    policy = TruncateToolOutputs(limit, keep=keep, tokenizer=TOK)  # type: ignore[arg-type]
    after = policy.apply(history)
    _check_invariants(history, after)
    assert len(after) == len(history)
    for b, a in zip(history, after, strict=True):
        if b.role != "tool" or b.pinned or TOK.count(b.content) <= limit:
            assert a is b
        else:
            assert "[ctxkit: cut " in a.content
            total = TOK.count(b.content)
            assert f"cut {total - limit} of {total} tokens" in a.content
            marker_free = a.content.split("[ctxkit: cut")[0] + a.content.split("]")[-1]
            assert TOK.count(marker_free) <= limit + 2  # BPE merges at the cut may shift a token


@SETTINGS
@given(histories(), st.integers(0, 5), st.integers(60, 600), st.integers(2, 20))
def test_pipeline_invariants(history: list[Message], n: int, window: int, limit: int) -> None:
    policy = TrimPipeline([TruncateToolOutputs(limit, tokenizer=TOK), KeepLastTurns(n)]) | TokenWindow(
        window, counter=COUNTER
    )
    try:
        after, report = policy.apply_with_report(history, counter=COUNTER)
    except SectionOverBudgetError:
        return
    _check_invariants(history, after)
    assert report.tokens_after == COUNTER.count_messages(after) <= window
    assert report.messages_before == len(history)
    assert report.turns_dropped == len(group_turns(history)) - len(group_turns(after))


def test_examples_and_marker() -> None:
    calls = [ToolCall(id="a", name="search"), ToolCall(id="b", name="search")]
    long = "line of log output with numbers 12345 and more text. " * 80
    history = [
        Message.system("You are helpful."),
        Message.user("first question", pinned=True),
        Message.assistant("checking", tool_calls=calls),
        Message.tool(long, "b"),
        Message.tool("short", "a"),
        Message.assistant("done"),
        Message.user("second"),
        Message.assistant("answer two"),
        Message.user("third"),
        Message.assistant("answer three"),
    ]
    out = KeepLastTurns(1).apply(history)
    assert [m.content for m in out][:2] == ["You are helpful.", "first question"]
    assert [m.content for m in out][-2:] == ["third", "answer three"]
    assert "second" not in [m.content for m in out]
    # the pinned first turn keeps its tool calls and both results
    assert sum(1 for m in out if m.role == "tool") == 2

    out2 = TruncateToolOutputs(20, keep="head").apply(history)
    cut = out2[3].content
    assert cut.startswith("line of log output")
    total = TOK.count(long)
    assert f"[ctxkit: cut {total - 20} of {total} tokens from this tool output at the end]" in cut
    assert out2[4] is history[4]


def test_errors() -> None:
    with pytest.raises(InvalidInputError):
        KeepLastTurns(-1)
    with pytest.raises(InvalidInputError):
        TokenWindow(0)
    with pytest.raises(InvalidInputError):
        TrimPipeline(["nope"])  # type: ignore[list-item]
    orphan = [Message.user("q"), Message.tool("r", "x")]
    with pytest.raises(InvalidInputError, match="orphaned"):
        KeepLastTurns(2).apply(orphan)
    with pytest.raises(SectionOverBudgetError):
        TokenWindow(10).apply([Message.system("word " * 50)])


class EveryOtherWord(BaseCompressor):
    """A deterministic stand-in compressor (keeps every other word) that counts its calls."""

    method = "every-other-word"

    def __init__(self) -> None:
        self.calls = 0

    def compress(self, text: str, *, rate: float = 0.5, question: str | None = None) -> CompressionResult:
        self.calls += 1
        words = text.split(" ")
        out = " ".join(words[::2])
        return CompressionResult(
            text=out,
            original=text,
            original_tokens=len(words),
            compressed_tokens=len(words[::2]),
            requested_rate=rate,
            method=self.method,
        )


@SETTINGS
@given(histories(), st.integers(0, 5), st.integers(0, 40))
def test_compress_older_turns_invariants(history: list[Message], keep_last: int, min_chars: int) -> None:
    comp = EveryOtherWord()
    policy = CompressOlderTurns(comp, keep_last=keep_last, min_chars=min_chars)
    after = policy.apply(history)
    group_turns(after)  # still a valid structure
    assert len(after) == len(history)
    turns_before, turns_after = group_turns(history), group_turns(after)
    assert len(turns_before) == len(turns_after)
    older = len(turns_before) - keep_last
    for i, (tb, ta) in enumerate(zip(turns_before, turns_after, strict=True)):
        for b, a in zip(tb, ta, strict=True):
            # only the content may change: role, name, calls, ids and flags stay
            assert a.model_copy(update={"content": b.content}) == b
            untouched = b.pinned or b.role in ("system", "developer") or not b.content.strip()
            if i >= older or untouched or len(b.content) < max(min_chars, 1):
                assert a == b
            else:
                assert a.content == " ".join(b.content.split(" ")[::2])
    # applying it again (the next call of the chat) compresses nothing new and changes nothing
    calls = comp.calls
    assert policy.apply(history) == after
    assert comp.calls == calls


def test_compress_older_turns_stable_prefix_as_the_chat_grows() -> None:
    comp = EveryOtherWord()
    policy = CompressOlderTurns(comp, keep_last=2, min_chars=10)
    history: list[Message] = [Message.system("You answer questions about the log.")]
    previous: list[Message] = []
    for turn in range(8):
        history += [
            Message.user(f"question {turn}: what happened at step {turn} of the long run?"),
            Message.assistant(f"at step {turn} the run wrote {turn * 7} records and then it moved on to the next"),
        ]
        out = policy.apply(history)
        # what was compressed before stays byte-identical: the compressed part only grows
        common = min(len(previous), len(out)) - 4  # the two newest turns of `previous` may have aged since
        assert out[: max(common, 0)] == previous[: max(common, 0)]
        previous = out
    assert comp.calls == 2 * (8 - 2)  # each aged message compressed exactly once
    assert out[0] == history[0]
    assert out[-4:] == history[-4:]


def test_compress_older_turns_errors() -> None:
    with pytest.raises(InvalidInputError, match="not a compressor"):
        CompressOlderTurns("nope")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="keep_last"):
        CompressOlderTurns(EveryOtherWord(), keep_last=-1)
    with pytest.raises(InvalidInputError, match="never altered"):
        CompressOlderTurns(EveryOtherWord(), roles=("system",))
    with pytest.raises(InvalidInputError, match="rate"):
        CompressOlderTurns(EveryOtherWord(), rate=0.0)
