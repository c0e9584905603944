"""OpenAI-compatible HTTP backend (extra ``openai``): OpenAI, vLLM, llama.cpp server, Ollama, OpenRouter.

Requests are rendered with :meth:`ctxkit.assembly.AssembledPrompt.to_openai`. The
usage object maps through :meth:`ctxkit.usage.Usage.from_openai` (cached tokens are
inside ``prompt_tokens``). Client errors are mapped onto
:class:`~ctxkit.dispatch.errors.BackendHTTPError` at this one boundary. The API key
lives in the client; it never appears in this backend's repr.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from ctxkit._optional import require
from ctxkit.dispatch.backends._sdk import SDKBackend
from ctxkit.dispatch.backends.base import Request, estimate_usage
from ctxkit.dispatch.errors import BackendHTTPError
from ctxkit.dispatch.result import FinishReason, Result, StreamEvent, TokenLogprob
from ctxkit.errors import InvalidInputError
from ctxkit.messages import ToolCall
from ctxkit.secrets import add_secret, redact, redact_text
from ctxkit.usage import Usage

__all__ = ["OpenAIBackend"]

_NEW_STYLE = ("o1", "o3", "o4", "gpt-5")
_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


class OpenAIBackend(SDKBackend):
    """Chat completions over HTTP.

    Pass ``client`` (an ``openai.OpenAI``) and/or ``async_client`` (an
    ``openai.AsyncOpenAI``) you already built, or let the backend build them from
    ``base_url``/``api_key`` (the client's own retries are turned off: the dispatcher
    retries, with backoff and Retry-After). ``local=True`` declares a server on this
    machine (a llama.cpp server on loopback), which data residency then allows.
    ``extra_body`` is merged into every request body, for server-specific fields
    (``{"cache_prompt": True}`` asks a llama.cpp server to keep the prompt's KV cache).
    """

    def __init__(
        self,
        model: str,
        *,
        client: Any = None,
        async_client: Any = None,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        local: bool | None = None,
        name: str | None = None,
        stream_usage: bool = True,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        openai = require("openai", feature="the OpenAI-compatible backend", extra="openai")
        if local is None:
            url = str(base_url or getattr(client, "base_url", "") or "")
            local = any(h in url for h in ("://127.0.0.1", "://localhost", "://[::1]"))
        super().__init__(name or f"openai:{model}", model, local=local)
        if api_key is not None:
            add_secret(api_key)  # scrubbed from every error, log and record from now on
        if client is None and async_client is None:
            key = api_key if api_key is not None else ("not-needed" if local else None)
            try:
                client = openai.OpenAI(api_key=key, base_url=base_url, timeout=timeout, max_retries=0)
                async_client = openai.AsyncOpenAI(api_key=key, base_url=base_url, timeout=timeout, max_retries=0)
            except openai.OpenAIError as exc:
                raise InvalidInputError(
                    f"cannot build an OpenAI client for {model!r}: {exc} Pass api_key=... or set OPENAI_API_KEY."
                ) from exc
        for c in (client, async_client):
            key = getattr(c, "api_key", None)
            if isinstance(key, str) and key != "not-needed":
                add_secret(key)
        self.client = client
        self.async_client = async_client
        self.stream_usage = stream_usage
        self.extra_body = dict(extra_body or {})

    @classmethod
    def from_client(cls, client: Any, model: str, **kwargs: Any) -> OpenAIBackend:
        """Wrap an ``openai.OpenAI`` or ``openai.AsyncOpenAI`` the user already built."""
        openai = require("openai", feature="the OpenAI-compatible backend", extra="openai")
        if isinstance(client, openai.AsyncOpenAI):
            return cls(model, async_client=client, **kwargs)
        return cls(model, client=client, **kwargs)

    def close(self) -> None:
        """Close the sync client's connections."""
        if self.client is not None:
            self.client.close()

    async def aclose(self) -> None:
        """Close the async client's connections (call inside the event loop that used it)."""
        if self.async_client is not None:
            await self.async_client.close()

    # ------------------------------------------------------------------ request shape
    def _params(self, request: Request, *, stream: bool) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.as_prompt().to_openai())
        params["model"] = self.model
        limit_field = "max_completion_tokens" if self.model.startswith(_NEW_STYLE) else "max_tokens"
        params[limit_field] = request.max_tokens
        params["temperature"] = request.temperature
        if request.top_p is not None:
            params["top_p"] = request.top_p
        if request.stop:
            params["stop"] = list(request.stop)
        if request.seed is not None:
            params["seed"] = request.seed
        if request.logprobs:
            params["logprobs"] = True
            if request.top_logprobs:
                params["top_logprobs"] = request.top_logprobs
        if stream:
            params["stream"] = True
            if self.stream_usage:
                params["stream_options"] = {"include_usage": True}
        extra = dict(request.extra)
        body = {**self.extra_body, **(extra.pop("extra_body", None) or {})}
        params.update(extra)
        if body:
            params["extra_body"] = body
        return params

    def _result(
        self, data: dict[str, Any], start: float, ttft: float | None = None, request: Request | None = None
    ) -> Result:
        choice = (data.get("choices") or [{}])[0]
        msg = choice.get("message") or {}
        estimated = data.get("usage") is None and request is not None
        if estimated and request is not None:
            usage = estimate_usage(request, self.model, msg.get("content") or "")
        else:
            usage = Usage.from_openai(data.get("usage") or {})
        calls = tuple(
            ToolCall(id=c["id"], name=c["function"]["name"], arguments=c["function"].get("arguments") or "{}")
            for c in msg.get("tool_calls") or []
        )
        return self._answer(
            time.perf_counter() - start,
            ttft,
            text=msg.get("content") or "",
            finish_reason=_FINISH.get(choice.get("finish_reason") or "", "unknown"),
            usage=usage,
            tool_calls=calls,
            logprobs=_logprobs(choice.get("logprobs")),
            usage_estimated=estimated,
        )

    # ------------------------------------------------------------------ calls (the loops are SDKBackend's)
    def _create(self, client: Any, request: Request, *, stream: bool) -> Any:
        return client.chat.completions.create(**self._params(request, stream=stream))

    def _accumulator(self) -> _StreamAccumulator:
        return _StreamAccumulator()

    # ------------------------------------------------------------------ errors
    def _map_error(self, exc: Exception) -> Exception:
        """Map an ``openai`` exception onto ctxkit's tree (other errors pass through unchanged)."""
        openai = require("openai", feature="the OpenAI-compatible backend", extra="openai")
        return map_sdk_error(exc, openai, openai.OpenAIError, backend=self.name)


class _StreamAccumulator:
    """Rebuilds a chat-completion response from its streamed chunks."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.logprobs: list[dict[str, Any]] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.finish: str | None = None
        self.usage: dict[str, Any] | None = None
        self.ttft: float | None = None

    def add(self, chunk: dict[str, Any], start: float) -> StreamEvent | None:
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        choices = chunk.get("choices") or []
        if not choices:
            return None
        choice = choices[0]
        if choice.get("finish_reason"):
            self.finish = choice["finish_reason"]
        delta = choice.get("delta") or {}
        for tc in delta.get("tool_calls") or []:
            slot = self.calls.setdefault(tc.get("index", 0), {"id": "", "name": "", "arguments": ""})
            slot["id"] = tc.get("id") or slot["id"]
            fn = tc.get("function") or {}
            slot["name"] = fn.get("name") or slot["name"]
            slot["arguments"] += fn.get("arguments") or ""
        lp = ((choice.get("logprobs") or {}).get("content")) or []
        self.logprobs.extend(lp)
        text = delta.get("content") or ""
        if not text:
            return None
        if self.ttft is None:
            self.ttft = time.perf_counter() - start
        self.text.append(text)
        return StreamEvent(kind="text", text=text, logprobs=_logprobs({"content": lp}) or ())

    def final(self) -> dict[str, Any]:
        calls = [
            {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
            for _, c in sorted(self.calls.items())
        ]
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.text)}
        if calls:
            message["tool_calls"] = calls
        return {
            "choices": [
                {
                    "message": message,
                    "finish_reason": self.finish,
                    "logprobs": {"content": self.logprobs} if self.logprobs else None,
                }
            ],
            "usage": self.usage,
        }


def _logprobs(data: dict[str, Any] | None) -> tuple[TokenLogprob, ...] | None:
    content = (data or {}).get("content")
    if not content:
        return None
    return tuple(
        TokenLogprob(
            token=str(item.get("token", "")),
            logprob=float(item.get("logprob", 0.0)),
            top=tuple((str(t.get("token", "")), float(t.get("logprob", 0.0))) for t in item.get("top_logprobs") or []),
        )
        for item in content
    )


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); ``None`` if absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def map_sdk_error(exc: Exception, sdk: Any, base_error: type[BaseException], *, backend: str) -> Exception:
    """Map an exception of a provider SDK (``openai``, ``anthropic``: the same error classes)
    onto :class:`BackendHTTPError`, with status code, Retry-After and whether a retry may help.
    ctxkit's own errors and anything else pass through unchanged."""
    if isinstance(exc, BackendHTTPError | InvalidInputError):
        return exc
    if isinstance(exc, base_error):
        scrub_exception(exc)
    if isinstance(exc, sdk.APIStatusError):
        headers = getattr(exc.response, "headers", {}) or {}
        return BackendHTTPError(
            _short(exc),
            backend=backend,
            status_code=exc.status_code,
            retry_after=parse_retry_after(headers.get("retry-after")),
        )
    if isinstance(exc, sdk.APITimeoutError):
        return BackendHTTPError("request timed out", backend=backend, retryable=True)
    if isinstance(exc, sdk.APIConnectionError):
        return BackendHTTPError(f"connection failed: {_short(exc)}", backend=backend, retryable=True)
    if isinstance(exc, base_error):
        return BackendHTTPError(_short(exc), backend=backend, retryable=False)
    return exc


def scrub_exception(exc: BaseException) -> None:
    """Scrub secrets out of a third-party exception in place (its text, ``message`` and ``body``), so the
    ``__cause__`` of ctxkit's error and every traceback that prints it stay clean.

    Providers echo request headers in error bodies; the SDK copies the body into the message."""
    exc.args = tuple(redact_text(a) if isinstance(a, str) else redact(a) for a in exc.args)
    for attr in ("message", "body"):
        value = getattr(exc, attr, None)
        if value is not None:
            with contextlib.suppress(AttributeError, TypeError):  # a read-only attribute: nothing to scrub there
                setattr(exc, attr, redact_text(value) if isinstance(value, str) else redact(value))


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 300 else text[:297] + "..."
