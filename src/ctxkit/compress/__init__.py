"""History compression: trimming, summarization, token pruning and fidelity reports.

Extra ``compress`` holds the model-backed parts (llama.cpp scorer, summarizers,
LLMLingua adapter); trimming and fidelity reports are pure and need nothing.
"""

from ctxkit.compress.base import BaseCompressor, CompressionResult, TextCompressor
from ctxkit.compress.coarse import CoarseToFine, parse_structure
from ctxkit.compress.compaction import CompactingHistory, CompactionTrigger, SummaryEpoch
from ctxkit.compress.fidelity import FidelityReport, extract_entities, extract_numbers, fidelity_report
from ctxkit.compress.history import (
    BaseHistoryPolicy,
    CompressOlderTurns,
    HistoryPolicy,
    KeepLastTurns,
    TokenWindow,
    TrimPipeline,
    TrimReport,
    TruncateToolOutputs,
    is_mandatory_turn,
)
from ctxkit.compress.lingua import LLMLinguaCompressor, convert_gguf_to_hf, user_cache_dir
from ctxkit.compress.prune import PrunedSections, Section, TokenPruner, allocate_budget, join_units, select_units
from ctxkit.compress.relevance import COMPRESSION_WEIGHTS, RelevanceWeights, ScoredPassage, SentenceScorer
from ctxkit.compress.scorer import LlamaCppScorer, TokenScorer, TokenScores, TorchScorer, default_scorer
from ctxkit.compress.sentences import SentenceFilter, split_sentences
from ctxkit.compress.spans import FORCE_KINDS, force_spans, protected_spans, strip_keep_tags
from ctxkit.compress.summarize import (
    BackendSummarizer,
    BaseSummarizer,
    CallableSummarizer,
    ExtractiveSummarizer,
    LlamaCppSummarizer,
    Summarizer,
    render_transcript,
)

__all__ = [
    "COMPRESSION_WEIGHTS",
    "FORCE_KINDS",
    "BackendSummarizer",
    "BaseCompressor",
    "BaseHistoryPolicy",
    "BaseSummarizer",
    "CallableSummarizer",
    "CoarseToFine",
    "CompactingHistory",
    "CompactionTrigger",
    "CompressOlderTurns",
    "CompressionResult",
    "ExtractiveSummarizer",
    "FidelityReport",
    "HistoryPolicy",
    "KeepLastTurns",
    "LLMLinguaCompressor",
    "LlamaCppScorer",
    "LlamaCppSummarizer",
    "PrunedSections",
    "RelevanceWeights",
    "ScoredPassage",
    "Section",
    "SentenceFilter",
    "SentenceScorer",
    "Summarizer",
    "SummaryEpoch",
    "TextCompressor",
    "TokenPruner",
    "TokenScorer",
    "TokenScores",
    "TokenWindow",
    "TorchScorer",
    "TrimPipeline",
    "TrimReport",
    "TruncateToolOutputs",
    "allocate_budget",
    "convert_gguf_to_hf",
    "default_scorer",
    "extract_entities",
    "extract_numbers",
    "fidelity_report",
    "force_spans",
    "is_mandatory_turn",
    "join_units",
    "parse_structure",
    "protected_spans",
    "render_transcript",
    "select_units",
    "split_sentences",
    "strip_keep_tags",
    "user_cache_dir",
]
