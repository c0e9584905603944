"""ctxkit: buy each LLM call the right amount of context, and show what it saved.

``import ctxkit`` is cheap: names are resolved on first use, and no optional
dependency is imported until a feature that needs it is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from ctxkit.assembly import AssembledPrompt, Assembler, AuditRecord, SectionReport, assemble
    from ctxkit.budget import Budget, SectionBudget
    from ctxkit.errors import (
        BackendError,
        BudgetError,
        BudgetExceededError,
        CtxkitError,
        InvalidInputError,
        MissingDependencyError,
        ResourceError,
        SectionOverBudgetError,
        UnknownNameError,
        UsageError,
    )
    from ctxkit.messages import Chunk, Message, ToolCall, ToolSpec
    from ctxkit.models import ModelInfo, get_model, register_model
    from ctxkit.tokenizers import Tokenizer, get_chat_counter, get_tokenizer
    from ctxkit.tokenizers.registry import count_tokens

# public name -> module that defines it
_NAMES: dict[str, str] = {
    "AssembledPrompt": "ctxkit.assembly",
    "Assembler": "ctxkit.assembly",
    "AuditRecord": "ctxkit.assembly",
    "BackendError": "ctxkit.errors",
    "Budget": "ctxkit.budget",
    "BudgetError": "ctxkit.errors",
    "BudgetExceededError": "ctxkit.errors",
    "Chunk": "ctxkit.messages",
    "CtxkitError": "ctxkit.errors",
    "InvalidInputError": "ctxkit.errors",
    "Message": "ctxkit.messages",
    "MissingDependencyError": "ctxkit.errors",
    "ModelInfo": "ctxkit.models",
    "ResourceError": "ctxkit.errors",
    "SectionBudget": "ctxkit.budget",
    "SectionOverBudgetError": "ctxkit.errors",
    "SectionReport": "ctxkit.assembly",
    "ToolCall": "ctxkit.messages",
    "ToolSpec": "ctxkit.messages",
    "Tokenizer": "ctxkit.tokenizers",
    "UnknownNameError": "ctxkit.errors",
    "UsageError": "ctxkit.errors",
    "assemble": "ctxkit.assembly",
    "count_tokens": "ctxkit.tokenizers.registry",
    "get_chat_counter": "ctxkit.tokenizers",
    "get_model": "ctxkit.models",
    "get_tokenizer": "ctxkit.tokenizers",
    "register_model": "ctxkit.models",
}

__all__ = [
    "AssembledPrompt",
    "Assembler",
    "AuditRecord",
    "BackendError",
    "Budget",
    "BudgetError",
    "BudgetExceededError",
    "Chunk",
    "CtxkitError",
    "InvalidInputError",
    "Message",
    "MissingDependencyError",
    "ModelInfo",
    "ResourceError",
    "SectionBudget",
    "SectionOverBudgetError",
    "SectionReport",
    "Tokenizer",
    "ToolCall",
    "ToolSpec",
    "UnknownNameError",
    "UsageError",
    "__version__",
    "assemble",
    "count_tokens",
    "get_chat_counter",
    "get_model",
    "get_tokenizer",
    "register_model",
]


def __getattr__(name: str) -> Any:
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'ctxkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
