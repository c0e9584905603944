"""Retries with exponential backoff and full jitter (honouring Retry-After), and a circuit breaker."""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable

from pydantic import ConfigDict, Field

from ctxkit._model import CtxkitModel
from ctxkit.errors import BackendError, InvalidInputError

__all__ = ["CircuitBreaker", "RetryPolicy"]


class RetryPolicy(CtxkitModel):
    """When and how long to wait before trying a backend again.

    Only errors with ``retryable=True`` are retried (429, 5xx, timeouts, connection
    failures). The wait before retry *n* (from 0) is uniform in
    ``[0, min(max_delay_s, base_delay_s * 2**n)]`` (full jitter); a server's
    Retry-After is honoured as a floor, up to ``max_retry_after_s`` — beyond that the
    backend is given up on so a fallback can answer now.
    """

    model_config = ConfigDict(frozen=True)

    max_attempts: int = Field(default=3, ge=1)
    base_delay_s: float = Field(default=0.5, ge=0, allow_inf_nan=False)
    max_delay_s: float = Field(default=20.0, ge=0, allow_inf_nan=False)
    max_retry_after_s: float = Field(default=60.0, ge=0, allow_inf_nan=False)
    seed: int | None = None

    def delay(self, attempt: int, error: BaseException, rng: random.Random | None = None) -> float | None:
        """Seconds to wait before the next attempt, or ``None`` to stop retrying this backend."""
        if not isinstance(error, BackendError) or not error.retryable or attempt + 1 >= self.max_attempts:
            return None
        r = rng or random
        wait = r.uniform(0.0, min(self.max_delay_s, self.base_delay_s * (2**attempt)))
        after = getattr(error, "retry_after", None)
        if after is not None:
            if after > self.max_retry_after_s:
                return None
            wait = max(wait, float(after))
        return wait


class CircuitBreaker:
    """Per-backend breaker: ``failure_threshold`` consecutive failures open it for ``reset_s``.

    After ``reset_s`` one trial call is let through (half-open); success closes the
    breaker, failure opens it again.
    """

    def __init__(
        self, *, failure_threshold: int = 5, reset_s: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if isinstance(failure_threshold, bool) or not isinstance(failure_threshold, int) or failure_threshold < 1:
            raise InvalidInputError(f"failure_threshold must be an int >= 1, got {failure_threshold!r}")
        if isinstance(reset_s, bool) or not isinstance(reset_s, int | float) or not 0 <= reset_s < math.inf:
            raise InvalidInputError(f"reset_s must be a finite number of seconds >= 0, got {reset_s!r}")
        if not callable(clock):
            raise InvalidInputError("clock must be a callable returning seconds")
        self.failure_threshold = failure_threshold
        self.reset_s = reset_s
        self.clock = clock
        self._failures: dict[str, int] = {}
        self._opened: dict[str, float] = {}
        self._trial: set[str] = set()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker(open={sorted(self._opened)}, threshold={self.failure_threshold}, reset_s={self.reset_s})"
        )

    def state(self, backend: str) -> str:
        with self._lock:
            opened = self._opened.get(backend)
            if opened is None:
                return "closed"
            return "half-open" if self.clock() - opened >= self.reset_s else "open"

    def allow(self, backend: str) -> float | None:
        """``None`` if a call may go now, else the seconds until the next trial."""
        with self._lock:
            opened = self._opened.get(backend)
            if opened is None:
                return None
            left = self.reset_s - (self.clock() - opened)
            if left > 0 or backend in self._trial:
                return max(left, 0.0)
            self._trial.add(backend)
            return None

    def success(self, backend: str) -> None:
        with self._lock:
            self._failures.pop(backend, None)
            self._opened.pop(backend, None)
            self._trial.discard(backend)

    def failure(self, backend: str) -> None:
        with self._lock:
            n = self._failures.get(backend, 0) + 1
            self._failures[backend] = n
            if backend in self._trial or n >= self.failure_threshold:
                self._opened[backend] = self.clock()
                self._trial.discard(backend)
