"""Framework-neutral pieces shared by the LangChain and LlamaIndex adapters.

* :func:`score_from_metadata` — a relevance score from a document's metadata
  (``relevance_score``, ``score``, ...), falling back to the retriever's rank;
* :func:`pack_texts` — which texts fit a token budget, maximizing their summed score
  with :func:`ctxkit.assembly.pack` (exact knapsack when affordable), optionally after
  pruning each text with a :class:`~ctxkit.compress.TextCompressor`;
* :class:`PackReport` — what was kept, pruned and dropped, and why.

Nothing here imports LangChain or LlamaIndex.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ConfigDict, Field

from ctxkit._model import CtxkitModel
from ctxkit.assembly.packing import pack
from ctxkit.errors import InvalidInputError
from ctxkit.tokenizers import Tokenizer, get_tokenizer

__all__ = [
    "DEFAULT_SCORE_KEYS",
    "PackReport",
    "PackedText",
    "pack_texts",
    "result_metadata",
    "score_from_metadata",
]

#: metadata keys read for a document's relevance score, in order
DEFAULT_SCORE_KEYS: tuple[str, ...] = ("relevance_score", "score", "similarity_score", "similarity", "rerank_score")


def score_from_metadata(metadata: Mapping[str, Any], rank: int, keys: Sequence[str] = DEFAULT_SCORE_KEYS) -> float:
    """The first finite number under ``keys`` in ``metadata``; else ``1 / (1 + rank)`` (earlier is better).

    Negative scores (some rerankers emit logits) are kept as they are; packing treats
    the worst as worthless rather than dropping content silently: see :func:`pack_texts`.
    """
    for key in keys:
        value = metadata.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(float(value)):
            return float(value)
    return 1.0 / (1.0 + rank)


class PackedText(CtxkitModel):
    """One input text after packing: kept or not, its tokens, and its pruned text if pruned."""

    model_config = ConfigDict(frozen=True)

    index: int
    kept: bool
    score: float
    tokens: int = Field(description="tokens the text takes in the packed set (after pruning)")
    original_tokens: int
    text: str = Field(repr=False)
    pruned: bool = False
    reason: str = ""


class PackReport(CtxkitModel):
    """What packing did with each input, in input order."""

    model_config = ConfigDict(frozen=True)

    capacity: int
    items: tuple[PackedText, ...]

    @property
    def kept(self) -> list[PackedText]:
        return [i for i in self.items if i.kept]

    @property
    def dropped(self) -> list[PackedText]:
        return [i for i in self.items if not i.kept]

    @property
    def tokens_in(self) -> int:
        return sum(i.original_tokens for i in self.items)

    @property
    def tokens_out(self) -> int:
        return sum(i.tokens for i in self.kept)


def pack_texts(
    texts: Sequence[str],
    scores: Sequence[float],
    capacity: int,
    *,
    tokenizer: str | Tokenizer = "gpt-4o",
    per_item_tokens: int = 0,
    extra_costs: Sequence[int] | None = None,
    pruner: Any = None,
    prune_rate: float = 0.5,
    question: str | None = None,
    exact: bool | None = None,
) -> PackReport:
    """Choose the texts whose tokens (plus ``per_item_tokens`` each) fit ``capacity``, maximizing summed score.

    Scores are shifted so the lowest becomes a small positive value: every text has
    some worth and free room is filled, but a higher score always wins. With a
    ``pruner`` (anything with ``compress(text, rate=, question=)`` returning an object
    with ``.text``, such as :class:`ctxkit.compress.TokenPruner`), texts that do not fit
    whole are pruned to ``prune_rate`` and packed again in the room left.
    """
    if len(texts) != len(scores):
        raise InvalidInputError(f"got {len(texts)} texts but {len(scores)} scores")
    if capacity < 0:
        raise InvalidInputError(f"capacity must be >= 0, got {capacity}")
    tok = get_tokenizer(tokenizer)
    extras = list(extra_costs) if extra_costs is not None else [0] * len(texts)
    if len(extras) != len(texts):
        raise InvalidInputError(f"got {len(texts)} texts but {len(extras)} extra costs")
    fixed = [per_item_tokens + e for e in extras]
    costs = [c + f for c, f in zip(tok.count_many(list(texts)), fixed, strict=True)] if texts else []
    values = _values(scores)
    chosen = set(pack(values, costs, capacity, exact=exact)) if texts else set()
    items: dict[int, PackedText] = {}
    for i, (t, c) in enumerate(zip(texts, costs, strict=True)):
        if i in chosen:
            items[i] = PackedText(index=i, kept=True, score=float(scores[i]), tokens=c, original_tokens=c, text=t)
    room = capacity - sum(costs[i] for i in chosen)
    rest = [i for i in range(len(texts)) if i not in chosen]
    if pruner is not None and rest and room > per_item_tokens:
        pruned_texts: dict[int, str] = {}
        for i in rest:
            result = pruner.compress(texts[i], rate=prune_rate, question=question)
            pruned_texts[i] = str(result.text)
        pcounts = tok.count_many([pruned_texts[i] for i in rest])
        pcosts = [c + fixed[i] for c, i in zip(pcounts, rest, strict=True)]
        second = set(pack([values[i] for i in rest], pcosts, room, exact=exact))
        for j, i in enumerate(rest):
            if j in second and pruned_texts[i].strip():
                items[i] = PackedText(
                    index=i,
                    kept=True,
                    score=float(scores[i]),
                    tokens=pcosts[j],
                    original_tokens=costs[i],
                    text=pruned_texts[i],
                    pruned=True,
                    reason=f"pruned to rate {prune_rate} to fit",
                )
    for i in range(len(texts)):
        if i not in items:
            items[i] = PackedText(
                index=i,
                kept=False,
                score=float(scores[i]),
                tokens=0,
                original_tokens=costs[i],
                text=texts[i],
                reason=f"not chosen by score-per-token packing into {capacity} tokens",
            )
    return PackReport(capacity=capacity, items=tuple(items[i] for i in range(len(texts))))


def _values(scores: Sequence[float]) -> list[float]:
    if not scores:
        return []
    for s in scores:
        if not math.isfinite(s):
            raise InvalidInputError(f"scores must be finite numbers, got {s!r}")
    low = min(scores)
    high = max(scores)
    span = high - low
    floor = (span if span > 0 else 1.0) * 1e-3
    return [s - low + floor for s in scores]


def result_metadata(result: Any) -> dict[str, Any]:
    """What every framework adapter reports about a ctxkit :class:`~ctxkit.dispatch.Result`, under one set of keys.

    LangChain's ``response_metadata`` and LlamaIndex's ``raw`` both start from this mapping and add only
    their own conventions (LangChain's ``model_name``/``model_provider``, LlamaIndex's OpenAI-style ``usage``).
    Cost is a decimal string (exact), ``None`` when the price is unknown.
    """
    decision = result.decision
    return {
        "model": result.model,
        "backend": result.backend,
        "finish_reason": result.finish_reason,
        "latency_s": result.latency_s,
        "ttft_s": result.ttft_s,
        "cost": None if result.cost is None else str(result.cost),
        "attempts": result.attempts,
        "local": result.local,
        "route": decision.route if decision is not None else None,
        "route_reason": decision.reason if decision is not None else None,
        "usage_estimated": bool(result.usage_estimated),
    }
