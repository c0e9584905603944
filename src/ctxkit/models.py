"""What ctxkit knows about each model: context window, output limit, tokenizer, chat format.

Names resolve by exact match first, then by the longest registered prefix, so
dated snapshots (``gpt-4o-2024-08-06``) find their family. Users add their own
models with :func:`register_model`.
"""

from __future__ import annotations

import threading
from typing import Literal

from pydantic import ConfigDict, Field

from ctxkit._model import CtxkitModel
from ctxkit.errors import InvalidInputError, UnknownNameError

__all__ = ["ModelInfo", "get_model", "known_models", "register_model"]

ChatFormat = Literal["openai", "anthropic", "template"]
Capability = Literal["tools", "vision", "json", "reasoning", "prompt_cache"]

_GPT: frozenset[Capability] = frozenset({"tools", "vision", "json", "prompt_cache"})
_O_SERIES: frozenset[Capability] = frozenset({"tools", "vision", "json", "reasoning", "prompt_cache"})
_CLAUDE_CAPS: frozenset[Capability] = frozenset({"tools", "vision", "prompt_cache"})
_CLAUDE_THINKING: frozenset[Capability] = frozenset({"tools", "vision", "prompt_cache", "reasoning"})
_LOCAL_CAPS: frozenset[Capability] = frozenset({"prompt_cache"})  # llama.cpp reuses a shared prefix's KV cache
_REASONING_ONLY: frozenset[Capability] = frozenset({"reasoning"})
_TOOLS_ONLY: frozenset[Capability] = frozenset({"tools"})
_TOOLS_JSON: frozenset[Capability] = frozenset({"tools", "json"})


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


def _m(
    name: str,
    provider: str,
    ctx: int,
    out: int,
    tok: str,
    fmt: ChatFormat = "openai",
    local: bool = False,
    caps: frozenset[Capability] = _GPT,
) -> ModelInfo:
    return ModelInfo(
        name=name,
        provider=provider,
        context_window=ctx,
        max_output=out,
        tokenizer=tok,
        chat_format=fmt,
        local=local,
        capabilities=caps,
    )


_O200K = "tiktoken:o200k_base"
_CL100K = "tiktoken:cl100k_base"
_CLAUDE = "estimate:claude"

_BUILTIN: list[ModelInfo] = [
    _m("gpt-5", "openai", 400_000, 128_000, _O200K, caps=_O_SERIES),
    _m("gpt-5-mini", "openai", 400_000, 128_000, _O200K, caps=_O_SERIES),
    _m("gpt-5-nano", "openai", 400_000, 128_000, _O200K, caps=_O_SERIES),
    _m("gpt-4.1", "openai", 1_047_576, 32_768, _O200K),
    _m("gpt-4.1-mini", "openai", 1_047_576, 32_768, _O200K),
    _m("gpt-4.1-nano", "openai", 1_047_576, 32_768, _O200K),
    _m("gpt-4o", "openai", 128_000, 16_384, _O200K),
    _m("gpt-4o-mini", "openai", 128_000, 16_384, _O200K),
    _m("o1", "openai", 200_000, 100_000, _O200K, caps=_O_SERIES),
    _m("o1-mini", "openai", 128_000, 65_536, _O200K, caps=_REASONING_ONLY),
    _m("o3", "openai", 200_000, 100_000, _O200K, caps=_O_SERIES),
    _m("o3-mini", "openai", 200_000, 100_000, _O200K, caps=_O_SERIES),
    _m("o4-mini", "openai", 200_000, 100_000, _O200K, caps=_O_SERIES),
    _m("gpt-4-turbo", "openai", 128_000, 4_096, _CL100K),
    _m("gpt-4", "openai", 8_192, 8_192, _CL100K, caps=_TOOLS_ONLY),
    _m("gpt-3.5-turbo", "openai", 16_385, 4_096, _CL100K, caps=_TOOLS_JSON),
    _m("claude-opus-4-1", "anthropic", 200_000, 32_000, _CLAUDE, "anthropic", caps=_CLAUDE_THINKING),
    _m("claude-opus-4", "anthropic", 200_000, 32_000, _CLAUDE, "anthropic", caps=_CLAUDE_THINKING),
    _m("claude-sonnet-4-5", "anthropic", 200_000, 64_000, _CLAUDE, "anthropic", caps=_CLAUDE_THINKING),
    _m("claude-sonnet-4", "anthropic", 200_000, 64_000, _CLAUDE, "anthropic", caps=_CLAUDE_THINKING),
    _m("claude-haiku-4-5", "anthropic", 200_000, 64_000, _CLAUDE, "anthropic", caps=_CLAUDE_THINKING),
    _m("claude-3-7-sonnet", "anthropic", 200_000, 64_000, _CLAUDE, "anthropic", caps=_CLAUDE_THINKING),
    _m("claude-3-5-sonnet", "anthropic", 200_000, 8_192, _CLAUDE, "anthropic", caps=_CLAUDE_CAPS),
    _m("claude-3-5-haiku", "anthropic", 200_000, 8_192, _CLAUDE, "anthropic", caps=_CLAUDE_CAPS),
    _m("claude-3-haiku", "anthropic", 200_000, 4_096, _CLAUDE, "anthropic", caps=_CLAUDE_CAPS),
    _m("claude-3-opus", "anthropic", 200_000, 4_096, _CLAUDE, "anthropic", caps=_CLAUDE_CAPS),
    _m("smollm2-135m-instruct", "llamacpp", 8_192, 2_048, "gguf:default", "template", True, _LOCAL_CAPS),
]

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
