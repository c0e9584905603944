"""ctxkit's context editing as LangChain v1 agent middleware (extra ``agents``).

The middleware lives in :mod:`ctxkit.integrations.langchain.middleware`; this module keeps
the import path the docs use::

    from ctxkit.integrations.langchain_agents import CtxkitAgentMiddleware
"""

from __future__ import annotations

from ctxkit.errors import MissingDependencyError

try:
    from ctxkit.integrations.langchain.middleware import CtxkitAgentMiddleware, thinking_text
except MissingDependencyError as exc:  # langchain-core too comes with the agents extra (langchain v1)
    raise MissingDependencyError("the LangChain agent middleware", "agents", package="langchain") from exc

__all__ = ["CtxkitAgentMiddleware", "thinking_text"]
