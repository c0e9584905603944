"""ctxkit inside LangChain (extra ``langchain``): native components over ctxkit's stages.

Adopting ctxkit in an existing LCEL chain takes two changed lines::

    from ctxkit.integrations.langchain import ChatCtxkit, CtxkitPrompt

    prompt = CtxkitPrompt(model="smollm2-135m-instruct", budget=512, system="Answer briefly.")  # was ChatPromptTemplate
    llm = ChatCtxkit(model="llamacpp:default", max_tokens=64)                               # was another chat model
    chain = {"context": retriever, "question": RunnablePassthrough()} | prompt | llm | StrOutputParser()

What is here:

* :func:`to_ctxkit_messages` / :func:`from_ctxkit_message` — message conversion both
  ways, tool calls and tool results included;
* :class:`ChatCtxkit` — a ``BaseChatModel`` over :class:`ctxkit.dispatch.Dispatcher`
  (routing, fallbacks, retries, residency) with streaming, ``bind_tools`` and
  ``usage_metadata`` (``input_token_details.cache_read`` from llama.cpp's prefix reuse);
* :class:`CtxkitPrompt` — a Runnable that assembles a budgeted, cache-friendly prompt
  (:class:`ctxkit.Assembler`) from the chain's input dict;
* :class:`CtxkitCompressor` — a ``BaseDocumentCompressor`` that packs (and optionally
  prunes) retrieved documents to a token budget, for ``ContextualCompressionRetriever``;
* :class:`CtxkitRetriever` — a ``BaseRetriever`` over :class:`ctxkit.retrieval.Retriever`
  returning a budget-packed set;
* :class:`CtxkitEmbeddings` — LangChain ``Embeddings`` over a ctxkit embedder (offline
  all-MiniLM-L6-v2 by default, cached by content hash);
* :class:`LedgerCallbackHandler` — re-exported from :mod:`ctxkit.telemetry.langchain`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any, Literal

from ctxkit._optional import require

require("langchain_core", feature="the LangChain integration", extra="langchain", package="langchain-core")

from langchain_core.callbacks import (  # noqa: E402
    AsyncCallbackManagerForLLMRun,
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForLLMRun,
    CallbackManagerForRetrieverRun,
    Callbacks,
)
from langchain_core.documents import BaseDocumentCompressor, Document  # noqa: E402
from langchain_core.embeddings import Embeddings  # noqa: E402
from langchain_core.language_models import BaseChatModel, LanguageModelInput  # noqa: E402
from langchain_core.language_models.base import LangSmithParams  # noqa: E402
from langchain_core.messages import (  # noqa: E402
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages import ToolCall as LCToolCall  # noqa: E402
from langchain_core.messages.ai import InputTokenDetails, OutputTokenDetails, UsageMetadata  # noqa: E402
from langchain_core.messages.tool import invalid_tool_call, tool_call_chunk  # noqa: E402
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult  # noqa: E402
from langchain_core.prompt_values import ChatPromptValue  # noqa: E402
from langchain_core.retrievers import BaseRetriever  # noqa: E402
from langchain_core.runnables import Runnable, RunnableConfig  # noqa: E402
from langchain_core.runnables.config import run_in_executor  # noqa: E402
from langchain_core.tools import BaseTool  # noqa: E402
from langchain_core.utils.function_calling import convert_to_openai_tool  # noqa: E402
from pydantic import ConfigDict, Field, PrivateAttr  # noqa: E402

from ctxkit.assembly.assembler import Assembler  # noqa: E402
from ctxkit.assembly.prompt import AssembledPrompt  # noqa: E402
from ctxkit.budget import Budget  # noqa: E402
from ctxkit.errors import InvalidInputError  # noqa: E402
from ctxkit.integrations._common import (  # noqa: E402
    DEFAULT_SCORE_KEYS,
    PackReport,
    pack_texts,
    result_metadata,
    score_from_metadata,
)
from ctxkit.messages import Chunk, Message, ToolCall, ToolSpec, canonical_json  # noqa: E402
from ctxkit.telemetry.langchain import LedgerCallbackHandler  # noqa: E402
from ctxkit.usage import Usage  # noqa: E402

__all__ = [
    "AssembledPromptValue",
    "ChatCtxkit",
    "CtxkitCompressor",
    "CtxkitEmbeddings",
    "CtxkitPrompt",
    "CtxkitRetriever",
    "LedgerCallbackHandler",
    "chunk_to_document",
    "document_to_chunk",
    "from_ctxkit_message",
    "from_ctxkit_messages",
    "to_ctxkit_message",
    "to_ctxkit_messages",
    "usage_metadata",
]

_PINNED_KEY = "ctxkit_pinned"
_IGNORED_BLOCKS = frozenset({"tool_use", "tool_call", "tool_call_chunk", "reasoning", "thinking", "redacted_thinking"})


# ---------------------------------------------------------------------- messages
def _text_of(message: BaseMessage, where: str) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for n, block in enumerate(content):
        if isinstance(block, str):
            parts.append(block)
            continue
        kind = block.get("type")
        if kind == "text":
            parts.append(str(block.get("text", "")))
        elif kind in _IGNORED_BLOCKS:
            continue  # tool calls travel in .tool_calls; reasoning is not resent
        else:
            raise InvalidInputError(
                f"{where} has a {kind!r} content block (block {n}); ctxkit messages carry text only. "
                "Describe the image/audio/file in text, or send it with a multimodal model directly."
            )
    return "".join(parts)


def to_ctxkit_message(message: BaseMessage, *, index: int = 0) -> Message:
    """One LangChain message as a :class:`ctxkit.Message` (tool calls and tool results kept).

    A tool call without an id gets ``call_<index>_<n>``; a non-text content block
    (image, audio, file) raises :class:`~ctxkit.errors.InvalidInputError`.
    """
    where = f"messages[{index}] ({type(message).__name__})"
    pinned = bool(message.additional_kwargs.get(_PINNED_KEY, False))
    text = _text_of(message, where)
    name = message.name or None
    if isinstance(message, SystemMessage):
        role = "developer" if message.additional_kwargs.get("__openai_role__") == "developer" else "system"
        return Message(role=role, content=text, name=name, pinned=pinned)
    if isinstance(message, HumanMessage):
        return Message(role="user", content=text, name=name, pinned=pinned)
    if isinstance(message, AIMessage):
        calls = [
            ToolCall(id=c.get("id") or f"call_{index}_{n}", name=c["name"], arguments=canonical_json(c.get("args", {})))
            for n, c in enumerate(message.tool_calls)
        ]
        calls += [
            ToolCall(
                id=c.get("id") or f"call_{index}_i{n}", name=c.get("name") or "unknown", arguments=c.get("args") or ""
            )
            for n, c in enumerate(message.invalid_tool_calls)
        ]
        return Message(role="assistant", content=text, name=name, tool_calls=tuple(calls), pinned=pinned)
    if isinstance(message, ToolMessage):
        return Message(role="tool", content=text, tool_call_id=message.tool_call_id, pinned=pinned)
    if isinstance(message, FunctionMessage):
        raise InvalidInputError(
            f"{where} is a legacy FunctionMessage, which has no tool call id; use ToolMessage(tool_call_id=...)"
        )
    if isinstance(message, ChatMessage):
        role = {"human": "user", "ai": "assistant"}.get(message.role, message.role)
        if role not in ("system", "developer", "user", "assistant"):
            raise InvalidInputError(
                f"{where} has role {message.role!r}; ctxkit knows system, developer, user, assistant"
            )
        return Message(role=role, content=text, name=name, pinned=pinned)
    raise InvalidInputError(f"{where} is not a LangChain message type ctxkit can convert")


def to_ctxkit_messages(messages: Sequence[BaseMessage]) -> list[Message]:
    """LangChain messages as :class:`ctxkit.Message` objects, in order."""
    return [to_ctxkit_message(m, index=i) for i, m in enumerate(messages)]


def _lc_tool_calls(calls: Sequence[ToolCall]) -> tuple[list[LCToolCall], list[Any]]:
    valid: list[LCToolCall] = []
    invalid: list[Any] = []
    for c in calls:
        try:
            args = json.loads(c.arguments) if c.arguments.strip() else {}
        except json.JSONDecodeError as exc:
            invalid.append(invalid_tool_call(name=c.name, args=c.arguments, id=c.id, error=f"invalid JSON: {exc}"))
            continue
        if not isinstance(args, dict):
            invalid.append(
                invalid_tool_call(name=c.name, args=c.arguments, id=c.id, error="arguments are not an object")
            )
            continue
        valid.append(LCToolCall(name=c.name, args=args, id=c.id, type="tool_call"))
    return valid, invalid


def from_ctxkit_message(message: Message) -> BaseMessage:
    """A :class:`ctxkit.Message` as the matching LangChain message (tool calls as ``AIMessage.tool_calls``).

    Tool-call arguments that are not a JSON object become ``invalid_tool_calls``, as
    LangChain models do, so nothing is lost.
    """
    extra: dict[str, Any] = {_PINNED_KEY: True} if message.pinned else {}
    if message.role == "system":
        return SystemMessage(content=message.content, name=message.name, additional_kwargs=extra)
    if message.role == "developer":
        return SystemMessage(
            content=message.content, name=message.name, additional_kwargs={**extra, "__openai_role__": "developer"}
        )
    if message.role == "user":
        return HumanMessage(content=message.content, name=message.name, additional_kwargs=extra)
    if message.role == "assistant":
        valid, invalid = _lc_tool_calls(message.tool_calls)
        return AIMessage(
            content=message.content,
            name=message.name,
            tool_calls=valid,
            invalid_tool_calls=invalid,
            additional_kwargs=extra,
        )
    assert message.tool_call_id is not None
    return ToolMessage(content=message.content, tool_call_id=message.tool_call_id, additional_kwargs=extra)


def from_ctxkit_messages(messages: Sequence[Message]) -> list[BaseMessage]:
    """ctxkit messages as LangChain messages, in order."""
    return [from_ctxkit_message(m) for m in messages]


def usage_metadata(usage: Usage) -> UsageMetadata:
    """A ctxkit :class:`~ctxkit.usage.Usage` in LangChain's ``usage_metadata`` format (input includes cached)."""
    out = UsageMetadata(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        total_tokens=usage.total_tokens,
        input_token_details=InputTokenDetails(
            cache_read=usage.cache_read_tokens, cache_creation=usage.cache_write_tokens
        ),
    )
    if usage.reasoning_tokens:
        out["output_token_details"] = OutputTokenDetails(reasoning=usage.reasoning_tokens)
    return out


# ---------------------------------------------------------------------- documents
def document_to_chunk(document: Document, *, rank: int = 0, score_keys: Sequence[str] = DEFAULT_SCORE_KEYS) -> Chunk:
    """A LangChain ``Document`` as a :class:`ctxkit.Chunk`; the score comes from its metadata (else its rank)."""
    meta = dict(document.metadata)
    return Chunk(
        text=document.page_content,
        score=score_from_metadata(meta, rank, score_keys),
        id=str(document.id or meta.get("id") or ""),
        doc_id=str(meta.get("doc_id") or meta.get("source") or ""),
        title=str(meta.get("title") or ""),
        position=int(meta.get("position") or 0),
        metadata=meta,
    )


def chunk_to_document(chunk: Chunk) -> Document:
    """A :class:`ctxkit.Chunk` as a LangChain ``Document``; the score lands in ``metadata["relevance_score"]``."""
    meta: dict[str, Any] = {**chunk.metadata, "relevance_score": chunk.score}
    if chunk.doc_id:
        meta.setdefault("doc_id", chunk.doc_id)
    if chunk.title:
        meta.setdefault("title", chunk.title)
    if chunk.start is not None:
        meta.setdefault("start", chunk.start)
    if chunk.end is not None:
        meta.setdefault("end", chunk.end)
    meta.setdefault("position", chunk.position)
    return Document(page_content=chunk.text, metadata=meta, id=chunk.id or None)


# ---------------------------------------------------------------------- chat model
def _tool_spec(tool: Mapping[str, Any] | type | Callable[..., Any] | BaseTool) -> ToolSpec:
    spec = convert_to_openai_tool(tool)
    fn = spec.get("function", spec)
    return ToolSpec(
        name=fn["name"],
        description=fn.get("description", "") or "",
        parameters=fn.get("parameters") or {"type": "object", "properties": {}},
    )


class ChatCtxkit(BaseChatModel):
    """A LangChain chat model that answers through ctxkit's dispatcher.

    ``model`` is a backend spec (``"llamacpp:default"``, ``"openai:gpt-4o-mini"``) or,
    with ``dispatcher`` given, one of its route names; a per-call ``model=`` picks
    another route or spec. Without a ``dispatcher`` the spec's backend is wrapped in a
    :class:`ctxkit.dispatch.Dispatcher` with ``max_retries`` retries. Tools bound with
    :meth:`bind_tools` go to the backend as :class:`ctxkit.ToolSpec` (``tool_choice`` in
    ``Request.extra``, honoured by OpenAI-compatible backends); tool calls come back as
    ``AIMessage.tool_calls``. Usage is LangChain's ``usage_metadata`` with
    ``input_token_details.cache_read``; ``response_metadata`` carries the model name, the
    backend, the route decision, latency and cost (a string, ``None`` when unknown).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True)

    model: str = Field(default="llamacpp:default", alias="model_name")
    dispatcher: Any = Field(default=None, exclude=True, description="a ctxkit Dispatcher, or a Backend")
    temperature: float = 0.0
    max_tokens: int = 256
    top_p: float | None = None
    stop: list[str] | None = Field(default=None, alias="stop_sequences")
    seed: int | None = None
    timeout: float | None = None
    max_retries: int = 2
    streaming: bool = False
    sensitive: bool = False
    route_tags: list[str] = Field(default_factory=list)
    session_id: str | None = None

    _resolved: Any = PrivateAttr(default=None)

    @property
    def _llm_type(self) -> str:
        return "ctxkit"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model, "temperature": self.temperature, "max_tokens": self.max_tokens}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider="ctxkit",
            ls_model_name=str(kwargs.get("model") or self.model),
            ls_model_type="chat",
            ls_temperature=kwargs.get("temperature", self.temperature),
        )
        max_tokens = kwargs.get("max_tokens", self.max_tokens)
        if max_tokens:
            params["ls_max_tokens"] = max_tokens
        stops = stop or self.stop
        if stops:
            params["ls_stop"] = list(stops)
        return params

    # ------------------------------------------------------------------ dispatch
    def _dispatcher(self, route: str | None) -> Any:
        from ctxkit.dispatch import Dispatcher, RetryPolicy

        base = self._resolved
        if base is None:
            target = self.dispatcher
            if isinstance(target, Dispatcher):
                base = target
            else:
                backend = target if target is not None else self.model
                base = Dispatcher({self.model: backend}, retry=RetryPolicy(max_attempts=self.max_retries + 1))
            self._resolved = base
        # a route of the dispatcher, forced (its fallbacks, retries and shared state kept); or a backend spec
        # not among the routes, added for this call
        return base if route is None else base.forced(route)

    def _options(self, stop: list[str] | None, kwargs: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
        kwargs = dict(kwargs)
        route = kwargs.pop("model", None) or kwargs.pop("model_name", None)
        stops = list(stop or kwargs.pop("stop", None) or self.stop or [])
        tools = [_tool_spec(t) for t in kwargs.pop("tools", None) or []]
        extra: dict[str, Any] = dict(kwargs.pop("extra", None) or {})
        tool_choice = kwargs.pop("tool_choice", None)
        if tool_choice is not None:
            extra["tool_choice"] = tool_choice
        if kwargs.pop("parallel_tool_calls", None) is False:
            extra["parallel_tool_calls"] = False
        if self.timeout is not None:
            extra.setdefault("timeout", self.timeout)
        kwargs.pop("ls_structured_output_format", None)
        options: dict[str, Any] = {
            "max_tokens": kwargs.pop("max_tokens", self.max_tokens),
            "temperature": kwargs.pop("temperature", self.temperature),
            "stop": tuple(stops),
            "tools": tuple(tools),
            "sensitive": kwargs.pop("sensitive", self.sensitive),
            "tags": frozenset(kwargs.pop("route_tags", self.route_tags)),
            "extra": extra,
        }
        for key, default in (("top_p", self.top_p), ("seed", self.seed), ("session_id", self.session_id)):
            value = kwargs.pop(key, default)
            if value is not None:
                options[key] = value
        if kwargs:
            options.update(kwargs)  # other Request fields (logprobs, cache, ...); unknown ones raise there
        return route if isinstance(route, str) else None, options

    @staticmethod
    def _metadata(result: Any) -> dict[str, Any]:
        return {"model_name": result.model, "model_provider": "ctxkit", **result_metadata(result)}

    def _result_message(self, result: Any) -> AIMessage:
        valid, invalid = _lc_tool_calls(result.tool_calls)
        return AIMessage(
            content=result.text,
            tool_calls=valid,
            invalid_tool_calls=invalid,
            usage_metadata=usage_metadata(result.usage),
            response_metadata=self._metadata(result),
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.streaming:
            chunks = list(self._stream(messages, stop, run_manager, **kwargs))
            return _merge_chunks(chunks)
        route, options = self._options(stop, kwargs)
        result = self._dispatcher(route).run(to_ctxkit_messages(messages), **options)
        return ChatResult(generations=[ChatGeneration(message=self._result_message(result))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.streaming:
            chunks = [c async for c in self._astream(messages, stop, run_manager, **kwargs)]
            return _merge_chunks(chunks)
        route, options = self._options(stop, kwargs)
        result = await self._dispatcher(route).arun(to_ctxkit_messages(messages), **options)
        return ChatResult(generations=[ChatGeneration(message=self._result_message(result))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        route, options = self._options(stop, kwargs)
        chunks = _ChunkBuilder(self._metadata)
        for event in self._dispatcher(route).stream(to_ctxkit_messages(messages), **options):
            for chunk in chunks.of(event):
                if run_manager is not None and event.kind == "text":
                    run_manager.on_llm_new_token(event.text, chunk=chunk)
                yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        # the dispatcher's own async stream: no thread per call, retries back off on the event loop
        route, options = self._options(stop, kwargs)
        chunks = _ChunkBuilder(self._metadata)
        async for event in self._dispatcher(route).astream(to_ctxkit_messages(messages), **options):
            for chunk in chunks.of(event):
                if run_manager is not None and event.kind == "text":
                    await run_manager.on_llm_new_token(event.text, chunk=chunk)
                yield chunk

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | dict[str, Any] | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools (any form LangChain accepts: functions, pydantic models, BaseTool, JSON schemas).

        ``tool_choice``: ``"auto"``, ``"any"``/``"required"``/``True`` (must call a tool),
        ``"none"``, or a tool name; passed to backends that support it.
        """
        formatted = [convert_to_openai_tool(t) for t in tools]
        names = [f["function"]["name"] for f in formatted]
        if tool_choice is not None and tool_choice is not False:
            if tool_choice is True or tool_choice == "any":
                tool_choice = "required"
            elif isinstance(tool_choice, str) and tool_choice not in ("auto", "none", "required"):
                if tool_choice not in names:
                    raise InvalidInputError(f"tool_choice {tool_choice!r} is not one of the bound tools {names}")
                tool_choice = {"type": "function", "function": {"name": tool_choice}}
            kwargs["tool_choice"] = tool_choice
        return super().bind(tools=formatted, **kwargs)


class _ChunkBuilder:
    """Turns the dispatcher's stream events into LangChain chunks (the same for the sync and async streams)."""

    def __init__(self, metadata: Callable[[Any], dict[str, Any]]) -> None:
        self.metadata = metadata
        self.n_calls = 0

    def of(self, event: Any) -> list[ChatGenerationChunk]:
        if event.kind == "text":
            return [ChatGenerationChunk(message=AIMessageChunk(content=event.text))]
        if event.kind == "tool_call" and event.tool_call is not None:
            call = event.tool_call
            self.n_calls += 1
            chunk = tool_call_chunk(name=call.name, args=call.arguments, id=call.id, index=self.n_calls - 1)
            return [ChatGenerationChunk(message=AIMessageChunk(content="", tool_call_chunks=[chunk]))]
        if event.kind != "done" or event.result is None:
            return []
        result = event.result
        out: list[ChatGenerationChunk] = []
        if self.n_calls == 0 and result.tool_calls:  # backends that report calls only in the final result
            calls = [
                tool_call_chunk(name=c.name, args=c.arguments, id=c.id, index=i)
                for i, c in enumerate(result.tool_calls)
            ]
            out.append(ChatGenerationChunk(message=AIMessageChunk(content="", tool_call_chunks=calls)))
        last = AIMessageChunk(
            content="",
            usage_metadata=usage_metadata(result.usage),
            response_metadata=self.metadata(result),
            chunk_position="last",
        )
        out.append(ChatGenerationChunk(message=last, generation_info={"finish_reason": result.finish_reason}))
        return out


def _merge_chunks(chunks: list[ChatGenerationChunk]) -> ChatResult:
    if not chunks:
        raise InvalidInputError("the backend streamed nothing; it must end with a 'done' event")
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    msg = total.message
    message = AIMessage(
        content=msg.content,
        tool_calls=getattr(msg, "tool_calls", []),
        invalid_tool_calls=getattr(msg, "invalid_tool_calls", []),
        usage_metadata=getattr(msg, "usage_metadata", None),
        response_metadata=msg.response_metadata,
        id=msg.id,
    )
    return ChatResult(generations=[ChatGeneration(message=message, generation_info=total.generation_info)])


# ---------------------------------------------------------------------- assembly in LCEL
class AssembledPromptValue(ChatPromptValue):
    """A ``ChatPromptValue`` that also carries the :class:`ctxkit.AssembledPrompt` it was rendered from."""

    assembled: Any = Field(default=None, exclude=True, repr=False)


ContextLike = str | Document | Chunk


class CtxkitPrompt(Runnable[dict[str, Any], Any]):
    """Assemble a budgeted, cache-friendly prompt from the chain's input dict.

    Reads ``query_key`` (the question), ``context_key`` (documents: LangChain
    ``Document``, ctxkit ``Chunk`` or strings; scores from metadata), ``history_key``
    (LangChain or ctxkit messages), ``memory_key`` and ``system_key`` when present. A
    context already joined into one string (``format_docs``) is split back into chunks at
    ``context_separator`` when one is given (earlier pieces rank higher). The
    system prompt and history come first and the volatile context and question last, so
    the prefix stays byte-stable across turns. ``output``: ``"prompt_value"`` (an
    :class:`AssembledPromptValue`, which every chat model accepts), ``"messages"``
    (LangChain messages) or ``"assembled"`` (the :class:`ctxkit.AssembledPrompt`).
    """

    def __init__(
        self,
        model: str = "gpt-4o",
        budget: Budget | int | None = None,
        *,
        system: str | None = None,
        assembler: Assembler | None = None,
        query_key: str = "question",
        context_key: str = "context",
        history_key: str = "history",
        memory_key: str = "memory",
        system_key: str = "system",
        output: Literal["prompt_value", "messages", "assembled"] = "prompt_value",
        score_keys: Sequence[str] = DEFAULT_SCORE_KEYS,
        output_reserve: int = 256,
        context_separator: str | None = None,
    ) -> None:
        if output not in ("prompt_value", "messages", "assembled"):
            raise InvalidInputError(f"output must be 'prompt_value', 'messages' or 'assembled', not {output!r}")
        if isinstance(budget, int) and not isinstance(budget, bool):
            base = Budget.for_model(model, output_reserve=output_reserve)
            budget = base.model_copy(update={"max_input_tokens": budget})
        self.assembler = assembler or Assembler(model, budget if isinstance(budget, Budget) else None)
        self.budget = budget if isinstance(budget, Budget) else self.assembler.budget
        self.system = system
        self.query_key = query_key
        self.context_key = context_key
        self.history_key = history_key
        self.memory_key = memory_key
        self.system_key = system_key
        self.output = output
        self.score_keys = tuple(score_keys)
        self.context_separator = context_separator
        self.last: AssembledPrompt | None = None

    def __repr__(self) -> str:
        limit = self.budget.input_limit
        return f"CtxkitPrompt(model={self.assembler.model!r}, input_limit={limit}, output={self.output!r})"

    def _chunks(self, value: Any) -> list[Chunk]:
        if value is None:
            return []
        if isinstance(value, str) and self.context_separator:
            value = [p for p in value.split(self.context_separator) if p.strip()]
        if isinstance(value, str | Document | Chunk):
            value = [value]
        out: list[Chunk] = []
        for i, item in enumerate(value):
            if isinstance(item, Chunk):
                out.append(item)
            elif isinstance(item, Document):
                out.append(document_to_chunk(item, rank=i, score_keys=self.score_keys))
            elif isinstance(item, str):
                out.append(Chunk(text=item, score=1.0 / (1 + i)))
            else:
                raise InvalidInputError(
                    f"{self.context_key}[{i}] is a {type(item).__name__}; pass Documents, ctxkit Chunks or strings"
                )
        return out

    @staticmethod
    def _history(value: Any) -> list[Message]:
        if not value:
            return []
        out: list[Message] = []
        for i, m in enumerate(value):
            if isinstance(m, Message):
                out.append(m)
            elif isinstance(m, BaseMessage):
                out.append(to_ctxkit_message(m, index=i))
            else:
                raise InvalidInputError(f"history[{i}] is a {type(m).__name__}; pass LangChain or ctxkit messages")
        return out

    def assemble(self, input: Mapping[str, Any] | str) -> AssembledPrompt:
        """The :class:`ctxkit.AssembledPrompt` for one input (a dict, or the question as a string)."""
        data: Mapping[str, Any] = {self.query_key: input} if isinstance(input, str) else input
        if not isinstance(data, Mapping):
            raise InvalidInputError(f"CtxkitPrompt takes a dict (or the question string), got {type(input).__name__}")
        if self.query_key not in data:
            raise InvalidInputError(f"the input has no {self.query_key!r} key; it has {sorted(data)}")
        query = data[self.query_key]
        if not isinstance(query, str):
            raise InvalidInputError(f"input[{self.query_key!r}] must be a string, got {type(query).__name__}")
        system = data.get(self.system_key, self.system)
        prompt = self.assembler.assemble(
            query=query,
            system=system,
            memory=data.get(self.memory_key),
            history=self._history(data.get(self.history_key)),
            chunks=self._chunks(data.get(self.context_key)),
            budget=self.budget,
        )
        self.last = prompt
        return prompt

    def _render(self, prompt: AssembledPrompt) -> Any:
        if self.output == "assembled":
            return prompt
        messages = from_ctxkit_messages(prompt.messages)
        if self.output == "messages":
            return messages
        return AssembledPromptValue(messages=messages, assembled=prompt)

    def invoke(self, input: dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self._call_with_config(lambda x: self._render(self.assemble(x)), input, config, run_type="prompt")


# ---------------------------------------------------------------------- compressor
class CtxkitCompressor(BaseDocumentCompressor):
    """Packs retrieved documents into a token budget, maximizing their summed relevance.

    Scores come from each document's metadata (``score_keys``, e.g. a reranker's
    ``relevance_score``), else from its rank. The exact 0/1 knapsack runs when
    affordable (:func:`ctxkit.assembly.pack`). With a ``pruner``
    (:class:`ctxkit.compress.TokenPruner` or any ``TextCompressor``), documents that do
    not fit whole are pruned to ``prune_rate`` with the query as the question and packed
    into the room left; such documents carry ``metadata["ctxkit_pruned"] = True``.
    Kept documents keep the retriever's order. ``last_report`` holds what was dropped.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    budget_tokens: int = Field(default=1024, ge=0)
    tokenizer: str = "gpt-4o"
    per_document_tokens: int = Field(default=0, ge=0, description="tokens of the wrapper each document gets")
    score_keys: tuple[str, ...] = DEFAULT_SCORE_KEYS
    pruner: Any = Field(default=None, exclude=True)
    prune_rate: float = Field(default=0.5, gt=0, le=1)
    last_report: PackReport | None = Field(default=None, exclude=True)

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        docs = list(documents)
        scores = [score_from_metadata(d.metadata, i, self.score_keys) for i, d in enumerate(docs)]
        report = pack_texts(
            [d.page_content for d in docs],
            scores,
            self.budget_tokens,
            tokenizer=self.tokenizer,
            per_item_tokens=self.per_document_tokens,
            pruner=self.pruner,
            prune_rate=self.prune_rate,
            question=query,
        )
        self.last_report = report
        out: list[Document] = []
        for item in report.kept:
            d = docs[item.index]
            meta = {**d.metadata, "ctxkit_tokens": item.tokens}
            if item.pruned:
                meta["ctxkit_pruned"] = True
                meta["ctxkit_original_tokens"] = item.original_tokens
            out.append(Document(page_content=item.text, metadata=meta, id=d.id))
        return out

    async def acompress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        return await run_in_executor(None, self.compress_documents, documents, query, callbacks)


# ---------------------------------------------------------------------- retriever
class CtxkitRetriever(BaseRetriever):
    """A LangChain retriever over :class:`ctxkit.retrieval.Retriever`: a budget-packed set of documents.

    Each call returns the chunks :meth:`ctxkit.retrieval.Retriever.retrieve` packs into
    ``budget_tokens`` (hybrid search, near-duplicate removal, MMR), at most ``k`` of
    them. ``k`` and ``budget_tokens`` can be overridden per call
    (``retriever.invoke(q, k=3)``). Scores land in ``metadata["relevance_score"]``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    retriever: Any = Field(exclude=True, description="a ctxkit.retrieval.Retriever")
    budget_tokens: int = Field(default=1024, ge=0)
    k: int | None = Field(default=None, ge=1)
    mode: Literal["hybrid", "vector", "lexical"] | None = None
    filter: dict[str, Any] | None = None

    def _options(self, kwargs: dict[str, Any]) -> tuple[int, int | None, dict[str, Any]]:
        budget = int(kwargs.pop("budget_tokens", self.budget_tokens))
        k = kwargs.pop("k", self.k)
        opts: dict[str, Any] = {"mode": kwargs.pop("mode", self.mode), "filter": kwargs.pop("filter", self.filter)}
        if kwargs:
            raise InvalidInputError(
                f"unknown retriever options {sorted(kwargs)}; known: k, budget_tokens, mode, filter"
            )
        return budget, k, opts

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        budget, k, opts = self._options(kwargs)
        chunks = self.retriever.retrieve(query, budget, **opts)
        return [chunk_to_document(c) for c in chunks[:k]]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        budget, k, opts = self._options(kwargs)
        chunks = await self.retriever.aretrieve(query, budget, **opts)
        return [chunk_to_document(c) for c in chunks[:k]]


# ---------------------------------------------------------------------- embeddings
class CtxkitEmbeddings(Embeddings):
    """LangChain ``Embeddings`` over a ctxkit embedder (default: offline all-MiniLM-L6-v2, extra ``retrieval``).

    Vectors are L2-normalized float32 as the ctxkit embedder returns them; repeated texts
    come from its content-hash cache.
    """

    def __init__(self, embedder: Any = None) -> None:
        if embedder is None:
            from ctxkit.retrieval.embeddings import SentenceTransformerEmbedder

            embedder = SentenceTransformerEmbedder()
        self.embedder = embedder

    def __repr__(self) -> str:
        return f"CtxkitEmbeddings({self.embedder!r})"

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [[float(x) for x in row] for row in self.embedder.embed(list(texts))]

    def embed_query(self, text: str) -> list[float]:
        return [float(x) for x in self.embedder.embed_query(text)]
