"""A router's choice, with its reason and score."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from ctxkit._model import CtxkitModel

__all__ = ["RouteDecision"]


class RouteDecision(CtxkitModel):
    """Which route (a backend name) answers, why, and how sure the router was.

    ``score`` is the router's own number (a similarity, a confidence, a rule's
    priority); ``threshold`` the cut it was compared with, when there is one.
    ``abstained`` means the router had no confident choice and fell back to its
    default route. ``trail`` holds the decisions of inner routers or cascade steps.
    """

    model_config = ConfigDict(frozen=True)

    route: str
    reason: str
    score: float | None = None
    threshold: float | None = None
    router: str = ""
    abstained: bool = False
    escalated: bool = False
    trail: tuple[RouteDecision, ...] = Field(default=())
