"""The shared body of the provider-SDK backends (OpenAI-compatible, Anthropic).

Both call a sync and/or an async SDK client, time the call, map the SDK's errors
onto ctxkit's tree and, when streaming, rebuild the whole response from its events
with an accumulator. Only the request shape, the response shape and the error
mapping differ; those are the hooks a subclass fills in.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from ctxkit.dispatch.backends.base import BaseBackend, Request
from ctxkit.dispatch.errors import BackendHTTPError
from ctxkit.dispatch.result import Result, StreamEvent


class StreamAccumulator(Protocol):
    """Rebuilds a provider response from its stream events."""

    ttft: float | None

    def add(self, event: dict[str, Any], start: float) -> StreamEvent | None: ...

    def final(self) -> dict[str, Any]: ...


class SDKBackend(BaseBackend):
    """A backend over a provider SDK's sync ``client`` and/or ``async_client``.

    A backend with only an async client raises on the sync faces; one with only a sync
    client runs it in a worker thread for the async faces (:class:`BaseBackend`'s default).
    """

    client: Any
    async_client: Any

    @abstractmethod
    def _create(self, client: Any, request: Request, *, stream: bool) -> Any:
        """Call ``client`` for ``request`` (the SDK's return value, or its awaitable on an async client)."""

    @abstractmethod
    def _accumulator(self) -> StreamAccumulator:
        """A fresh accumulator for one stream."""

    @abstractmethod
    def _result(
        self, data: dict[str, Any], start: float, ttft: float | None = None, request: Request | None = None
    ) -> Result:
        """The :class:`Result` of a response body (``request`` is given for a streamed one)."""

    @abstractmethod
    def _map_error(self, exc: Exception) -> Exception:
        """Map an SDK exception onto ctxkit's tree (other errors pass through unchanged)."""

    @contextmanager
    def _mapped_errors(self) -> Iterator[None]:
        """Raise an exception from the block as :meth:`_map_error` maps it (the SDK call's error handling)."""
        try:
            yield
        except Exception as exc:
            raise self._map_error(exc) from exc

    def _sync_client(self, face: str) -> Any:
        if self.client is None:
            raise BackendHTTPError(
                f"this backend has only an async client; call {face}()", backend=self.name, retryable=False
            )
        return self.client

    def _generate(self, request: Request) -> Result:
        client = self._sync_client("agenerate")
        start = time.perf_counter()
        with self._mapped_errors():
            resp = self._create(client, request, stream=False)
        return self._result(resp.model_dump(), start)

    async def _agenerate(self, request: Request) -> Result:
        if self.async_client is None:
            return await super()._agenerate(request)
        start = time.perf_counter()
        with self._mapped_errors():
            resp = await self._create(self.async_client, request, stream=False)
        return self._result(resp.model_dump(), start)

    def _stream(self, request: Request) -> Iterator[StreamEvent]:
        client = self._sync_client("astream")
        start = time.perf_counter()
        acc = self._accumulator()
        with self._mapped_errors():
            for chunk in self._create(client, request, stream=True):
                event = acc.add(chunk.model_dump(), start)
                if event is not None:
                    yield event
        yield StreamEvent(kind="done", result=self._result(acc.final(), start, acc.ttft, request))

    async def _astream(self, request: Request) -> AsyncIterator[StreamEvent]:
        if self.async_client is None:
            async for ev in super()._astream(request):
                yield ev
            return
        start = time.perf_counter()
        acc = self._accumulator()
        with self._mapped_errors():
            stream = await self._create(self.async_client, request, stream=True)
            async for chunk in stream:
                event = acc.add(chunk.model_dump(), start)
                if event is not None:
                    yield event
        yield StreamEvent(kind="done", result=self._result(acc.final(), start, acc.ttft, request))
