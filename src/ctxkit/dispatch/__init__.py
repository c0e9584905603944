"""Dispatch: call any model through one interface, route per request, stay safe and up.

* backends — :class:`LlamaCppBackend` (in process), :class:`OpenAIBackend` (any
  OpenAI-compatible server), :class:`AnthropicBackend`; specs via :func:`get_backend`;
* routers — :class:`RulesRouter`, :class:`SemanticRouter`, :class:`KNNQualityRouter`,
  :class:`Cascade`, :class:`SessionAwareRouter`, threshold fitting with :func:`calibrate`;
* :class:`Dispatcher` — residency, re-assembly for smaller windows, retries, circuit
  breaker, fallbacks; :func:`evaluate` to compare configurations.

Nothing heavy is imported here; backends load their client libraries on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ctxkit.dispatch.backends import (
        AnthropicBackend,
        Backend,
        BaseBackend,
        LlamaCppBackend,
        OpenAIBackend,
        PromptLike,
        Request,
        as_request,
    )
    from ctxkit.dispatch.backends.function import FunctionBackend
    from ctxkit.dispatch.decision import RouteDecision
    from ctxkit.dispatch.dispatcher import Dispatcher, reassemble
    from ctxkit.dispatch.errors import (
        AllBackendsFailedError,
        BackendHTTPError,
        CircuitOpenError,
        ContextOverflowError,
        ResidencyError,
    )
    from ctxkit.dispatch.evaluation import CandidateReport, EvalReport, EvalTask, evaluate
    from ctxkit.dispatch.policy import ResidencyPolicy, pii_detectors
    from ctxkit.dispatch.registry import get_backend, known_backend_kinds, register_backend
    from ctxkit.dispatch.resilience import CircuitBreaker, RetryPolicy
    from ctxkit.dispatch.result import Result, StreamEvent, TokenLogprob
    from ctxkit.dispatch.routing import (
        Calibration,
        Cascade,
        KNNQualityRouter,
        OperatingPoint,
        Router,
        Rule,
        RulesRouter,
        SemanticRouter,
        SessionAwareRouter,
        apgr,
        calibrate,
        mean_logprob,
        operating_curve,
    )

_NAMES: dict[str, str] = {
    "AllBackendsFailedError": "ctxkit.dispatch.errors",
    "AnthropicBackend": "ctxkit.dispatch.backends.anthropic",
    "Backend": "ctxkit.dispatch.backends.base",
    "BackendHTTPError": "ctxkit.dispatch.errors",
    "BaseBackend": "ctxkit.dispatch.backends.base",
    "Calibration": "ctxkit.dispatch.routing.calibration",
    "CandidateReport": "ctxkit.dispatch.evaluation",
    "Cascade": "ctxkit.dispatch.routing.cascade",
    "CircuitBreaker": "ctxkit.dispatch.resilience",
    "CircuitOpenError": "ctxkit.dispatch.errors",
    "ContextOverflowError": "ctxkit.dispatch.errors",
    "Dispatcher": "ctxkit.dispatch.dispatcher",
    "FunctionBackend": "ctxkit.dispatch.backends.function",
    "EvalReport": "ctxkit.dispatch.evaluation",
    "EvalTask": "ctxkit.dispatch.evaluation",
    "KNNQualityRouter": "ctxkit.dispatch.routing.semantic",
    "LlamaCppBackend": "ctxkit.dispatch.backends.llamacpp",
    "OpenAIBackend": "ctxkit.dispatch.backends.openai",
    "OperatingPoint": "ctxkit.dispatch.routing.calibration",
    "PromptLike": "ctxkit.dispatch.backends.base",
    "Request": "ctxkit.dispatch.backends.base",
    "ResidencyError": "ctxkit.dispatch.errors",
    "ResidencyPolicy": "ctxkit.dispatch.policy",
    "Result": "ctxkit.dispatch.result",
    "RetryPolicy": "ctxkit.dispatch.resilience",
    "RouteDecision": "ctxkit.dispatch.decision",
    "Router": "ctxkit.dispatch.routing.base",
    "Rule": "ctxkit.dispatch.routing.rules",
    "RulesRouter": "ctxkit.dispatch.routing.rules",
    "SemanticRouter": "ctxkit.dispatch.routing.semantic",
    "SessionAwareRouter": "ctxkit.dispatch.routing.session",
    "StreamEvent": "ctxkit.dispatch.result",
    "TokenLogprob": "ctxkit.dispatch.result",
    "apgr": "ctxkit.dispatch.routing.calibration",
    "as_request": "ctxkit.dispatch.backends.base",
    "calibrate": "ctxkit.dispatch.routing.calibration",
    "evaluate": "ctxkit.dispatch.evaluation",
    "get_backend": "ctxkit.dispatch.registry",
    "known_backend_kinds": "ctxkit.dispatch.registry",
    "mean_logprob": "ctxkit.dispatch.routing.cascade",
    "operating_curve": "ctxkit.dispatch.routing.calibration",
    "pii_detectors": "ctxkit.dispatch.policy",
    "reassemble": "ctxkit.dispatch.dispatcher",
    "register_backend": "ctxkit.dispatch.registry",
}

__all__ = [
    "AllBackendsFailedError",
    "AnthropicBackend",
    "Backend",
    "BackendHTTPError",
    "BaseBackend",
    "Calibration",
    "CandidateReport",
    "Cascade",
    "CircuitBreaker",
    "CircuitOpenError",
    "ContextOverflowError",
    "Dispatcher",
    "EvalReport",
    "EvalTask",
    "FunctionBackend",
    "KNNQualityRouter",
    "LlamaCppBackend",
    "OpenAIBackend",
    "OperatingPoint",
    "PromptLike",
    "Request",
    "ResidencyError",
    "ResidencyPolicy",
    "Result",
    "RetryPolicy",
    "RouteDecision",
    "Router",
    "Rule",
    "RulesRouter",
    "SemanticRouter",
    "SessionAwareRouter",
    "StreamEvent",
    "TokenLogprob",
    "apgr",
    "as_request",
    "calibrate",
    "evaluate",
    "get_backend",
    "known_backend_kinds",
    "mean_logprob",
    "operating_curve",
    "pii_detectors",
    "reassemble",
    "register_backend",
]


def __getattr__(name: str) -> Any:
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'ctxkit.dispatch' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
