"""Routers: rules, semantic (FAISS nearest neighbours), cascades, calibration, session stickiness."""

from ctxkit.dispatch.routing.base import Router, last_user_text
from ctxkit.dispatch.routing.calibration import Calibration, OperatingPoint, apgr, calibrate, operating_curve
from ctxkit.dispatch.routing.cascade import Cascade, Verifier, mean_logprob
from ctxkit.dispatch.routing.rules import Rule, RulesRouter
from ctxkit.dispatch.routing.semantic import KNNQualityRouter, SemanticRouter, TextEmbedder, default_embedder
from ctxkit.dispatch.routing.session import SessionAwareRouter

__all__ = [
    "Calibration",
    "Cascade",
    "KNNQualityRouter",
    "OperatingPoint",
    "Router",
    "Rule",
    "RulesRouter",
    "SemanticRouter",
    "SessionAwareRouter",
    "TextEmbedder",
    "Verifier",
    "apgr",
    "calibrate",
    "default_embedder",
    "last_user_text",
    "mean_logprob",
    "operating_curve",
]
