"""Dispatch errors, all under :class:`ctxkit.errors.BackendError` or :class:`ctxkit.errors.UsageError`::

BackendError (status_code, retryable)
├── BackendHTTPError        an HTTP backend answered with an error status (retry_after)
├── ContextOverflowError    prompt + max_tokens exceed the loaded context window
├── CircuitOpenError        the circuit breaker is open for this backend
├── AllBackendsFailedError  every route and fallback failed (errors lists each)
└── ResidencyError          sensitive content may not go to any available backend
"""

from __future__ import annotations

from ctxkit.errors import BackendError

__all__ = [
    "AllBackendsFailedError",
    "BackendHTTPError",
    "CircuitOpenError",
    "ContextOverflowError",
    "ResidencyError",
    "is_retryable_status",
]

_RETRYABLE = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})


def is_retryable_status(status: int | None) -> bool:
    """429, 408/409/425 and 5xx (and Anthropic's 529 overloaded) are worth retrying."""
    return status is not None and (status in _RETRYABLE or 500 <= status < 600)


class BackendHTTPError(BackendError):
    """An HTTP error from a backend; ``retry_after`` holds the server's Retry-After in seconds, if sent."""

    def __init__(
        self,
        message: str,
        *,
        backend: str = "",
        status_code: int | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(
            message,
            backend=backend,
            status_code=status_code,
            retryable=is_retryable_status(status_code) if retryable is None else retryable,
        )


class ContextOverflowError(BackendError):
    """The prompt plus ``max_tokens`` does not fit the model's context; re-assemble for a smaller budget."""

    def __init__(self, backend: str, needed: int, window: int) -> None:
        self.needed = needed
        self.window = window
        super().__init__(
            f"the prompt plus max_tokens needs {needed} tokens but the context window is {window}; "
            "assemble the prompt for this model's budget (ctxkit.Budget.for_model) or lower max_tokens",
            backend=backend,
            status_code=400,
            retryable=False,
        )


class CircuitOpenError(BackendError):
    """Calls to this backend are suspended after repeated failures; it will be tried again after ``reset_s``."""

    def __init__(self, backend: str, reopen_in_s: float) -> None:
        self.reopen_in_s = reopen_in_s
        super().__init__(
            f"circuit open after repeated failures; next trial call in {reopen_in_s:.1f}s. "
            "Add a fallback route to keep serving meanwhile.",
            backend=backend,
            retryable=True,
        )


class AllBackendsFailedError(BackendError):
    """Every backend tried for a request failed; ``errors`` maps each backend name to its error."""

    def __init__(self, errors: dict[str, BaseException]) -> None:
        self.errors = errors
        detail = "; ".join(f"{k}: {v}" for k, v in errors.items())
        last = list(errors.values())[-1] if errors else None
        status = getattr(last, "status_code", None)
        super().__init__(
            f"all backends failed ({detail}). Add a fallback or check the backends' health.",
            status_code=status,
            retryable=any(getattr(e, "retryable", False) for e in errors.values()),
        )


class ResidencyError(BackendError):
    """The request is marked sensitive and no local backend may take it; nothing was sent."""

    def __init__(self, refused: list[str]) -> None:
        self.refused = refused
        super().__init__(
            "the request is marked sensitive, so it may only go to local backends, but the candidates "
            f"{refused} are remote. Add a local backend (e.g. 'llamacpp:default') as a route or fallback.",
            retryable=False,
        )
