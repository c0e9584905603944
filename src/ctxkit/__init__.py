"""ctxkit: buy each LLM call the right amount of context, and show what it saved.

``import ctxkit`` is cheap: names are resolved on first use, and no optional
dependency is imported until a feature that needs it is used. What is exported here follows
the rule in ``docs/reference/index.md`` (checked by ``tests/test_public_api.py``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from ctxkit.assembly import AssembledPrompt, Assembler, AuditRecord, SectionReport, assemble
    from ctxkit.budget import Budget, SectionBudget
    from ctxkit.compress import (
        CompactingHistory,
        CompactionTrigger,
        CompressOlderTurns,
        ExtractiveSummarizer,
        FidelityReport,
        KeepLastTurns,
        LlamaCppSummarizer,
        LLMLinguaCompressor,
        SentenceFilter,
        Summarizer,
        TokenPruner,
        TokenWindow,
        TrimPipeline,
        TruncateToolOutputs,
    )
    from ctxkit.dispatch import (
        AnthropicBackend,
        Cascade,
        Dispatcher,
        LlamaCppBackend,
        OpenAIBackend,
        Result,
        RouteDecision,
        Rule,
        RulesRouter,
        SemanticRouter,
        get_backend,
        register_backend,
    )
    from ctxkit.errors import (
        BackendError,
        BudgetError,
        BudgetExceededError,
        CtxkitError,
        InvalidInputError,
        MissingDependencyError,
        ResourceError,
        SectionOverBudgetError,
        StoreFormatError,
        UnknownNameError,
        UsageError,
    )
    from ctxkit.messages import Chunk, Message, ToolCall, ToolSpec
    from ctxkit.models import ModelInfo, get_model, register_model
    from ctxkit.pricing import ModelPrice, PriceBook, cost, get_price, register_price
    from ctxkit.retrieval import Chunker, Document, FaissIndex, NumpyIndex, Retriever, SentenceTransformerEmbedder
    from ctxkit.telemetry import CallRecord, Ledger, Report, WorkflowBudget
    from ctxkit.tokenizers import Tokenizer, get_chat_counter, get_tokenizer
    from ctxkit.tokenizers.registry import count_tokens
    from ctxkit.usage import Usage

# public name -> module that defines it
_NAMES: dict[str, str] = {
    "AnthropicBackend": "ctxkit.dispatch",
    "AssembledPrompt": "ctxkit.assembly",
    "Assembler": "ctxkit.assembly",
    "AuditRecord": "ctxkit.assembly",
    "BackendError": "ctxkit.errors",
    "Budget": "ctxkit.budget",
    "BudgetError": "ctxkit.errors",
    "BudgetExceededError": "ctxkit.errors",
    "CallRecord": "ctxkit.telemetry",
    "Cascade": "ctxkit.dispatch",
    "Chunk": "ctxkit.messages",
    "Chunker": "ctxkit.retrieval",
    "CompactingHistory": "ctxkit.compress",
    "CompressOlderTurns": "ctxkit.compress",
    "CompactionTrigger": "ctxkit.compress",
    "CtxkitError": "ctxkit.errors",
    "Dispatcher": "ctxkit.dispatch",
    "Document": "ctxkit.retrieval",
    "ExtractiveSummarizer": "ctxkit.compress",
    "FaissIndex": "ctxkit.retrieval",
    "FidelityReport": "ctxkit.compress",
    "InvalidInputError": "ctxkit.errors",
    "KeepLastTurns": "ctxkit.compress",
    "LLMLinguaCompressor": "ctxkit.compress",
    "Ledger": "ctxkit.telemetry",
    "LlamaCppBackend": "ctxkit.dispatch",
    "LlamaCppSummarizer": "ctxkit.compress",
    "Message": "ctxkit.messages",
    "MissingDependencyError": "ctxkit.errors",
    "ModelInfo": "ctxkit.models",
    "ModelPrice": "ctxkit.pricing",
    "NumpyIndex": "ctxkit.retrieval",
    "OpenAIBackend": "ctxkit.dispatch",
    "PriceBook": "ctxkit.pricing",
    "Report": "ctxkit.telemetry",
    "ResourceError": "ctxkit.errors",
    "Result": "ctxkit.dispatch",
    "Retriever": "ctxkit.retrieval",
    "RouteDecision": "ctxkit.dispatch",
    "Rule": "ctxkit.dispatch",
    "RulesRouter": "ctxkit.dispatch",
    "SectionBudget": "ctxkit.budget",
    "SectionOverBudgetError": "ctxkit.errors",
    "StoreFormatError": "ctxkit.errors",
    "SectionReport": "ctxkit.assembly",
    "SemanticRouter": "ctxkit.dispatch",
    "SentenceFilter": "ctxkit.compress",
    "SentenceTransformerEmbedder": "ctxkit.retrieval",
    "Summarizer": "ctxkit.compress",
    "TokenPruner": "ctxkit.compress",
    "TokenWindow": "ctxkit.compress",
    "Tokenizer": "ctxkit.tokenizers",
    "ToolCall": "ctxkit.messages",
    "ToolSpec": "ctxkit.messages",
    "TrimPipeline": "ctxkit.compress",
    "TruncateToolOutputs": "ctxkit.compress",
    "UnknownNameError": "ctxkit.errors",
    "Usage": "ctxkit.usage",
    "UsageError": "ctxkit.errors",
    "WorkflowBudget": "ctxkit.telemetry",
    "assemble": "ctxkit.assembly",
    "cost": "ctxkit.pricing",
    "count_tokens": "ctxkit.tokenizers.registry",
    "get_backend": "ctxkit.dispatch",
    "get_chat_counter": "ctxkit.tokenizers",
    "get_model": "ctxkit.models",
    "get_price": "ctxkit.pricing",
    "get_tokenizer": "ctxkit.tokenizers",
    "register_backend": "ctxkit.dispatch",
    "register_model": "ctxkit.models",
    "register_price": "ctxkit.pricing",
}

__all__ = [
    "AnthropicBackend",
    "AssembledPrompt",
    "Assembler",
    "AuditRecord",
    "BackendError",
    "Budget",
    "BudgetError",
    "BudgetExceededError",
    "CallRecord",
    "Cascade",
    "Chunk",
    "Chunker",
    "CompactingHistory",
    "CompactionTrigger",
    "CompressOlderTurns",
    "CtxkitError",
    "Dispatcher",
    "Document",
    "ExtractiveSummarizer",
    "FaissIndex",
    "FidelityReport",
    "InvalidInputError",
    "KeepLastTurns",
    "LLMLinguaCompressor",
    "Ledger",
    "LlamaCppBackend",
    "LlamaCppSummarizer",
    "Message",
    "MissingDependencyError",
    "ModelInfo",
    "ModelPrice",
    "NumpyIndex",
    "OpenAIBackend",
    "PriceBook",
    "Report",
    "ResourceError",
    "Result",
    "Retriever",
    "RouteDecision",
    "Rule",
    "RulesRouter",
    "SectionBudget",
    "SectionOverBudgetError",
    "SectionReport",
    "SemanticRouter",
    "SentenceFilter",
    "SentenceTransformerEmbedder",
    "StoreFormatError",
    "Summarizer",
    "TokenPruner",
    "TokenWindow",
    "Tokenizer",
    "ToolCall",
    "ToolSpec",
    "TrimPipeline",
    "TruncateToolOutputs",
    "UnknownNameError",
    "Usage",
    "UsageError",
    "WorkflowBudget",
    "__version__",
    "assemble",
    "cost",
    "count_tokens",
    "get_backend",
    "get_chat_counter",
    "get_model",
    "get_price",
    "get_tokenizer",
    "register_backend",
    "register_model",
    "register_price",
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
