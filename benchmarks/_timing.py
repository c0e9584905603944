"""Small timing helpers shared by benchmarks: a timer and median with min–max."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["Spread", "spread", "timed"]

Spread = dict[str, float]


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Run ``fn`` once with the garbage collector paused; return (seconds, its result)."""
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        out = fn()
        elapsed = time.perf_counter() - start
    finally:
        if enabled:
            gc.enable()
    return elapsed, out


def spread(values: Sequence[float], digits: int = 3) -> Spread:
    """``{"median", "min", "max"}`` of ``values``, rounded."""
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
    }
