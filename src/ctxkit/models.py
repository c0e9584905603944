"""What ctxkit knows about each model: context window, output limit, tokenizer, chat format.

Names resolve by exact match first, then by the longest registered prefix, so
dated snapshots (``gpt-4o-2024-08-06``) find their family. Users add their own
models with :func:`register_model`.
"""

from __future__ import annotations

import threading

from pydantic import ConfigDict, Field

from ctxkit._model import CtxkitModel
from ctxkit._model_table import BUILTIN_ROWS, Capability, ChatFormat
from ctxkit.errors import InvalidInputError, UnknownNameError

__all__ = ["ModelInfo", "get_model", "known_models", "register_model"]


class ModelInfo(CtxkitModel):
    """Static facts about a model."""

    model_config = ConfigDict(frozen=True)

    name: str
    provider: str
    context_window: int = Field(gt=0)
    max_output: int = Field(gt=0)
    tokenizer: str = Field(description="tokenizer spec, e.g. 'tiktoken:o200k_base' or 'gguf:default'")
    chat_format: ChatFormat = "openai"
    local: bool = False
    capabilities: frozenset[Capability] = Field(
        default=frozenset(), description="what the model accepts: tools, vision, json, reasoning, prompt_cache"
    )

    def supports(self, capability: Capability) -> bool:
        return capability in self.capabilities


_BUILTIN: list[ModelInfo] = [ModelInfo(**row._asdict()) for row in BUILTIN_ROWS]


_lock = threading.Lock()
_registry: dict[str, ModelInfo] = {m.name: m for m in _BUILTIN}


def register_model(info: ModelInfo, *, replace: bool = False) -> ModelInfo:
    """Add a model (or, with ``replace=True``, override a built-in one)."""
    with _lock:
        if info.name in _registry and not replace:
            raise InvalidInputError(f"model {info.name!r} is already registered; pass replace=True to override it")
        _registry[info.name] = info
    return info


def known_models() -> list[str]:
    return sorted(_registry)


def get_model(name: str) -> ModelInfo:
    """Model facts by exact name or longest registered prefix (``gpt-4o-2024-08-06`` → ``gpt-4o``).

    A ``provider:`` prefix (``openai:gpt-4o``) is accepted and ignored for lookup.
    """
    if not isinstance(name, str):
        raise InvalidInputError(f"a model name is a str such as 'gpt-4o', not {type(name).__name__}")
    key = name.split(":", 1)[1] if ":" in name and not name.startswith(("gguf", "llamacpp")) else name
    with _lock:
        info = _registry.get(key)
        if info is not None:
            return info
        best = max((k for k in _registry if key.startswith(k + "-") or key.startswith(k + "@")), key=len, default=None)
        if best is not None:
            return _registry[best]
    raise UnknownNameError(
        "model", name, list(_registry), hint="Register it with ctxkit.register_model(ModelInfo(...))."
    )
