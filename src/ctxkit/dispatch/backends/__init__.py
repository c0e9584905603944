"""Model backends: llama.cpp in process, OpenAI-compatible HTTP, Anthropic. Heavy clients load lazily."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ctxkit.dispatch.backends.base import Backend, BaseBackend, PromptLike, Request, as_request

if TYPE_CHECKING:
    from ctxkit.dispatch.backends.anthropic import AnthropicBackend
    from ctxkit.dispatch.backends.llamacpp import LlamaCppBackend
    from ctxkit.dispatch.backends.openai import OpenAIBackend

_LAZY = {
    "AnthropicBackend": "ctxkit.dispatch.backends.anthropic",
    "LlamaCppBackend": "ctxkit.dispatch.backends.llamacpp",
    "OpenAIBackend": "ctxkit.dispatch.backends.openai",
}

__all__ = [
    "AnthropicBackend",
    "Backend",
    "BaseBackend",
    "LlamaCppBackend",
    "OpenAIBackend",
    "PromptLike",
    "Request",
    "as_request",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ctxkit.dispatch.backends' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
