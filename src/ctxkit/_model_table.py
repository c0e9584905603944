"""The built-in model table as plain data: one :class:`ModelRow` per model, no pydantic.

:mod:`ctxkit.models` builds its :class:`~ctxkit.models.ModelInfo` registry from these rows, and
:mod:`ctxkit.tokenizers.registry` reads the tokenizer specs from them, so counting tokens for ``gpt-4o``
imports neither pydantic nor the model registry, and each model's facts are written once, here.
This module imports nothing from ctxkit.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

__all__ = ["BUILTIN_ROWS", "Capability", "ChatFormat", "ModelRow"]

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


class ModelRow(NamedTuple):
    """One built-in model's facts, in :class:`~ctxkit.models.ModelInfo`'s field order."""

    name: str
    provider: str
    context_window: int
    max_output: int
    tokenizer: str
    chat_format: ChatFormat
    local: bool
    capabilities: frozenset[Capability]


def _m(
    name: str,
    provider: str,
    ctx: int,
    out: int,
    tok: str,
    fmt: ChatFormat = "openai",
    local: bool = False,
    caps: frozenset[Capability] = _GPT,
) -> ModelRow:
    return ModelRow(name, provider, ctx, out, tok, fmt, local, caps)


_O200K = "tiktoken:o200k_base"
_CL100K = "tiktoken:cl100k_base"
_CLAUDE = "estimate:claude"

BUILTIN_ROWS: tuple[ModelRow, ...] = (
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
)
