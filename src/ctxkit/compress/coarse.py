"""Coarse to fine: whole sentences first, token pruning only where the budget says, protected spans whole.

The default path of :meth:`ctxkit.compress.TokenPruner.compress`:

1. **structure**: paragraphs (blank lines) with an optional heading line (a short first line
   without sentence punctuation, e.g. a title), split into sentences;
2. **score** every sentence with the shared :class:`~ctxkit.compress.SentenceScorer` (the one
   evidence packing uses): against the question, or without one by centrality plus salience
   (numbers, names, decisions, open questions);
3. **coarse**: keep the best sentences whole, best first, while they fit; a kept passage keeps its heading;
4. **fine**: what is left of the budget is shared among the next sentences by relevance
   (``exp((score - best) / temperature)`` x size, water-filling) and only there are tokens
   pruned, by the language model's (question-contrastive) self-information; units that overlap a
   protected span (:func:`~ctxkit.compress.spans.protected_spans`) form one group kept whole or dropped whole;
5. **contract**: the output is recounted with the result's tokenizer and groups are dropped or
   added until the achieved rate is at most the asked rate and within ``tolerance`` of it (for
   texts of about 100 tokens or more; in a shorter one a protected group can be larger than the
   tolerance, and the rate is then never over but may land further below).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ctxkit.compress.relevance import ScoredPassage, SentenceScorer
from ctxkit.compress.sentences import split_sentences
from ctxkit.compress.spans import protected_spans, span_groups

__all__ = ["CoarseToFine", "Plan", "parse_structure"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
_PARA = re.compile(r"\n[^\S\n]*\n\s*")
_UNIT = re.compile(r"[^\S\n]*(?:\w+|[^\w\s]+)")


@dataclass
class _Sent:
    start: int
    end: int
    passage: int
    text: str
    cost: int = 0
    score: float = 0.0
    units: list[tuple[int, int]] = field(default_factory=list)  # absolute char spans of the units
    groups: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


@dataclass
class _Para:
    heading: tuple[int, int] | None
    title: str
    sents: list[int]


@dataclass(frozen=True)
class Plan:
    """What was kept: whole sentences, partly kept sentences (their kept units), headings, and the text."""

    text: str
    whole: tuple[int, ...]
    partial: tuple[int, ...]
    tokens: int
    sentences: int


def parse_structure(text: str) -> tuple[list[_Para], list[_Sent]]:
    """Paragraphs (with an optional heading line) and their sentences, as absolute character spans."""
    paras: list[_Para] = []
    sents: list[_Sent] = []
    pos = 0
    bounds: list[tuple[int, int]] = []
    for m in _PARA.finditer(text):
        bounds.append((pos, m.start()))
        pos = m.end()
    bounds.append((pos, len(text)))
    for a, b in bounds:
        block = text[a:b]
        if not block.strip():
            continue
        heading: tuple[int, int] | None = None
        title = ""
        body_start = a
        nl = block.find("\n")
        if nl > 0:
            first = block[:nl].strip()
            if first and len(first) <= 100 and len(first.split()) <= 12 and first[-1] not in ".!?:;,":
                lead = len(block) - len(block.lstrip())
                heading = (a + lead, a + nl)
                title = first
                body_start = a + nl + 1
        idx: list[int] = []
        for s, e in split_sentences(text[body_start:b]):
            piece = text[body_start + s : body_start + e]
            lead = len(piece) - len(piece.lstrip())
            trail = len(piece) - len(piece.rstrip())
            s0, e0 = body_start + s + lead, body_start + e - trail
            if e0 > s0:
                idx.append(len(sents))
                sents.append(_Sent(s0, e0, len(paras), text[s0:e0]))
        if heading is not None and not idx:  # a lone short line: a sentence, not a heading
            sents.append(_Sent(heading[0], heading[1], len(paras), text[heading[0] : heading[1]]))
            idx.append(len(sents) - 1)
            heading, title = None, ""
        paras.append(_Para(heading, title, idx))
    return paras, sents


class CoarseToFine:
    """The coarse-to-fine planner; :class:`~ctxkit.compress.TokenPruner` supplies counting and token scores.

    ``count`` counts tokens of a text (the result's tokenizer); ``token_scores(texts, question)``
    returns, for each text, ``(unit spans, unit scores, unit token costs)`` of its pruning units.
    """

    def __init__(
        self,
        scorer: SentenceScorer,
        count: Callable[[str], int],
        token_scores: Callable[[list[str], str | None], list[tuple[list[tuple[int, int]], FloatArray, IntArray]]],
        *,
        temperature: float = 0.1,
        min_share: float = 0.3,
        tolerance: float = 0.02,
        protect: bool = True,
        skip_misfits: bool = False,
    ) -> None:
        self.scorer = scorer
        self.count = count
        self.token_scores = token_scores
        self.temperature = temperature
        self.min_share = min_share
        self.tolerance = tolerance
        self.protect = protect
        self.skip_misfits = skip_misfits

    # ------------------------------------------------------------------ render
    @staticmethod
    def _render(
        text: str,
        paras: list[_Para],
        sents: list[_Sent],
        whole: npt.NDArray[np.bool_],
        unit_keep: dict[int, npt.NDArray[np.bool_]],
        forced_units: dict[int, npt.NDArray[np.bool_]],
        *,
        headings: bool = True,
    ) -> str:
        out: list[str] = []
        for p in paras:
            pieces: list[str] = []
            for i in p.sents:
                if whole[i]:
                    pieces.append(sents[i].text)
                    continue
                keep = unit_keep.get(i)
                forced = forced_units.get(i)
                mask = keep if keep is not None else None
                if forced is not None:
                    mask = forced if mask is None else (mask | forced)
                if mask is None or not mask.any():
                    continue
                words: list[str] = []
                prev_end = -1
                for (s, e), k in zip(sents[i].units, mask.tolist(), strict=True):
                    if not k:
                        continue
                    piece = text[s:e]
                    if words and s != prev_end and piece[:1].isalnum() and words[-1][-1:].isalnum():
                        words.append(" ")
                    words.append(piece)
                    prev_end = e
                frag = "".join(words).strip()
                if frag:
                    pieces.append(frag)
            if not pieces:
                continue
            body = " ".join(pieces)
            if p.heading is not None and headings:
                body = text[p.heading[0] : p.heading[1]] + "\n" + body
            out.append(body)
        return "\n\n".join(out)

    # ------------------------------------------------------------------ plan
    def plan(self, text: str, rate: float, question: str | None, *, hard: Sequence[tuple[int, int]] = ()) -> Plan:
        """Compress ``text`` to at most ``rate`` of its tokens (within ``tolerance``); ``hard`` spans are kept."""
        paras, sents = parse_structure(text)
        total = self.count(text)
        target = math.floor(rate * total + 1e-9)
        lower = max(math.ceil((rate - self.tolerance) * total - 1e-9), 0)
        if not sents or total == 0:
            return Plan(text.strip() if rate >= 1.0 else "", (), (), 0 if rate < 1.0 else total, 0)
        passages = [ScoredPassage(p.title, [sents[i].text for i in p.sents], True) for p in paras]
        scores, _ = self.scorer.score(question, passages)
        n = len(sents)
        flat = [i for p in paras for i in p.sents]
        for k, i in enumerate(flat):
            sents[i].score = float(scores[k])
        costs = np.asarray([max(self.count(s.text), 1) for s in sents], dtype=np.int64)
        for i, s in enumerate(sents):
            s.cost = int(costs[i])
        head_cost = np.asarray(
            [self.count(text[p.heading[0] : p.heading[1]]) + 1 if p.heading else 0 for p in paras], dtype=np.int64
        )
        sc = np.asarray([s.score for s in sents], dtype=np.float64)
        order = np.lexsort((np.arange(n), -sc))

        # coarse: the best sentences whole while they fit (a passage's heading is paid when it opens)
        whole = np.zeros(n, dtype=bool)
        opened = np.zeros(len(paras), dtype=bool)
        room = float(target)
        for i in order.tolist():
            p = sents[i].passage
            eff = costs[i] + 1 + (0 if opened[p] else head_cost[p])
            if eff <= room:
                whole[i] = True
                opened[p] = True
                room -= float(eff)
            elif not self.skip_misfits:
                break

        # hard spans (<keep> and keep=) are kept wherever they are
        hard_spans = sorted(hard)
        # fine: share the rest among the next sentences by relevance, prune tokens there
        rest = [i for i in order.tolist() if not whole[i]]
        best = float(sc.max())
        value = np.exp((sc - best) / self.temperature)
        alloc = np.zeros(n, dtype=np.float64)
        if rest and room > 0:
            r_idx = np.asarray(rest, dtype=np.int64)
            left = room
            # water-filling over candidates by value x cost, capped at their cost
            w = value[r_idx] * costs[r_idx]
            free = np.ones(r_idx.size, dtype=bool)
            for _ in range(20):
                if left <= 1e-9 or not free.any():
                    break
                share = left * w * free / max(float((w * free).sum()), 1e-12)
                cap = costs[r_idx] - alloc[r_idx]
                take = np.minimum(share, cap) * free
                alloc[r_idx] += take
                left -= float(take.sum())
                free &= alloc[r_idx] < costs[r_idx] - 1e-9
            # too small a share of a sentence reads as noise: give it to the better ones
            small = alloc < self.min_share * costs
            small &= ~whole
            if small.any():
                spare = float(alloc[small].sum())
                alloc[small] = 0.0
                for i in rest:
                    if spare <= 0:
                        break
                    if alloc[i] > 0:
                        extra = min(spare, costs[i] - alloc[i])
                        alloc[i] += extra
                        spare -= extra
                if spare > 0:  # nobody got a share: the best remaining sentence takes what is left
                    for i in rest:
                        if alloc[i] == 0 and spare > 0:
                            alloc[i] = min(spare, float(costs[i]))
                            spare -= alloc[i]
        need = [i for i in range(n) if not whole[i]]
        unit_scores: dict[int, FloatArray] = {}
        unit_cost: dict[int, IntArray] = {}
        unit_keep: dict[int, npt.NDArray[np.bool_]] = {}
        forced_units: dict[int, npt.NDArray[np.bool_]] = {}
        prot = protected_spans(text) if self.protect else []

        def score_units(todo: list[int]) -> None:
            results = self.token_scores([sents[i].text for i in todo], question) if todo else []
            for i, (spans, usc, ucost) in zip(todo, results, strict=True):
                base = sents[i].start
                u = [(base + a, base + b) for a, b in spans]
                sents[i].units = u
                unit_scores[i] = usc
                unit_cost[i] = np.maximum(ucost, 0)
                starts = np.asarray([a for a, _ in u], dtype=np.int64)
                ends = np.asarray([b for _, b in u], dtype=np.int64)
                g = span_groups(prot, starts, ends) if self.protect else np.arange(len(u), dtype=np.int64)
                sents[i].groups = g
                gcost = np.bincount(g, weights=unit_cost[i], minlength=int(g.max()) + 1 if g.size else 0)
                gscore = np.bincount(g, weights=usc, minlength=gcost.size) / np.maximum(
                    np.bincount(g, minlength=gcost.size), 1
                )
                if hard_spans:
                    f_units = np.asarray([_in_spans(a, b, hard_spans) for a, b in u], dtype=bool)
                    f_groups = np.zeros(gcost.size, dtype=bool)
                    f_groups[g[f_units]] = True
                    forced_units[i] = f_groups[g]
                keep_g = np.zeros(gcost.size, dtype=bool)
                if alloc[i] > 0:
                    present = np.flatnonzero(gcost > 0)
                    ordg = present[np.lexsort((present, -gscore[present]))]
                    cum = np.cumsum(gcost[ordg])
                    keep_g[ordg[cum <= alloc[i]]] = True
                unit_keep[i] = keep_g[g]

        if need:
            # one token-scoring pass over the sentences that may be pruned or filled from
            cand = [i for i in need if alloc[i] > 0]
            extra = [i for i in order.tolist() if not whole[i] and alloc[i] == 0][: max(3, len(cand))]
            todo = cand + [i for i in extra if i not in cand]
            todo += [i for i in need if i not in todo and hard_spans and _overlaps(sents[i], hard_spans)]
            score_units(todo)

        heads = True

        def render() -> str:
            return self._render(text, paras, sents, whole, unit_keep, forced_units, headings=heads)

        out = render()
        used = self.count(out)
        # contract: never over the target, then fill to within tolerance below it; a heading that
        # does not fit a tiny budget goes before the contract does
        for with_heads in (True, False):
            heads = with_heads
            out = render()
            used = self.count(out)
            for _ in range(200):
                if used <= target:
                    break
                if not self._drop(used - target, sents, sc, whole, unit_keep, unit_scores, unit_cost):
                    break
                out = render()
                used = self.count(out)
            if used < lower:
                score_units([i for i in range(n) if not whole[i] and i not in unit_scores])
                for i, grp in self._additions(sents, sc, whole, unit_keep, unit_scores, order):
                    before = unit_keep[i]
                    unit_keep[i] = before | (sents[i].groups == grp)
                    trial = render()
                    c = self.count(trial)
                    if c > target:
                        unit_keep[i] = before
                        continue
                    out, used = trial, c
                    if used >= lower:
                        break
            if lower <= used <= target or not any(p.heading for p in paras):
                break
        return Plan(
            out,
            tuple(int(i) for i in np.flatnonzero(whole)),
            tuple(sorted(i for i, k in unit_keep.items() if k.any())),
            used,
            n,
        )

    @staticmethod
    def _drop(
        excess: int,
        sents: list[_Sent],
        sc: FloatArray,
        whole: npt.NDArray[np.bool_],
        unit_keep: dict[int, npt.NDArray[np.bool_]],
        unit_scores: dict[int, FloatArray],
        unit_cost: dict[int, IntArray],
    ) -> bool:
        """Drop about ``excess`` tokens: the weakest kept groups of partly kept sentences, else a weak whole one."""
        cands: list[tuple[float, float, int, int, int]] = []  # (sentence score, group score, sent, group, cost)
        for i, keep in unit_keep.items():
            if whole[i] or not keep.any():
                continue
            g = sents[i].groups
            for grp in np.unique(g[keep]).tolist():
                sel = g == grp
                cands.append((sc[i], float(unit_scores[i][sel].mean()), i, grp, int(unit_cost[i][sel].sum())))
        if cands:
            cands.sort()
            removed = 0
            for _, _, i, grp, c in cands:
                unit_keep[i] = unit_keep[i] & (sents[i].groups != grp)
                removed += c
                if removed >= max(excess, 1):
                    break
            return True
        kept = np.flatnonzero(whole)
        if not kept.size:
            return False
        worst = int(kept[np.argmin(sc[kept])])
        whole[worst] = False
        if worst in unit_keep:  # it becomes partly kept: all its units, trimmed next round
            unit_keep[worst] = np.ones(len(sents[worst].units), dtype=bool)
        return True

    @staticmethod
    def _additions(
        sents: list[_Sent],
        sc: FloatArray,
        whole: npt.NDArray[np.bool_],
        unit_keep: dict[int, npt.NDArray[np.bool_]],
        unit_scores: dict[int, FloatArray],
        order: IntArray,
    ) -> list[tuple[int, int]]:
        """Groups to add when under the tolerance: best not-whole sentences first, best groups first."""
        out: list[tuple[int, int]] = []
        for i in order.tolist():
            if whole[i] or i not in unit_keep:
                continue
            g = sents[i].groups
            free = np.unique(g[~unit_keep[i]])
            if not free.size:
                continue
            gs = np.asarray([float(unit_scores[i][g == grp].mean()) for grp in free.tolist()])
            out.extend((i, int(grp)) for grp in free[np.argsort(-gs, kind="stable")].tolist())
        return out


def _in_spans(a: int, b: int, spans: Sequence[tuple[int, int]]) -> bool:
    return any(s < b and a < e for s, e in spans)


def _overlaps(s: _Sent, spans: Sequence[tuple[int, int]]) -> bool:
    return _in_spans(s.start, s.end, spans)
