"""Framework adapters share the dispatcher's paths: a per-call route keeps fallbacks and retries, async streams
are the dispatcher's own, and a result is described under one set of keys in LangChain and LlamaIndex."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from ctxkit.dispatch import Dispatcher
from ctxkit.dispatch.backends.function import FunctionBackend
from ctxkit.dispatch.errors import BackendHTTPError
from ctxkit.dispatch.resilience import RetryPolicy
from ctxkit.integrations._common import result_metadata
from ctxkit.messages import Message


def _failing(name: str, log: list[str]) -> FunctionBackend:
    def answer(messages: Sequence[Message]) -> str:
        log.append(name)
        raise BackendHTTPError("HTTP 503", backend=name, status_code=503)

    return FunctionBackend(answer, model="gpt-4o-mini", name=name)


def _answering(name: str, log: list[str]) -> FunctionBackend:
    def answer(messages: Sequence[Message]) -> str:
        log.append(name)
        return f"answer from {name}"

    return FunctionBackend(answer, model="gpt-4o-mini", name=name)


def _dispatcher(log: list[str], waits: list[float]) -> Dispatcher:
    return Dispatcher(
        {"main": _answering("main", log), "flaky": _failing("flaky", log), "backup": _answering("backup", log)},
        fallbacks={"flaky": ["backup"], "main": []},
        retry=RetryPolicy(max_attempts=2, base_delay_s=0.01, seed=0),
        sleep=waits.append,
    )


def test_a_forced_route_keeps_its_fallbacks_retries_and_sleep() -> None:
    log: list[str] = []
    waits: list[float] = []
    d = _dispatcher(log, waits)
    result = d.forced("flaky").run("hi")
    assert log == ["flaky", "flaky", "backup"]
    assert len(waits) == 1  # the injected sleep, not time.sleep
    assert result.text == "answer from backup"
    assert result.decision is not None and result.decision.route == "backup"
    assert d.forced("main") is d  # already the default without a router: the same dispatcher


def test_langchain_model_override_goes_through_the_forced_route() -> None:
    from ctxkit.integrations.langchain import ChatCtxkit

    log: list[str] = []
    waits: list[float] = []
    chat = ChatCtxkit(model="main", dispatcher=_dispatcher(log, waits))
    msg = chat.invoke("hi", model="flaky")
    assert msg.content == "answer from backup"
    assert log == ["flaky", "flaky", "backup"]
    assert waits  # retried with the dispatcher's own sleep


def test_langchain_and_llamaindex_describe_a_result_with_the_same_keys() -> None:
    from ctxkit.integrations.langchain import ChatCtxkit
    from ctxkit.integrations.llamaindex import CtxkitLLM

    log: list[str] = []
    d = _dispatcher(log, [])
    lc = ChatCtxkit(model="main", dispatcher=d).invoke("hi")
    li = CtxkitLLM(model="main", dispatcher=d).complete("hi")
    result = d.run("hi")
    common = result_metadata(result)
    assert li.raw is not None
    for key in common:
        if key in ("latency_s", "ttft_s"):
            continue  # timings differ between the three calls
        assert lc.response_metadata[key] == common[key], key
        assert li.raw[key] == common[key], key
    assert lc.response_metadata["model_name"] == "gpt-4o-mini"
    assert li.raw["usage"]["prompt_tokens"] > 0


def test_async_streams_of_both_adapters_retry_on_the_event_loop() -> None:
    from ctxkit.integrations.langchain import ChatCtxkit
    from ctxkit.integrations.llamaindex import CtxkitLLM

    log: list[str] = []
    d = _dispatcher(log, [])

    async def main() -> tuple[str, str]:
        lc_text = ""
        async for chunk in ChatCtxkit(model="main", dispatcher=d).astream("hi", model="flaky"):
            lc_text += str(chunk.content)
        li_text = ""
        async for response in await CtxkitLLM(model="flaky", dispatcher=d.forced("flaky")).astream_complete("hi"):
            li_text = response.text
        return lc_text, li_text

    lc_text, li_text = asyncio.run(main())
    assert lc_text == "answer from backup"
    assert li_text == "answer from backup"
    assert log == ["flaky", "flaky", "backup", "flaky", "flaky", "backup"]
