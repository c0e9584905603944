"""The in-process llama.cpp backend on the real SmolLM2-135M-Instruct, and a real logprob cascade."""

from __future__ import annotations

import asyncio

import pytest

from ctxkit import Message
from ctxkit.assembly import Assembler
from ctxkit.dispatch import (
    Cascade,
    ContextOverflowError,
    Dispatcher,
    EvalTask,
    LlamaCppBackend,
    Result,
    evaluate,
    get_backend,
)
from ctxkit.errors import InvalidInputError, UnknownNameError

pytestmark = pytest.mark.model

SYSTEM = "You are a terse assistant. Answer in one short sentence."


@pytest.fixture(scope="module")
def local() -> LlamaCppBackend:
    backend = get_backend("llamacpp:default")
    assert isinstance(backend, LlamaCppBackend)
    return backend


def test_spec_is_loaded_once_and_reports_real_facts(local: LlamaCppBackend) -> None:
    assert get_backend("llamacpp:default") is local  # one model load per process
    assert local.local and local.model == "smollm2-135m-instruct"
    assert local.context_window == 4096
    assert "llamacpp:" in repr(local)


def test_generate_returns_usage_timings_and_logprobs(local: LlamaCppBackend) -> None:
    r = local.generate(
        [Message.system(SYSTEM), Message.user("What is the capital of France?")],
        max_tokens=12,
        logprobs=True,
        top_logprobs=3,
    )
    assert isinstance(r, Result)
    assert r.text.strip()
    assert r.finish_reason in ("stop", "length")
    assert r.usage.output_tokens == len(r.logprobs or ())
    # input tokens equal the real rendered template's token count
    assert r.usage.input_tokens == len(local._tokens(local_request(local)))
    assert 0 < (r.ttft_s or 0) <= r.latency_s
    assert r.mean_logprob is not None and r.mean_logprob < 0
    assert all(len(t.top) == 3 and t.top[0][1] >= t.logprob - 1e-6 for t in r.logprobs or ())
    assert r.cost == 0  # local model: priced at 0 explicitly by the price book
    # greedy decoding: the answer is the same every time
    again = local.generate([Message.system(SYSTEM), Message.user("What is the capital of France?")], max_tokens=12)
    assert again.text == r.text


def local_request(local: LlamaCppBackend):  # type: ignore[no-untyped-def]
    from ctxkit.dispatch import as_request

    return as_request([Message.system(SYSTEM), Message.user("What is the capital of France?")])


def test_kv_prefix_reuse_is_reported(local: LlamaCppBackend) -> None:
    history = [Message.system(SYSTEM + " " + "Context. " * 40), Message.user("Name a colour.")]
    first = local.generate(history, max_tokens=4)
    second = local.generate([*history, Message.assistant(first.text), Message.user("Name another.")], max_tokens=4)
    # the whole earlier prompt is a prefix of the new one: llama.cpp reuses it from the KV cache
    assert second.usage.cache_read_tokens >= first.usage.input_tokens - 1
    assert second.usage.cache_read_tokens < second.usage.input_tokens


def test_stream_matches_generate_and_ends_with_done(local: LlamaCppBackend) -> None:
    msgs = [Message.user("Count from one to five.")]
    whole = local.generate(msgs, max_tokens=16)
    events = list(local.stream(msgs, max_tokens=16))
    assert events[-1].kind == "done" and events[-1].result is not None
    assert "".join(e.text for e in events if e.kind == "text") == whole.text == events[-1].result.text
    assert sum(1 for e in events if e.kind == "text") > 1


def test_stop_strings_cut_the_answer(local: LlamaCppBackend) -> None:
    msgs = [Message.user("Count from one to five.")]
    full = local.generate(msgs, max_tokens=24)
    assert len(full.text) > 6
    stop = full.text[len(full.text) // 2 : len(full.text) // 2 + 2]  # spans a token boundary or sits inside one
    cut = local.generate(msgs, max_tokens=24, stop=["@@never@@", stop])
    assert cut.finish_reason == "stop"
    assert cut.text == full.text[: full.text.index(stop)]
    streamed = "".join(e.text for e in local.stream(msgs, max_tokens=24, stop=[stop]) if e.kind == "text")
    assert streamed == cut.text


def test_async_faces(local: LlamaCppBackend) -> None:
    msgs = [Message.user("Say hello.")]
    sync = local.generate(msgs, max_tokens=6)

    async def go() -> tuple[Result, str]:
        r = await local.agenerate(msgs, max_tokens=6)
        parts = [e.text async for e in local.astream(msgs, max_tokens=6) if e.kind == "text"]
        return r, "".join(parts)

    r, streamed = asyncio.run(go())
    assert r.text == sync.text == streamed


def test_context_overflow_is_typed_and_not_retryable(local: LlamaCppBackend) -> None:
    with pytest.raises(ContextOverflowError) as info:
        local.generate("word " * 5000, max_tokens=8)
    assert info.value.status_code == 400 and not info.value.retryable
    assert info.value.needed > info.value.window == 4096


def test_from_llama_wraps_a_user_built_model(local: LlamaCppBackend) -> None:
    wrapped = get_backend(local.llama)
    assert isinstance(wrapped, LlamaCppBackend) and wrapped.llama is local.llama
    assert wrapped.model == "smollm2-135m-instruct"


def test_assembled_prompt_is_accepted(local: LlamaCppBackend) -> None:
    prompt = Assembler("smollm2-135m-instruct").assemble(
        system=SYSTEM, history=[Message.user("Hi"), Message.assistant("Hello!")], query="What is 2+2?"
    )
    r = local.generate(prompt, max_tokens=8)
    assert r.usage.input_tokens == prompt.total_tokens  # ctxkit's exact count equals what llama.cpp evaluated


def test_cascade_accepts_or_escalates_on_real_logprobs(local: LlamaCppBackend) -> None:
    msgs = [Message.user("What is the capital of France?")]
    base = local.generate(msgs, max_tokens=8, logprobs=True)
    assert base.mean_logprob is not None
    second = LlamaCppBackend(local.llama, model="smollm2-135m-instruct", name="strong")
    accept = Cascade([local, second], thresholds=[base.mean_logprob - 0.01])
    r = accept.generate(msgs, max_tokens=8)
    assert r.backend == local.name and r.decision is not None and not r.decision.escalated
    assert r.usage == base.usage.model_copy(update={"cache_read_tokens": r.usage.cache_read_tokens})
    escalate = Cascade([local, second], thresholds=[base.mean_logprob + 0.01])
    r2 = escalate.generate(msgs, max_tokens=8)
    assert r2.backend == "strong" and r2.decision is not None and r2.decision.escalated
    assert [d.route for d in r2.decision.trail] == [local.name, "strong"]
    assert r2.usage.output_tokens == 2 * base.usage.output_tokens  # both steps are paid for
    assert r2.attempts == 2


def test_cascade_with_a_verifier_and_bad_setup(local: LlamaCppBackend) -> None:
    second = LlamaCppBackend(local.llama, name="strong")
    picky = Cascade([local, second], thresholds=[0.5], scorer=lambda req, res: float("Paris" in res.text))
    r = picky.generate("What is the capital of France? Answer with the city name.", max_tokens=8)
    assert r.decision is not None
    assert (r.backend == local.name) == ("Paris" in r.decision.trail[0].reason or r.decision.trail[0].score == 1.0)
    with pytest.raises(InvalidInputError):
        Cascade([local], thresholds=[])
    with pytest.raises(InvalidInputError):
        Cascade([local, second], thresholds=[0.1, 0.2])


def test_dispatcher_and_evaluation_on_the_local_model(local: LlamaCppBackend) -> None:
    d = Dispatcher({"local": local})
    r = d.run("What is the capital of France? Answer with the city name.", max_tokens=8)
    assert r.decision is not None and r.decision.route == "local" and r.attempts == 1
    tasks = [
        EvalTask(prompt="What is the capital of France? Answer with the city name.", expected="Paris"),
        EvalTask(prompt="What is 2+2? Answer with a number.", expected="4"),
    ]
    report = evaluate(tasks, {"local": local, "dispatcher": d}, max_tokens=12)
    rows = {c.name: c for c in report.candidates}
    assert rows["local"].quality == rows["dispatcher"].quality  # same greedy model behind both
    assert rows["local"].cost_per_task == 0
    assert rows["local"].p50_latency_s is not None and rows["local"].p95_latency_s >= rows["local"].p50_latency_s
    assert "cost/task" in report.table()
    if rows["local"].quality > 0:
        assert report.cheapest(rows["local"].quality) is not None


def test_unknown_backend_kind_lists_what_exists() -> None:
    with pytest.raises(UnknownNameError) as info:
        get_backend("ollama:llama3")
    assert "anthropic" in str(info.value) and "llamacpp" in str(info.value) and "openai" in str(info.value)
    with pytest.raises(InvalidInputError):
        get_backend("llamacpp")
    with pytest.raises(InvalidInputError):
        get_backend(object())
