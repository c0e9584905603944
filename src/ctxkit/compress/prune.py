"""Question-aware compression, coarse to fine, and LLMLingua-style token pruning, to a target rate.

By default :meth:`TokenPruner.compress` goes coarse to fine (:mod:`ctxkit.compress.coarse`):
sentences are scored against the question with the shared
:class:`~ctxkit.compress.SentenceScorer` (the one evidence packing uses), the best are kept
whole, the rest of the budget is shared among the next sentences by relevance, and only there
are tokens pruned, never splitting a protected span (names, numbers with units, dates, quotes,
code). The achieved rate is at most the asked rate and within 0.02 of it (a contract).
``strategy="tokens"`` is the token-only pruner below, kept for comparison and for
:meth:`TokenPruner.compress_sections`.

One forward pass of a small causal LM (:class:`~ctxkit.compress.scorer.LlamaCppScorer`)
gives each token its self-information. Tokens are grouped into *units* (a word or a
run of punctuation with its leading space, or a run of newlines) so that what is kept
reads as text and re-tokenizes to about the same count; a unit's score is the mean
self-information of its tokens and its cost their number. Selection is vectorized:

1. force-kept units are taken first: numbers, ``<keep>`` spans and ``keep=`` strings
   always; identifiers, code, quoted strings and newlines too when everything forced fits
   the target — when it does not, those are taken first among the rest, so the rate
   holds (only numbers and marked spans can push it over);
2. the rest are taken by score until the token target ``rate * tokens`` is reached
   (the last one is taken if that lands closer to the target).

With a ``question``, scores are contrastive (LongLLMLingua): a token whose surprise
drops when the question comes first is relevant, so the score is the standardized
self-information plus the standardized drop. :meth:`TokenPruner.compress_sections`
runs a budget controller over sections (instructions, examples, question) that share
one scoring pass.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Collection, Iterable, Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import ConfigDict, Field

from ctxkit._model import CtxkitModel
from ctxkit.compress.base import BaseCompressor, CompressionResult, check_rate, compress_chunks
from ctxkit.compress.coarse import CoarseToFine
from ctxkit.compress.relevance import COMPRESSION_WEIGHTS, SentenceScorer, _stopwords
from ctxkit.compress.scorer import TokenScorer, TokenScores, default_scorer
from ctxkit.compress.spans import FORCE_KINDS, force_mask, force_spans, strip_keep_tags
from ctxkit.errors import InvalidInputError
from ctxkit.messages import Chunk
from ctxkit.tokenizers import Tokenizer, get_tokenizer

__all__ = ["PrunedSections", "Section", "TokenPruner", "allocate_budget", "join_units", "select_units"]

_UNIT = re.compile(r"(?:[^\S\n]*\n)+[^\S\n]*|[^\S\n]*(?:\w+|[^\w\s]+)|[^\S\n]+$")
_WORD = re.compile(r"\w+")
_QUESTION_TEMPLATE = "Question: {question}\nRelevant text:\n"

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


class Section(CtxkitModel):
    """A part of a prompt for the budget controller.

    ``rate=None`` lets the controller choose; a number fixes it (``1.0`` keeps the
    section whole, e.g. the instruction or the question). ``weight`` biases how the
    shared budget is split among the sections the controller chooses for.
    """

    model_config = ConfigDict(frozen=True)

    text: str
    name: str = ""
    rate: float | None = Field(default=None, gt=0.0, le=1.0)
    weight: float = Field(default=1.0, gt=0.0)


class PrunedSections(CtxkitModel):
    """The result of :meth:`TokenPruner.compress_sections`: the joined text and one result per section."""

    model_config = ConfigDict(frozen=True)

    text: str
    sections: list[CompressionResult]
    original_tokens: int
    compressed_tokens: int
    requested_rate: float

    @property
    def rate(self) -> float:
        return self.compressed_tokens / self.original_tokens if self.original_tokens else 1.0


def join_units(text: str, starts: IntArray, ends: IntArray) -> str:
    """Concatenate kept units; where a dropped unit glued two words or numbers, put a space back.

    ``80,000*1.5`` with ``*`` dropped must not become the different number ``80,0001.5``.
    """
    parts: list[str] = []
    prev_end = -1
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        piece = text[s:e]
        if parts and s != prev_end and piece[:1].isalnum() and parts[-1][-1:].isalnum():
            parts.append(" ")
        parts.append(piece)
        prev_end = e
    return "".join(parts).strip()


def select_units(
    cost: IntArray, score: FloatArray, forced: BoolArray, target: float, preferred: BoolArray | None = None
) -> BoolArray:
    """Keep-mask over units: forced ones, then the best by score until ``target`` tokens.

    ``preferred`` units are kept too when everything forced and preferred fits the
    target; otherwise they are taken first (best score first) among the rest.
    Vectorized: one sort and one cumulative sum. Zero-cost units (their text lies inside
    a token that starts in an earlier unit) follow that earlier unit.
    """
    n = cost.shape[0]
    keep = forced.copy()
    soft = np.zeros(n, dtype=bool) if preferred is None else preferred & ~forced
    if soft.any() and float(cost[forced | soft].sum()) <= target:
        keep |= soft
        soft = np.zeros(n, dtype=bool)
    budget = target - float(cost[keep].sum())
    cand = np.flatnonzero(~keep & (cost > 0))
    if budget > 0 and cand.size:
        order = cand[np.lexsort((np.arange(cand.size), -score[cand], ~soft[cand]))]
        cum = np.cumsum(cost[order])
        j = int(np.searchsorted(cum, budget, side="right"))
        if j < order.size:
            below = float(cum[j - 1]) if j else 0.0
            if abs(float(cum[j]) - budget) < abs(below - budget):
                j += 1
        keep[order[:j]] = True
    if n:
        owner = np.maximum.accumulate(np.where(cost > 0, np.arange(n), 0))
        zero = cost == 0
        keep[zero] = keep[owner[zero]] | forced[zero]
    return keep


def allocate_budget(
    tokens: Sequence[int], rates: Sequence[float | None], weights: Sequence[float], total: float
) -> FloatArray:
    """Token targets per section: fixed rates first, the rest shared by weight x size (water-filling).

    Sections the controller chooses for are capped at their size; what a capped section
    cannot use goes to the others.
    """
    n = np.asarray(tokens, dtype=np.float64)
    fixed = np.array([r is not None for r in rates])
    r = np.array([0.0 if x is None else x for x in rates])
    out = np.where(fixed, np.round(r * n), 0.0)
    room = max(total - float(out.sum()), 0.0)
    free = ~fixed & (n > 0)
    w = np.asarray(weights, dtype=np.float64) * n
    while room > 1e-9 and free.any():
        share = room * w * free / float((w * free).sum())
        cap = n - out
        take = np.minimum(share, cap) * free
        out += take
        room -= float(take.sum())
        free &= out < n - 1e-9
        if not (share > cap + 1e-9).any():
            break
    return out


class TokenPruner(BaseCompressor):
    """Built-in LLMLingua-style pruner over a llama.cpp scorer.

    ``force`` names the kinds of spans always kept by token pruning (``strategy="tokens"``: any of
    ``numbers``, ``identifiers``, ``code``, ``quotes``, ``marked``; default: all). The coarse-to-fine
    default keeps the rate as a contract and honours only ``marked`` spans and ``keep`` strings;
    there numbers, names, quotes and identifiers are protected spans, kept whole or dropped whole,
    and asking it to force-keep them raises :class:`~ctxkit.errors.InvalidInputError`
    (``benchmarks/pruning.py`` reports the number retention of both). ``keep_newlines`` keeps line structure;
    ``tokenizer`` (a ctxkit tokenizer spec) is what the result's token counts use —
    by default the scorer's own vocabulary. ``question_weight`` scales the contrastive
    term for question-aware pruning. With ``strategy="tokens"``, numbers and marked spans are kept even
    when they alone exceed the target (the result's ``forced_tokens`` shows it); with
    ``strict_rate=True`` they are taken first but the target rate always holds.

    ``strategy`` is ``"coarse-to-fine"`` (the default: whole sentences by question relevance
    first, token pruning only in the next best, protected spans whole, the rate a contract
    within ``tolerance``) or ``"tokens"`` (token-level pruning of the whole text).
    ``sentence_scorer`` is the shared :class:`~ctxkit.compress.SentenceScorer` (MiniLM + BM25 by
    default); ``temperature`` sets how sharply the fine budget follows relevance. ``fine`` scores
    the words of partly kept sentences: ``"lexical"`` (default: question words, names and numbers
    first, stop words last; no model pass) or ``"lm"`` (the scorer's question-contrastive
    self-information, LLMLingua-style; a model pass per call, not compared on HotpotQA).
    """

    method = "ctxkit-prune"

    def __init__(
        self,
        scorer: TokenScorer | None = None,
        *,
        force: Collection[str] | None = None,
        keep_newlines: bool = True,
        tokenizer: Tokenizer | str | None = None,
        question_weight: float = 1.0,
        strict_rate: bool = False,
        strategy: Literal["coarse-to-fine", "tokens"] = "coarse-to-fine",
        sentence_scorer: SentenceScorer | None = None,
        temperature: float = 0.1,
        tolerance: float = 0.02,
        fine: Literal["lexical", "lm"] = "lexical",
    ) -> None:
        if fine not in ("lexical", "lm"):
            raise InvalidInputError(f"fine must be 'lexical' or 'lm', got {fine!r}")
        if strategy not in ("coarse-to-fine", "tokens"):
            raise InvalidInputError(f"strategy must be 'coarse-to-fine' or 'tokens', got {strategy!r}")
        for label, v in (("temperature", temperature), ("tolerance", tolerance)):
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
                raise InvalidInputError(f"{label} must be a finite number > 0, got {v!r}")
        if sentence_scorer is not None and not callable(getattr(sentence_scorer, "score", None)):
            raise InvalidInputError(
                f"sentence_scorer must be a SentenceScorer (with score()), not {type(sentence_scorer).__name__}"
            )
        explicit = force is not None
        if force is None:
            force = FORCE_KINDS
        if isinstance(force, str):
            force = (force,)
        if not isinstance(force, Iterable) or not all(isinstance(k, str) for k in force):
            raise InvalidInputError(f"force must be a list of span kinds from {list(FORCE_KINDS)}")
        if isinstance(question_weight, bool) or not isinstance(question_weight, int | float):
            raise InvalidInputError(f"question_weight must be a number, not {type(question_weight).__name__}")
        if not math.isfinite(question_weight) or question_weight < 0:
            raise InvalidInputError(f"question_weight must be a finite number >= 0, got {question_weight!r}")
        if scorer is not None and not callable(getattr(scorer, "score", None)):
            raise InvalidInputError(f"scorer must be a TokenScorer (with score()), not {type(scorer).__name__}")
        unknown = set(force) - set(FORCE_KINDS)
        if unknown:
            raise InvalidInputError(f"unknown force-keep kinds {sorted(unknown)}; choose from {list(FORCE_KINDS)}")
        token_only = sorted(set(force) - {"marked"})
        if explicit and strategy == "coarse-to-fine" and token_only:
            raise InvalidInputError(
                f"force={token_only} applies to strategy='tokens' only: coarse to fine keeps the rate as a contract, "
                "and numbers, names, quotes and identifiers are protected spans there (kept whole or dropped whole "
                "with what they belong to). Pass strategy='tokens' to force-keep them, keep=[...] for literal "
                "strings, or <keep>...</keep> marks with force=['marked']"
            )
        self._scorer = scorer
        self.force = tuple(force)
        self.keep_newlines = keep_newlines
        self.tokenizer = get_tokenizer(tokenizer) if tokenizer is not None else None
        self.question_weight = question_weight
        self.strict_rate = strict_rate
        self.strategy = strategy
        self._sentence_scorer = sentence_scorer
        self.temperature = float(temperature)
        self.tolerance = float(tolerance)
        self.fine = fine

    def __repr__(self) -> str:
        return f"TokenPruner(scorer={self._scorer!r}, strategy={self.strategy!r}, force={list(self.force)})"

    @property
    def sentence_scorer(self) -> SentenceScorer:
        """The shared sentence scorer (MiniLM cosine + BM25, loaded on first use)."""
        if self._sentence_scorer is None:
            self._sentence_scorer = SentenceScorer(weights=COMPRESSION_WEIGHTS)
        return self._sentence_scorer

    def _unit_scores(
        self, texts: list[str], question: str | None
    ) -> list[tuple[list[tuple[int, int]], FloatArray, IntArray]]:
        out: list[tuple[list[tuple[int, int]], FloatArray, IntArray]] = []
        if self.fine == "lexical":
            return [self._lexical_units(t, question) for t in texts]
        for t in texts:
            starts, ends, cost, score, _, _ = self._units(self._scores(t, question), (), ())
            spans = list(zip(starts.tolist(), ends.tolist(), strict=True))
            out.append((spans, score, cost))
        return out

    def _lexical_units(self, text: str, question: str | None) -> tuple[list[tuple[int, int]], FloatArray, IntArray]:
        stop = _stopwords()
        qwords = {w for w in _WORD.findall((question or "").lower()) if w not in stop}
        spans = [m.span() for m in _UNIT.finditer(text)]
        score = np.zeros(len(spans), dtype=np.float64)
        cost = np.zeros(len(spans), dtype=np.int64)
        for k, (a, b) in enumerate(spans):
            piece = text[a:b]
            word = piece.strip()
            cost[k] = max(self._count(piece), 1) if word else 0
            low = word.lower()
            if not word[:1].isalnum():
                score[k] = 0.05
            elif low in stop:
                score[k] = 0.2
            else:
                score[k] = 1.0 + 2.0 * (low in qwords) + 0.5 * (word[:1].isupper() or word[:1].isdigit())
                score[k] += min(len(word), 10) / 20.0
        return spans, score, cost

    def _coarse_to_fine(
        self, clean: str, rate: float, question: str | None, keep: Sequence[str], marked: Sequence[tuple[int, int]]
    ) -> tuple[str, int]:
        hard = list(marked) if "marked" in self.force else []
        hard += force_spans(clean, (), keep=keep)
        planner = CoarseToFine(
            self.sentence_scorer,
            self._count,
            self._unit_scores,
            temperature=self.temperature,
            tolerance=self.tolerance,
        )
        plan = planner.plan(clean, rate, question, hard=hard)
        return plan.text, plan.tokens

    @property
    def scorer(self) -> TokenScorer:
        """The scorer (the shared default SmolLM2 scorer is loaded on first use)."""
        if self._scorer is None:
            self._scorer = default_scorer()
        return self._scorer

    def _count(self, text: str) -> int:
        return self.tokenizer.count(text) if self.tokenizer is not None else self.scorer.count(text)

    # ------------------------------------------------------------------ units
    def _units(
        self, scores: TokenScores, keep: Sequence[str], marked: Sequence[tuple[int, int]]
    ) -> tuple[IntArray, IntArray, IntArray, FloatArray, BoolArray, BoolArray]:
        text = scores.text
        spans = [m.span() for m in _UNIT.finditer(text)]
        starts = np.fromiter((s for s, _ in spans), dtype=np.int64, count=len(spans))
        ends = np.fromiter((e for _, e in spans), dtype=np.int64, count=len(spans))
        # byte offsets of tokens -> character offsets
        raw = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
        char_of_byte = np.cumsum((raw & 0xC0) != 0x80) - 1
        tok_char = char_of_byte[scores.byte_starts] if raw.size else np.zeros(0, dtype=np.int64)
        unit_of_tok = np.searchsorted(starts, tok_char, side="right") - 1
        cost = np.bincount(unit_of_tok, minlength=len(spans)).astype(np.int64)
        si = scores.self_info.astype(np.float64)
        total = np.bincount(unit_of_tok, weights=si, minlength=len(spans))
        score = total / np.maximum(cost, 1)
        zero = cost == 0
        if zero.any() and si.size:
            cover = np.clip(np.searchsorted(tok_char, starts[zero], side="right") - 1, 0, si.size - 1)
            score[zero] = si[cover]
        # hard: numbers, user-marked spans and `keep` strings; soft: identifiers, code, quotes, newlines
        hard_spans = force_spans(text, [k for k in self.force if k == "numbers"], keep=keep)
        if "marked" in self.force:
            hard_spans.extend(marked)
        soft_kinds = [k for k in self.force if k in ("identifiers", "code", "quotes")]
        forced = force_mask(len(text), hard_spans, starts, ends)
        preferred = force_mask(len(text), force_spans(text, soft_kinds), starts, ends)
        if self.strict_rate:  # the rate wins: numbers and marked spans only go first too
            preferred |= forced
            forced = np.zeros_like(forced)
        if self.keep_newlines:
            preferred |= np.fromiter(("\n" in text[s:e] for s, e in spans), dtype=bool, count=len(spans))
        return starts, ends, cost, score, forced, preferred

    def _scores(self, text: str, question: str | None) -> TokenScores:
        base = self.scorer.score(text)
        if not question:
            return base
        cond = self.scorer.score(text, context=_QUESTION_TEMPLATE.format(question=question))
        plain = base.self_info.astype(np.float64)
        drop = plain - cond.self_info.astype(np.float64)

        def z(a: FloatArray) -> FloatArray:
            sd = float(a.std())
            centered: FloatArray = a - a.mean()
            return centered / sd if sd > 1e-9 else centered

        mixed = z(plain) + self.question_weight * z(drop)
        return TokenScores(text, base.byte_starts, mixed.astype(np.float32))

    # ------------------------------------------------------------------ public
    def compress(
        self, text: str, *, rate: float = 0.5, question: str | None = None, keep: Sequence[str] = ()
    ) -> CompressionResult:
        """Prune ``text`` to about ``rate`` of its tokens.

        ``question`` turns on contrastive (question-aware) scoring; ``keep`` lists
        literal strings to keep wherever they occur; ``<keep>...</keep>`` in the text
        marks spans to keep (the tags are removed).
        """
        rate = check_rate(rate)
        if not isinstance(text, str):
            raise InvalidInputError(f"compress() needs a str, got {type(text).__name__}")
        t0 = time.perf_counter()
        clean, marked = strip_keep_tags(text)
        if self.strategy == "coarse-to-fine":
            out, used = self._coarse_to_fine(clean, rate, question, keep, marked)
            return CompressionResult(
                text=out,
                original=clean,
                original_tokens=self._count(clean),
                compressed_tokens=used,
                requested_rate=rate,
                method="ctxkit-coarse-to-fine" + ("+question" if question else ""),
                tokenizer=self.tokenizer.name if self.tokenizer is not None else self.scorer.name,
                seconds=time.perf_counter() - t0,
            )
        scores = self._scores(clean, question)
        starts, ends, cost, score, forced, preferred = self._units(scores, keep, marked)
        n_tokens = int(cost.sum())
        mask = select_units(cost, score, forced, rate * n_tokens, preferred)
        out = join_units(clean, starts[mask], ends[mask])
        before = self._count(clean) if self.tokenizer is not None else n_tokens
        return CompressionResult(
            text=out,
            original=clean,
            original_tokens=before,
            compressed_tokens=self._count(out),
            requested_rate=rate,
            method=self.method + ("+question" if question else ""),
            tokenizer=self.tokenizer.name if self.tokenizer is not None else self.scorer.name,
            forced_tokens=int(cost[forced | (preferred & mask)].sum()),
            seconds=time.perf_counter() - t0,
        )

    def compress_sections(
        self, sections: Sequence[Section | str], *, rate: float = 0.5, separator: str = "\n\n"
    ) -> PrunedSections:
        """Prune a prompt made of sections to ``rate`` overall, with one scoring pass.

        The budget controller gives fixed-rate sections their share and splits the rest
        among the others by ``weight`` x size; each section is then pruned to its target.
        """
        rate = check_rate(rate)
        secs = [s if isinstance(s, Section) else Section(text=s) for s in sections]
        if not secs:
            raise InvalidInputError("compress_sections() needs at least one section")
        t0 = time.perf_counter()
        cleaned = [strip_keep_tags(s.text) for s in secs]
        bounds: list[tuple[int, int]] = []
        marked: list[tuple[int, int]] = []
        pos = 0
        for i, (clean, spans) in enumerate(cleaned):
            bounds.append((pos, pos + len(clean)))
            marked.extend((a + pos, b + pos) for a, b in spans)
            pos += len(clean) + (len(separator) if i < len(cleaned) - 1 else 0)
        full = separator.join(c for c, _ in cleaned)
        scores = self.scorer.score(full)
        starts, ends, cost, score, forced, preferred = self._units(scores, (), marked)
        sec_of_unit = np.searchsorted(np.array([b[0] for b in bounds]), starts, side="right") - 1
        sizes = np.bincount(sec_of_unit, weights=cost, minlength=len(secs))
        targets = allocate_budget(
            [int(x) for x in sizes], [s.rate for s in secs], [s.weight for s in secs], rate * float(cost.sum())
        )
        mask = np.zeros(cost.shape, dtype=bool)
        results: list[CompressionResult] = []
        for i in range(len(secs)):
            idx = np.flatnonzero(sec_of_unit == i)
            sub = select_units(cost[idx], score[idx], forced[idx], float(targets[i]), preferred[idx])
            mask[idx[sub]] = True
            lo, hi = bounds[i]
            kept = join_units(full, starts[idx[sub]], ends[idx[sub]])
            original = full[lo:hi]
            results.append(
                CompressionResult(
                    text=kept,
                    original=original,
                    original_tokens=self._count(original),
                    compressed_tokens=self._count(kept),
                    requested_rate=max(float(targets[i]) / max(float(sizes[i]), 1.0), 1e-6),
                    method=self.method,
                    tokenizer=self.tokenizer.name if self.tokenizer is not None else self.scorer.name,
                    forced_tokens=int(cost[idx][forced[idx] | (preferred[idx] & sub)].sum()),
                )
            )
        text = separator.join(r.text for r in results if r.text)
        elapsed = time.perf_counter() - t0
        results = [r.model_copy(update={"seconds": elapsed}) for r in results]
        return PrunedSections(
            text=text,
            sections=results,
            original_tokens=self._count(full),
            compressed_tokens=self._count(text),
            requested_rate=rate,
        )

    def compress_chunks(
        self, chunks: Sequence[Chunk], *, question: str | None = None, rate: float = 0.5
    ) -> list[Chunk]:
        """Prune each retrieved chunk (question-aware when ``question`` is given); ids and scores are kept."""
        return compress_chunks(self, chunks, question=question, rate=rate)
