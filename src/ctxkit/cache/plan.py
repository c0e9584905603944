"""Plan cache breakpoints and TTLs from the provider's rules and the prices.

* **Anthropic** (:func:`plan_anthropic`): candidate breakpoints are the ends of the runs
  of one stability class in the stable prefix (end of the static part, end of the
  per-session part...). A candidate whose prefix is below the model's minimum
  cacheable length is never marked (with an estimating tokenizer the *low* estimate
  must clear the minimum). At most 4 are placed. Each gets the TTL — ``5m``, ``1h`` or
  none — that minimises the expected cost of the tokens it adds, given how often the
  prefix will be reused (:func:`choose_ttl`, from the write/read multipliers 1.25x /
  2x / 0.1x); 1-hour breakpoints are kept before 5-minute ones, as the API requires.
* **OpenAI** (:func:`plan_openai`): caching is automatic from 1024 tokens in 128-token
  steps; the plan sets ``prompt_cache_key`` (the static prefix's fingerprint unless you
  give one), picks ``prompt_cache_retention`` where a model offers 24 hours and the
  reuse gaps need it, and marks explicit ``prompt_cache_breakpoint`` blocks on models
  that accept them (GPT-5.6 family on).

* **llama.cpp** (:func:`plan_llamacpp`): no marks and no price; the plan states the stable
  prefix the server's KV cache can reuse.

Every plan states what it expects the reused prefix to cost with and without it over
the horizon you describe (``remaining_calls`` calls, ``interval_s`` seconds apart), and
:meth:`CachePlan.apply` renders the request keyword arguments with the marks in place.
:func:`plan_cache` and :meth:`CachePlan.apply` dispatch to the prompt's
:class:`~ctxkit.cache.provider.CacheProvider` (:mod:`ctxkit.cache.providers`).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pydantic import ConfigDict, Field

from ctxkit._model import CtxkitModel
from ctxkit.assembly.prompt import AssembledPrompt
from ctxkit.cache.diff import reusable_tokens
from ctxkit.cache.layout import Segment, Stability, StabilityMap, chat_counter, prefix_info, segments
from ctxkit.cache.prices import CachePrices, prices_for
from ctxkit.cache.provider import PLAN_OPTIONS, cache_provider, provider_for
from ctxkit.cache.rules import CacheRules, rules_for
from ctxkit.errors import InvalidInputError
from ctxkit.tokenizers.chat import ChatCounter

__all__ = [
    "Breakpoint",
    "CachePlan",
    "TtlChoice",
    "choose_ttl",
    "plan_anthropic",
    "plan_cache",
    "plan_llamacpp",
    "plan_openai",
]


class TtlChoice(CtxkitModel):
    """The cheapest way to hold ``tokens`` over a sequence of reuses."""

    model_config = ConfigDict(frozen=True)

    ttl: str | None = Field(description="the TTL to write with, or None when caching does not pay")
    costs: dict[str, float] = Field(description="USD per option ('none' = no caching) over all calls")
    calls: int

    @property
    def savings(self) -> float:
        return self.costs["none"] - self.costs[self.ttl or "none"]


def choose_ttl(tokens: int, gaps_s: Sequence[float], prices: CachePrices, rules: CacheRules) -> TtlChoice:
    """Pick the TTL that minimises the cost of ``tokens`` used now and again after each gap.

    An entry lives ``ttl`` seconds after its last use (a hit refreshes it). Per option the
    cost is: a write at the TTL's write price, then per later call a read if the gap is
    within the TTL, else a fresh write. ``none`` bills every call at the input price.
    Ties go to the shorter TTL, then to not caching.
    """
    if tokens < 0 or any(g < 0 for g in gaps_s):
        raise InvalidInputError("choose_ttl needs tokens >= 0 and non-negative gaps")
    per = tokens / 1_000_000
    calls = len(gaps_s) + 1
    costs: dict[str, float] = {"none": calls * prices.input * per}
    for ttl, life in sorted(rules.ttls_s.items(), key=lambda kv: kv[1]):
        write = prices.write_price(ttl)
        total = write
        for g in gaps_s:
            total += prices.cache_read if g <= life else write
        costs[ttl] = total * per
    best: str | None = None
    best_cost = costs["none"]
    for ttl, _life in sorted(rules.ttls_s.items(), key=lambda kv: kv[1]):
        if costs[ttl] < best_cost - 1e-15:
            best, best_cost = ttl, costs[ttl]
    return TtlChoice(ttl=best, costs=costs, calls=calls)


def _cheapest_ttl(choice: TtlChoice) -> str | None:
    options = {k: v for k, v in choice.costs.items() if k != "none"}
    return min(options, key=lambda k: options[k]) if options else None


class Breakpoint(CtxkitModel):
    """One cache mark: cache the request up to and including this segment."""

    model_config = ConfigDict(frozen=True)

    segment_index: int
    field: str = Field(description="'tools[3]' or 'messages[5]'")
    section: str
    prefix_tokens: int = Field(description="tokens cached up to here")
    new_tokens: int = Field(description="tokens added since the previous breakpoint")
    ttl: str
    expected_savings: float = Field(description="USD saved on the new tokens over the horizon")

    @classmethod
    def at(cls, seg: Segment, *, new_tokens: int, ttl: str, expected_savings: float = 0.0) -> Breakpoint:
        """A mark at the end of ``seg`` (it caches the request up to there)."""
        return cls(
            segment_index=seg.index,
            field=seg.field,
            section=seg.section,
            prefix_tokens=seg.end,
            new_tokens=new_tokens,
            ttl=ttl,
            expected_savings=expected_savings,
        )


class CachePlan(CtxkitModel):
    """Where to mark the cache, with which TTL, and what it is expected to save."""

    model_config = ConfigDict(frozen=True)

    provider: str
    model: str
    breakpoints: tuple[Breakpoint, ...] = ()
    prompt_cache_key: str | None = None
    retention: str | None = Field(default=None, description="OpenAI prompt_cache_retention to send, if any")
    cacheable_tokens: int = Field(description="prefix tokens the next call can read from the cache")
    horizon_calls: int
    expected_cost_without: float = Field(description="USD for the planned prefix over the horizon, uncached")
    expected_cost_with: float = Field(description="USD for the same tokens under this plan")
    notes: tuple[str, ...] = ()

    @property
    def expected_savings(self) -> float:
        return self.expected_cost_without - self.expected_cost_with

    def __str__(self) -> str:
        marks = ", ".join(f"{b.field}({b.section}, {b.prefix_tokens} tok, {b.ttl})" for b in self.breakpoints) or "none"
        key = f", prompt_cache_key={self.prompt_cache_key!r}" if self.prompt_cache_key else ""
        return (
            f"CachePlan[{self.provider} {self.model}] breakpoints: {marks}{key}; {self.cacheable_tokens} tokens "
            f"cacheable; over {self.horizon_calls} calls ${self.expected_cost_without:.6f} -> "
            f"${self.expected_cost_with:.6f} (saves ${self.expected_savings:.6f})"
            + ("".join(f"\n  note: {n}" for n in self.notes))
        )

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td><code>{html.escape(b.field)}</code></td><td>{html.escape(b.section)}</td><td>{b.prefix_tokens}</td>"
            f"<td>{b.new_tokens}</td><td>{b.ttl}</td><td>${b.expected_savings:.6f}</td></tr>"
            for b in self.breakpoints
        )
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in self.notes)
        return (
            f"<div><b>CachePlan</b> {html.escape(self.provider)} <code>{html.escape(self.model)}</code>: "
            f"{self.cacheable_tokens} cacheable tokens; ${self.expected_cost_without:.6f} → "
            f"${self.expected_cost_with:.6f} over {self.horizon_calls} calls"
            "<table><tr><th>at</th><th>section</th><th>prefix</th><th>new</th><th>ttl</th><th>saves</th></tr>"
            f"{rows}</table>" + (f"<ul>{notes}</ul>" if notes else "") + "</div>"
        )

    # ------------------------------------------------------------------ rendering
    def message_indices(self, prompt: AssembledPrompt) -> tuple[int, ...]:
        """Indices into ``prompt.messages`` of the messages that end a breakpoint (tool marks left out).

        For request objects that take breakpoints as message indices (``Request(cache=...)``).
        """
        segs = segments(prompt, provider=self.provider)
        return tuple(
            sorted(
                segs[b.segment_index].source_index for b in self.breakpoints if segs[b.segment_index].kind == "message"
            )
        )

    def apply(self, prompt: AssembledPrompt) -> dict[str, Any]:
        """Request keyword arguments for the provider with this plan's marks in place."""
        return cache_provider(self.provider).apply(self, prompt)


def _gap(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise InvalidInputError(f"{what} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


def _gaps(remaining_calls: int, interval_s: float | Sequence[float]) -> list[float]:
    if isinstance(remaining_calls, bool) or not isinstance(remaining_calls, int) or remaining_calls < 0:
        raise InvalidInputError(f"remaining_calls must be an int >= 0, got {remaining_calls!r}")
    if remaining_calls > 1_000_000:
        raise InvalidInputError(f"remaining_calls={remaining_calls} is beyond any cache's life; pass at most 1000000")
    if not isinstance(interval_s, Sequence) or isinstance(interval_s, str | bytes):
        return [_gap(interval_s, "interval_s")] * remaining_calls
    gaps = [_gap(g, "every gap of interval_s") for g in interval_s]
    if len(gaps) != remaining_calls:
        raise InvalidInputError(f"interval_s lists {len(gaps)} gaps for remaining_calls={remaining_calls}")
    return gaps


def _low_estimate(tokens: int, counter: ChatCounter) -> int:
    margin = counter.tokenizer.error_margin
    if counter.tokenizer.exact or margin <= 0:
        return tokens
    return math.floor(tokens * (1 - margin) / (1 + margin))


@dataclass(frozen=True)
class _Candidate:
    """A place a breakpoint may go: the last segment of a run of one stability class."""

    index: int
    stability: Stability


@dataclass(frozen=True)
class _Mark:
    """A placed breakpoint with the tokens it adds, their TTL options and the TTL it is written with."""

    index: int
    prefix: int
    new: int
    choice: TtlChoice
    ttl: str | None = None


def _stable_runs(segs: Sequence[Segment]) -> list[_Candidate]:
    """The last segment and class of each run of one class inside the stable prefix."""
    runs: list[_Candidate] = []
    for s in segs:
        if s.stability == Stability.TURN:
            break
        if runs and runs[-1].stability == s.stability:
            runs[-1] = _Candidate(s.index, s.stability)
        else:
            runs.append(_Candidate(s.index, s.stability))
    return runs


def _candidates(segs: Sequence[Segment], rules: CacheRules) -> list[_Candidate]:
    """Ends of the stable runs, plus a mark 20 blocks before the end of a long per-session tail
    (it keeps earlier writes within the lookback)."""
    candidates = _stable_runs(segs)
    if candidates and rules.lookback_blocks and candidates[-1].stability == Stability.SESSION:
        first_of_run = candidates[-2].index + 1 if len(candidates) > 1 else 0
        last = candidates[-1].index
        if last - first_of_run >= rules.lookback_blocks:
            candidates.insert(len(candidates) - 1, _Candidate(last - rules.lookback_blocks + 1, Stability.SESSION))
    return candidates


def _cacheable(
    candidates: list[_Candidate],
    segs: Sequence[Segment],
    counter: ChatCounter,
    rules: CacheRules,
    model: str,
    notes: list[str],
) -> list[_Candidate]:
    """The candidates whose prefix clears the model's minimum (the low estimate must clear it)."""
    placed: list[_Candidate] = []
    for c in candidates:
        prefix = segs[c.index].end
        low = _low_estimate(prefix, counter)
        if low < rules.min_cacheable_tokens:
            notes.append(
                f"no breakpoint at {segs[c.index].field} ({segs[c.index].section}): its prefix of ~{prefix} tokens "
                f"(low estimate {low}) is below {model}'s minimum of {rules.min_cacheable_tokens}"
            )
            continue
        placed.append(c)
    return placed


def _within_limit(
    placed: list[_Candidate], segs: Sequence[Segment], rules: CacheRules, notes: list[str]
) -> list[_Candidate]:
    """At most ``max_breakpoints``: the earliest ones and the last (longest prefix)."""
    if len(placed) <= rules.max_breakpoints:
        return placed
    keep = [*placed[: rules.max_breakpoints - 1], placed[-1]]
    for c in placed:
        if c not in keep:
            notes.append(f"dropped candidate {segs[c.index].field}: at most {rules.max_breakpoints} breakpoints")
    return keep


def _price_marks(
    placed: list[_Candidate],
    segs: Sequence[Segment],
    gaps: list[float],
    static_gaps: list[float],
    prices: CachePrices,
    rules: CacheRules,
) -> list[_Mark]:
    """Each mark's new tokens and their TTL options, at the reuse of its stability class."""
    marks: list[_Mark] = []
    prev_end = 0
    for c in placed:
        prefix = segs[c.index].end
        new = prefix - prev_end
        choice = choose_ttl(new, static_gaps if c.stability == Stability.STATIC else gaps, prices, rules)
        marks.append(_Mark(c.index, prefix, new, choice))
        prev_end = prefix
    return marks


def _order_ttls(
    marks: list[_Mark], segs: Sequence[Segment], rules: CacheRules, read_only: bool, notes: list[str]
) -> list[_Mark]:
    """Each mark's TTL, longer TTLs first as the API requires: an earlier TTL is lifted to the longest later one.

    ``read_only``: the last call of a prefix earlier calls may have cached; a mark is needed to read it.
    """
    longest_later: str | None = None
    ordered: list[_Mark] = []
    for m in reversed(marks):
        ttl = m.choice.ttl
        if ttl is None and read_only:
            ttl = _cheapest_ttl(m.choice)
        if ttl is None and longest_later is not None:
            ttl = longest_later  # the later mark caches these tokens anyway; marking here is free
        if ttl is not None and longest_later is not None and rules.ttls_s[longest_later] > rules.ttls_s[ttl]:
            notes.append(
                f"{segs[m.index].field}: TTL raised from {ttl} to {longest_later} (a longer TTL must come first)"
            )
            ttl = longest_later
        if ttl is not None and (longest_later is None or rules.ttls_s[ttl] > rules.ttls_s[longest_later]):
            longest_later = ttl
        ordered.append(replace(m, ttl=ttl))
    ordered.reverse()
    return ordered


def _breakpoints(marks: list[_Mark], segs: Sequence[Segment], notes: list[str]) -> tuple[Breakpoint, ...]:
    """The marks that carry a TTL, as breakpoints."""
    bps: list[Breakpoint] = []
    for m in marks:
        if m.ttl is None:
            notes.append(
                f"no breakpoint at {segs[m.index].field}: caching its {m.new} tokens does not pay at these gaps"
            )
            continue
        saves = m.choice.costs["none"] - m.choice.costs[m.ttl]
        bps.append(Breakpoint.at(segs[m.index], new_tokens=m.new, ttl=m.ttl, expected_savings=saves))
    return tuple(bps)


def _horizon_costs(marks: list[_Mark]) -> tuple[float, float]:
    """USD for the marked tokens over the horizon: uncached, and under the marks' TTLs."""
    without = with_plan = 0.0
    for m in marks:
        without += m.choice.costs["none"]
        with_plan += m.choice.costs[m.ttl or "none"]
    return without, with_plan


def plan_anthropic(
    prompt: AssembledPrompt,
    *,
    prices: CachePrices | None = None,
    rules: CacheRules | None = None,
    remaining_calls: int = 10,
    interval_s: float | Sequence[float] = 60.0,
    static_interval_s: float | Sequence[float] | None = None,
    counter: ChatCounter | None = None,
    stability: StabilityMap | None = None,
    may_be_cached: bool = True,
) -> CachePlan:
    """Place up to 4 ``cache_control`` breakpoints with per-breakpoint TTLs.

    ``remaining_calls`` and ``interval_s`` describe the expected reuse of the per-session
    part (the rest of the conversation); ``static_interval_s`` the reuse of the static part
    (calls from every session share it; defaults to ``interval_s``). A breakpoint is placed
    where caching its new tokens pays over that horizon; on the last call
    (``remaining_calls=0``) marks are still placed when ``may_be_cached`` (earlier calls
    may have cached the prefix, and only a mark makes the API read it).
    """
    rules = rules or rules_for(prompt.model)
    if rules.provider != "anthropic":
        raise InvalidInputError(f"plan_anthropic needs Anthropic rules; {prompt.model!r} uses {rules.provider}")
    prices = prices or prices_for(prompt.model)
    counter = counter or chat_counter(prompt.model)
    segs = segments(prompt, provider="anthropic", counter=counter, stability=stability)
    gaps = _gaps(remaining_calls, interval_s)
    static_gaps = gaps if static_interval_s is None else _gaps(remaining_calls, static_interval_s)
    notes: list[str] = []
    placed = _cacheable(_candidates(segs, rules), segs, counter, rules, prompt.model, notes)
    placed = _within_limit(placed, segs, rules, notes)
    marks = _price_marks(placed, segs, gaps, static_gaps, prices, rules)
    marks = _order_ttls(marks, segs, rules, remaining_calls == 0 and may_be_cached, notes)
    bps = _breakpoints(marks, segs, notes)
    without, with_plan = _horizon_costs(marks)
    if not counter.tokenizer.exact:
        notes.append("token counts are estimates (Claude's tokenizer is not public); minimums use the low estimate")
    return CachePlan(
        provider="anthropic",
        model=prompt.model,
        breakpoints=bps,
        cacheable_tokens=bps[-1].prefix_tokens if bps else 0,
        horizon_calls=remaining_calls + 1,
        expected_cost_without=without,
        expected_cost_with=with_plan,
        notes=tuple(notes),
    )


def plan_openai(
    prompt: AssembledPrompt,
    *,
    cache_key: str | None = None,
    prices: CachePrices | None = None,
    rules: CacheRules | None = None,
    remaining_calls: int = 10,
    interval_s: float | Sequence[float] = 60.0,
    counter: ChatCounter | None = None,
    stability: StabilityMap | None = None,
) -> CachePlan:
    """``prompt_cache_key``, retention, explicit breakpoints where supported, and the expected saving."""
    rules = rules or rules_for(prompt.model)
    if rules.provider != "openai":
        raise InvalidInputError(f"plan_openai needs OpenAI rules; {prompt.model!r} uses {rules.provider}")
    prices = prices or prices_for(prompt.model)
    counter = counter or chat_counter(prompt.model)
    info = prefix_info(prompt, provider="openai", counter=counter, stability=stability)
    segs = segments(prompt, provider="openai", counter=counter, stability=stability)
    gaps = _gaps(remaining_calls, interval_s)
    notes: list[str] = []
    key = cache_key or f"ctxkit-{info.static_fingerprint[:16]}"
    cacheable = reusable_tokens(info.tokens, rules)
    if info.tokens < rules.min_cacheable_tokens:
        notes.append(
            f"the stable prefix has {info.tokens} tokens, under OpenAI's {rules.min_cacheable_tokens}-token minimum: "
            "nothing will be cached"
        )
    elif rules.increment_tokens > 1 and info.tokens % rules.increment_tokens:
        notes.append(
            f"hits come in {rules.increment_tokens}-token steps: {info.tokens % rules.increment_tokens} of the "
            f"{info.tokens} stable tokens are billed uncached"
        )
    choice = choose_ttl(cacheable, gaps, prices, rules)
    retention = None
    if choice.ttl and choice.ttl != rules.default_ttl and choice.ttl == "24h":
        retention = "24h"
    bps: list[Breakpoint] = []
    if rules.explicit_breakpoints:
        prev = 0
        for c in _stable_runs(segs)[-(rules.max_breakpoints - 1) :]:
            seg = segs[c.index]
            if seg.kind != "message" or seg.end < rules.min_cacheable_tokens:
                continue
            bps.append(Breakpoint.at(seg, new_tokens=seg.end - prev, ttl=rules.default_ttl))
            prev = seg.end
    return CachePlan(
        provider="openai",
        model=prompt.model,
        breakpoints=tuple(bps),
        prompt_cache_key=key,
        retention=retention,
        cacheable_tokens=cacheable,
        horizon_calls=remaining_calls + 1,
        expected_cost_without=choice.costs["none"],
        expected_cost_with=choice.costs[choice.ttl or "none"],
        notes=tuple(notes),
    )


def plan_llamacpp(
    prompt: AssembledPrompt,
    *,
    remaining_calls: int = 10,
    counter: ChatCounter | None = None,
    stability: StabilityMap | None = None,
    **_ignored: Any,
) -> CachePlan:
    """A local llama.cpp model: no marks and no price; the stable prefix is what the KV cache can reuse."""
    counter = counter or chat_counter(prompt.model)
    info = prefix_info(prompt, provider="llamacpp", counter=counter, stability=stability)
    return CachePlan(
        provider="llamacpp",
        model=prompt.model,
        cacheable_tokens=info.tokens,
        horizon_calls=int(remaining_calls) + 1,
        expected_cost_without=0.0,
        expected_cost_with=0.0,
        notes=(
            "llama.cpp reuses the longest common prefix of the previous prompt's KV cache; "
            "send cache_prompt=true to a llama.cpp server",
        ),
    )


def _check_plan_options(kwargs: Mapping[str, Any]) -> None:
    unknown = sorted(set(kwargs) - PLAN_OPTIONS)
    if unknown:
        raise InvalidInputError(f"plan_cache got unknown options {unknown}; known: {sorted(PLAN_OPTIONS)}")
    for name, kind in (("prices", CachePrices), ("rules", CacheRules), ("counter", ChatCounter)):
        value = kwargs.get(name)
        if value is not None and not isinstance(value, kind):
            raise InvalidInputError(f"plan_cache's {name} must be a {kind.__name__}, not {type(value).__name__}")
    stability = kwargs.get("stability")
    if stability is not None and not isinstance(stability, Mapping):
        raise InvalidInputError(f"stability must map sections to Stability classes, not {type(stability).__name__}")
    if "cache_key" in kwargs and kwargs["cache_key"] is not None and not isinstance(kwargs["cache_key"], str):
        raise InvalidInputError(f"cache_key must be a str, not {type(kwargs['cache_key']).__name__}")
    _gaps(kwargs.get("remaining_calls", 10), kwargs.get("interval_s", 60.0))
    if kwargs.get("static_interval_s") is not None:
        _gaps(kwargs.get("remaining_calls", 10), kwargs["static_interval_s"])


def plan_cache(prompt: AssembledPrompt, **kwargs: Any) -> CachePlan:
    """Plan for the prompt's provider (Anthropic, OpenAI, a local llama.cpp model, or one you registered)."""
    if not isinstance(prompt, AssembledPrompt):
        raise InvalidInputError(
            f"plan_cache needs an AssembledPrompt (from ctxkit.assemble), not {type(prompt).__name__}"
        )
    _check_plan_options(kwargs)
    provider = provider_for(prompt.model)
    misplaced = sorted(k for k in kwargs if k not in provider.plan_options)
    if misplaced:
        raise InvalidInputError(
            f"plan_cache for {prompt.model!r} ({provider.name}) does not take {misplaced}; "
            "cache_key is an OpenAI option, static_interval_s and may_be_cached are Anthropic options"
        )
    return provider.plan(prompt, **kwargs)
