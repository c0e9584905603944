"""Tokenizers: one interface over tiktoken, HF ``tokenizers`` and GGUF vocabularies.

The chat counters are resolved on first use: they import the message model (pydantic), which
counting a text does not need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ctxkit.tokenizers.base import BaseTokenizer, TokenCountCache, Tokenizer
from ctxkit.tokenizers.registry import get_tokenizer, register_tokenizer, specs_of

if TYPE_CHECKING:
    from ctxkit.tokenizers.chat import (
        ChatCounter,
        EstimateChatCounter,
        OpenAIChatCounter,
        TemplateChatCounter,
        get_chat_counter,
    )

#: names defined in ctxkit.tokenizers.chat, imported on first use
_LAZY = frozenset(
    {"ChatCounter", "EstimateChatCounter", "OpenAIChatCounter", "TemplateChatCounter", "get_chat_counter"}
)

__all__ = [
    "BaseTokenizer",
    "ChatCounter",
    "EstimateChatCounter",
    "OpenAIChatCounter",
    "TemplateChatCounter",
    "TokenCountCache",
    "Tokenizer",
    "get_chat_counter",
    "get_tokenizer",
    "register_tokenizer",
    "specs_of",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'ctxkit.tokenizers' has no attribute {name!r}")
    value = getattr(importlib.import_module("ctxkit.tokenizers.chat"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
