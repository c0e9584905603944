"""``ChatCtxkit``: a LangChain chat model over :class:`ctxkit.dispatch.Dispatcher`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field, PrivateAttr

from ctxkit.errors import InvalidInputError
from ctxkit.integrations._common import result_metadata
from ctxkit.integrations.langchain.convert import lc_tool_calls, to_ctxkit_messages, tool_spec, usage_metadata

__all__ = ["ChatCtxkit"]


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
        tools = [tool_spec(t) for t in kwargs.pop("tools", None) or []]
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
        valid, invalid = lc_tool_calls(result.tool_calls)
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
