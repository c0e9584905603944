"""History compression: trimming, summarization, token pruning and fidelity reports."""

from ctxkit.compress.trim import (
    BaseHistoryPolicy,
    HistoryPolicy,
    KeepLastTurns,
    TokenWindow,
    TrimPipeline,
    TrimReport,
    TruncateToolOutputs,
    is_mandatory_turn,
)

__all__ = [
    "BaseHistoryPolicy",
    "HistoryPolicy",
    "KeepLastTurns",
    "TokenWindow",
    "TrimPipeline",
    "TrimReport",
    "TruncateToolOutputs",
    "is_mandatory_turn",
]
