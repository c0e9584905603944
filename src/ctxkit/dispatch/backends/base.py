"""The backend interface: one :class:`Request` in, one :class:`~ctxkit.dispatch.result.Result` out.

A backend is anything with the four faces of :class:`Backend` (sync, async, and
streaming of each). :class:`BaseBackend` derives them all from one method,
``_generate``; backends that can stream natively override ``_stream``, and HTTP
backends with native async clients override ``_agenerate``/``_astream``.
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import ConfigDict, Field, field_validator

from ctxkit._model import CtxkitModel
from ctxkit.assembly.prompt import AssembledPrompt
from ctxkit.dispatch.result import FinishReason, Result, StreamEvent, price_usage
from ctxkit.errors import InvalidInputError, UnknownNameError
from ctxkit.messages import Message, ToolCall, ToolSpec
from ctxkit.models import ModelInfo, get_model
from ctxkit.secrets import redact, redact_text
from ctxkit.tokenizers import get_chat_counter, get_tokenizer
from ctxkit.usage import Usage

__all__ = ["Backend", "BaseBackend", "PromptLike", "Request", "as_request", "estimate_usage"]

CacheSpec = Literal["auto", "none"] | tuple[int, ...]


class Request(CtxkitModel):
    """One call to a model, independent of the provider.

    ``cache`` says where the cacheable prefix ends: ``"auto"`` marks the end of the
    stable sections (tools, system, then the last message before the final user
    turn), ``"none"`` marks nothing, and a tuple of message indices marks the end of
    each of those messages. Providers that cache implicitly ignore it.

    ``sensitive`` content may only go to local backends (see
    :class:`~ctxkit.dispatch.policy.ResidencyPolicy`). ``tags`` feed rule routers.
    ``prompt`` keeps the assembled prompt, when there is one, so a fallback with a
    smaller window can be re-assembled for that model's budget.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...] = ()
    max_tokens: int = Field(default=256, gt=0)
    temperature: float = Field(default=0.0, ge=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: tuple[str, ...] = ()
    logprobs: bool = False
    top_logprobs: int = Field(default=0, ge=0, le=20)
    seed: int | None = None
    sensitive: bool = False
    tags: frozenset[str] = frozenset()
    session_id: str | None = None
    cache: CacheSpec = "auto"
    prompt: AssembledPrompt | None = Field(default=None, repr=False)
    extra: dict[str, Any] = Field(default_factory=dict, description="provider-specific request fields")

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, (redact(value) if name == "extra" else value)

    @field_validator("messages")
    @classmethod
    def _nonempty(cls, v: tuple[Message, ...]) -> tuple[Message, ...]:
        if not v:
            raise ValueError("a request needs at least one message")
        return v

    def breakpoints(self) -> tuple[int, ...]:
        """Message indices that end a cacheable prefix, resolved from ``cache``."""
        if self.cache == "none":
            return ()
        if self.cache != "auto":
            n = len(self.messages)
            bad = [i for i in self.cache if not -n <= i < n]
            if bad:
                raise InvalidInputError(f"cache breakpoints {bad} are outside the {n} messages of the request")
            return tuple(sorted({i % n for i in self.cache}))
        points: list[int] = []
        stable = [i for i, m in enumerate(self.messages) if m.role in ("system", "developer")]
        if stable:
            points.append(stable[-1])
        last_user = max((i for i, m in enumerate(self.messages) if m.role == "user"), default=-1)
        if last_user > 0 and last_user - 1 not in points:
            points.append(last_user - 1)
        return tuple(sorted(points))

    def with_messages(self, messages: Sequence[Message], prompt: AssembledPrompt | None = None) -> Request:
        return self.model_copy(update={"messages": tuple(messages), "prompt": prompt})

    def as_prompt(self) -> AssembledPrompt:
        """The assembled prompt, or a stand-in built from the messages (for the provider renderers)."""
        if self.prompt is not None:
            return self.prompt
        return AssembledPrompt.model_construct(
            model="",
            messages=self.messages,
            section_of=tuple("message" for _ in self.messages),
            tools=self.tools,
            sections={},
            audit=(),
            total_tokens=0,
            input_limit=0,
            tokens_exact=False,
        )


PromptLike = AssembledPrompt | Sequence[Message] | str | Request


def as_request(prompt: PromptLike, **options: Any) -> Request:
    """Normalize what a user passes (an assembled prompt, messages, a string) into a :class:`Request`.

    ``options`` are :class:`Request` fields (``max_tokens``, ``temperature``, ``stop``,
    ``logprobs``, ``sensitive``, ``tags``, ...); unknown ones raise.
    """
    unknown = set(options) - set(Request.model_fields) - {"tools"}
    if unknown:
        raise InvalidInputError(
            f"unknown request options {sorted(unknown)}; known: {sorted(Request.model_fields)}. "
            "Provider-specific fields go in extra={...}."
        )
    if "tags" in options and not isinstance(options["tags"], frozenset):
        tags = options["tags"]
        if isinstance(tags, str):
            tags = (tags,)
        if not isinstance(tags, Iterable):
            raise InvalidInputError(f"tags must be a set of strings, not {type(tags).__name__}")
        options["tags"] = tags
    if "stop" in options and isinstance(options["stop"], str):
        options["stop"] = (options["stop"],)
    if isinstance(prompt, Request):  # validated again: model_copy(update=...) would skip the checks
        return Request(**{**{k: getattr(prompt, k) for k in Request.model_fields}, **options}) if options else prompt
    if isinstance(prompt, AssembledPrompt):
        options.setdefault("tools", prompt.tools)
        return Request(messages=prompt.messages, prompt=prompt, **options)
    if isinstance(prompt, str):
        return Request(messages=(Message.user(prompt),), **options)
    if isinstance(prompt, Sequence):
        msgs = tuple(prompt)
        if not all(isinstance(m, Message) for m in msgs):
            raise InvalidInputError(
                "a prompt list must hold ctxkit.Message objects (use Message.from_openai for dicts)"
            )
        return Request(messages=msgs, **options)
    raise InvalidInputError(
        f"cannot send a {type(prompt).__name__}; pass an AssembledPrompt, a list of ctxkit.Message, or a string"
    )


def estimate_usage(request: Request, model: str, text: str) -> Usage:
    """Count a call's tokens locally, for providers that sent no usage.

    Uses the model's own chat counter when the model is registered, else o200k_base.
    """

    try:
        counter = get_chat_counter(model)
        tokenizer = counter.tokenizer
    except UnknownNameError:
        counter = get_chat_counter("tiktoken:o200k_base")
        tokenizer = get_tokenizer("tiktoken:o200k_base")
    return Usage(
        input_tokens=counter.count_messages(request.messages, request.tools),
        output_tokens=tokenizer.count(text),
    )


@runtime_checkable
class Backend(Protocol):
    """A model that answers requests, with sync, async and streaming faces."""

    name: str
    model: str
    local: bool

    def generate(self, prompt: PromptLike, **options: Any) -> Result: ...

    async def agenerate(self, prompt: PromptLike, **options: Any) -> Result: ...

    def stream(self, prompt: PromptLike, **options: Any) -> Iterator[StreamEvent]: ...

    def astream(self, prompt: PromptLike, **options: Any) -> AsyncIterator[StreamEvent]: ...


class BaseBackend(ABC):
    """Base class: subclasses implement ``_generate`` (and ``_stream`` when they stream natively).

    ``name`` identifies the backend in decisions and records (``"openai:gpt-4o-mini"``);
    ``model`` is the model name looked up in :mod:`ctxkit.models`; ``local`` says the
    data never leaves this machine (data residency relies on it).
    """

    name: str
    model: str
    local: bool = False

    def __init__(self, name: str, model: str, *, local: bool = False) -> None:
        self.name = name
        self.model = model
        self.local = local

    def __repr__(self) -> str:
        return redact_text(f"{type(self).__name__}(name={self.name!r}, model={self.model!r}, local={self.local})")

    # ------------------------------------------------------------------ facts
    @property
    def info(self) -> ModelInfo | None:
        """The model's registry entry, or ``None`` if it is not registered."""
        try:
            return get_model(self.model)
        except UnknownNameError:
            return None

    @property
    def context_window(self) -> int | None:
        info = self.info
        return info.context_window if info else None

    def _answer(
        self,
        latency: float,
        ttft: float | None,
        *,
        text: str,
        finish_reason: FinishReason,
        usage: Usage,
        tool_calls: tuple[ToolCall, ...],
        **fields: Any,
    ) -> Result:
        """The :class:`Result` of a call that took ``latency`` seconds (``ttft``: to its first token, if
        known), on this backend's model, with the cost of ``usage``."""
        return Result(
            text=text,
            finish_reason=finish_reason,
            usage=usage,
            model=self.model,
            backend=self.name,
            latency_s=latency,
            ttft_s=ttft if ttft is not None else latency,
            tool_calls=tool_calls,
            cost=price_usage(usage, self.model),
            local=self.local,
            **fields,
        )

    # ------------------------------------------------------------------ to implement
    @abstractmethod
    def _generate(self, request: Request) -> Result:
        """Answer one request (blocking)."""

    def _stream(self, request: Request) -> Iterator[StreamEvent]:
        """Stream one request; the default yields the whole answer as one text event."""
        result = self._generate(request)
        if result.text:
            yield StreamEvent(kind="text", text=result.text, logprobs=result.logprobs or ())
        for call in result.tool_calls:
            yield StreamEvent(kind="tool_call", tool_call=call)
        yield StreamEvent(kind="done", result=result)

    async def _agenerate(self, request: Request) -> Result:
        return await asyncio.to_thread(self._generate, request)

    async def _astream(self, request: Request) -> AsyncIterator[StreamEvent]:
        """Runs the sync stream in a worker thread and hands its events over."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()

        def pump() -> None:
            try:
                for event in self._stream(request):
                    if stop.is_set():
                        break
                    loop.call_soon_threadsafe(queue.put_nowait, ("event", event))
            except BaseException as exc:  # handed to the consumer, re-raised there
                loop.call_soon_threadsafe(queue.put_nowait, ("error", exc))
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, ("end", None))

        worker = loop.run_in_executor(None, pump)
        try:
            while True:
                kind, item = await queue.get()
                if kind == "end":
                    break
                if kind == "error":
                    raise item
                yield item
        finally:
            stop.set()
            await worker

    # ------------------------------------------------------------------ public faces
    def generate(self, prompt: PromptLike, **options: Any) -> Result:
        """Answer ``prompt`` (an AssembledPrompt, a list of Message, or a string)."""
        return self._generate(as_request(prompt, **options))

    async def agenerate(self, prompt: PromptLike, **options: Any) -> Result:
        """Async :meth:`generate`."""
        return await self._agenerate(as_request(prompt, **options))

    def stream(self, prompt: PromptLike, **options: Any) -> Iterator[StreamEvent]:
        """Stream text events, ending with a ``done`` event that carries the full Result."""
        return self._stream(as_request(prompt, **options))

    def astream(self, prompt: PromptLike, **options: Any) -> AsyncIterator[StreamEvent]:
        """Async :meth:`stream`."""
        return self._astream(as_request(prompt, **options))
