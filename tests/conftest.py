"""Shared test settings.

Hypothesis example counts come from ``CTXKIT_HYPOTHESIS_EXAMPLES`` (default 1000 for
the invariant suites) so CI and a developer can trade time for depth.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

settings.register_profile(
    "ctxkit",
    max_examples=int(os.environ.get("CTXKIT_HYPOTHESIS_EXAMPLES", "1000")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("ctxkit")
