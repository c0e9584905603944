"""Replay a session of requests under a provider's caching rules and prices.

:func:`simulate` walks the requests in order, keeps the provider's cache state (entries
with their TTL, refreshed on every hit) and reports per call the prompt tokens read from
the cache, written to it, and processed uncached, and what the call's input cost.
:func:`compare` runs two layouts of the same session side by side (a notebook shows a
table; ``str()`` a text one).

Provider models:

* ``openai`` — automatic: every request of at least 1024 tokens is cached; a new request
  reads the longest prefix it shares with a live entry, rounded down to 128 tokens.
  Writes cost the input price (GPT-5.6 and later: 1.25x, at exact breakpoint boundaries).
* ``anthropic`` — explicit: each call's :class:`~ctxkit.cache.plan.CachePlan` marks
  breakpoints; at each one the API looks for a live entry ending at that block or up to
  19 blocks before it (the 20-block lookback); the longest hit is read at 0.1x, the
  tokens from there to each breakpoint are written at that breakpoint's TTL price, and
  a prefix under the model's minimum is neither read nor written.
* ``llamacpp`` — one KV cache holding the previous prompt: the longest common prefix is reused.

Segments stand for blocks (one per message or tool), so a hit inside a message is
counted at the message boundary for Anthropic, and token-exactly for OpenAI and llama.cpp.
"""

from __future__ import annotations

import hashlib
import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import ConfigDict, Field

from ctxkit._model import CtxkitModel
from ctxkit.cache.diff import _locate, reusable_tokens
from ctxkit.cache.layout import Segment, StabilityMap, _provider_of, chat_counter, segments
from ctxkit.cache.plan import CachePlan, plan_anthropic
from ctxkit.cache.prices import CachePrices, prices_for
from ctxkit.cache.rules import CacheRules, rules_for
from ctxkit.errors import InvalidInputError
from ctxkit.tokenizers.chat import ChatCounter

if TYPE_CHECKING:
    from ctxkit.assembly.prompt import AssembledPrompt

__all__ = ["CallCost", "LayoutComparison", "Planner", "SimulationReport", "compare", "simulate"]

#: ``planner(prompt, call_index, remaining_calls, gap_to_next_s) -> CachePlan | None`` (Anthropic marks)
Planner = Callable[["AssembledPrompt", int, int, float], "CachePlan | None"]


class CallCost(CtxkitModel):
    """Tokens and cost of one simulated call (input buckets are disjoint and add up to ``input_tokens``)."""

    model_config = ConfigDict(frozen=True)

    call: int
    input_tokens: int
    cached_tokens: int = Field(description="read from the cache")
    written_tokens: int = Field(description="written to the cache")
    uncached_tokens: int = Field(description="processed at the plain input price")
    output_tokens: int = 0
    cost: float = Field(description="USD for the call (input buckets + output)")
    breakpoints: int = 0


class SimulationReport(CtxkitModel):
    """A session replayed under one provider's rules."""

    model_config = ConfigDict(frozen=True)

    name: str
    provider: str
    model: str
    calls: tuple[CallCost, ...]

    @property
    def total_cost(self) -> float:
        return sum(c.cost for c in self.calls)

    @property
    def input_tokens(self) -> int:
        return sum(c.input_tokens for c in self.calls)

    @property
    def cached_tokens(self) -> int:
        return sum(c.cached_tokens for c in self.calls)

    @property
    def written_tokens(self) -> int:
        return sum(c.written_tokens for c in self.calls)

    @property
    def cached_share(self) -> float:
        """Share of prompt tokens read from the cache, from the second call on."""
        later = self.calls[1:]
        total = sum(c.input_tokens for c in later)
        return sum(c.cached_tokens for c in later) / total if total else 0.0

    def __str__(self) -> str:
        head = f"{'call':>4} {'input':>7} {'cached':>7} {'written':>7} {'uncached':>8} {'cost $':>10}"
        rows = [
            f"{c.call:>4} {c.input_tokens:>7} {c.cached_tokens:>7} {c.written_tokens:>7} {c.uncached_tokens:>8} "
            f"{c.cost:>10.6f}"
            for c in self.calls
        ]
        total = (
            f"{'all':>4} {self.input_tokens:>7} {self.cached_tokens:>7} {self.written_tokens:>7} "
            f"{sum(c.uncached_tokens for c in self.calls):>8} {self.total_cost:>10.6f}"
        )
        return "\n".join([f"{self.name} ({self.provider} {self.model})", head, *rows, total])

    def _repr_html_(self) -> str:
        return LayoutComparison(a=self, b=None)._repr_html_()


class LayoutComparison(CtxkitModel):
    """Two layouts of one session, simulated under the same rules and prices."""

    model_config = ConfigDict(frozen=True)

    a: SimulationReport
    b: SimulationReport | None

    @property
    def cost_ratio(self) -> float:
        """``b`` cost / ``a`` cost (how many times more ``b`` costs)."""
        if self.b is None:
            return 1.0
        return self.b.total_cost / self.a.total_cost if self.a.total_cost else float("inf")

    def __str__(self) -> str:
        parts = [str(self.a)]
        if self.b is not None:
            parts += ["", str(self.b), "", f"{self.b.name} / {self.a.name} cost: {self.cost_ratio:.2f}x"]
        return "\n".join(parts)

    def _repr_html_(self) -> str:
        reports = [r for r in (self.a, self.b) if r is not None]
        head = (
            "<tr><th rowspan=2>call</th>"
            + "".join(f"<th colspan=4>{html.escape(r.name)} ({html.escape(r.provider)})</th>" for r in reports)
            + "</tr><tr>"
            + "<th>cached</th><th>written</th><th>uncached</th><th>cost $</th>" * len(reports)
            + "</tr>"
        )
        n = max(len(r.calls) for r in reports)
        rows = []
        for i in range(n):
            cells = "".join(
                f"<td>{r.calls[i].cached_tokens}</td><td>{r.calls[i].written_tokens}</td>"
                f"<td>{r.calls[i].uncached_tokens}</td><td>{r.calls[i].cost:.6f}</td>"
                if i < len(r.calls)
                else "<td></td>" * 4
                for r in reports
            )
            rows.append(f"<tr><td>{i}</td>{cells}</tr>")
        totals = "".join(
            f"<td><b>{r.cached_tokens}</b></td><td><b>{r.written_tokens}</b></td>"
            f"<td><b>{sum(c.uncached_tokens for c in r.calls)}</b></td><td><b>{r.total_cost:.6f}</b></td>"
            for r in reports
        )
        ratio = (
            f"<p>{html.escape(self.b.name)} costs {self.cost_ratio:.2f}x {html.escape(self.a.name)}; cached share "
            f"{self.a.cached_share:.0%} vs {self.b.cached_share:.0%}</p>"
            if self.b is not None
            else ""
        )
        return (
            "<div><b>cache simulation</b>"
            f"<table>{head}{''.join(rows)}<tr><td><b>total</b></td>{totals}</tr></table>{ratio}</div>"
        )


# ---------------------------------------------------------------------- engine
@dataclass
class _Entry:
    key: str
    tokens: int
    last_used: float
    ttl_s: float


@dataclass
class _Request:
    segs: tuple[Segment, ...]
    chain: list[str]  # chain[j] = hash of segments[0..j]
    total: int


def _chain(segs: Sequence[Segment]) -> list[str]:
    out: list[str] = []
    h = hashlib.sha256(b"ctxkit-sim")
    for s in segs:
        h.update(s.data.encode("utf-8"))
        h.update(b"\n")
        out.append(h.copy().hexdigest())
    return out


def _common(a: _Request, b: _Request, counter: ChatCounter) -> tuple[int, int]:
    """(token-level common prefix, end of the last whole common segment) of two requests."""
    i = 0
    n = min(len(a.segs), len(b.segs))
    while i < n and a.chain[i] == b.chain[i]:
        i += 1
    boundary = b.segs[i - 1].end if i else 0
    if i >= len(a.segs) or i >= len(b.segs):
        return boundary, boundary
    _, inner, _, _ = _locate(a.segs[i], b.segs[i], counter)
    inner = min(inner, a.segs[i].tokens - 1, b.segs[i].tokens - 1)
    return boundary + max(inner, 0), boundary


def _gap_list(n: int, gaps_s: float | Sequence[float]) -> list[float]:
    if isinstance(gaps_s, int | float):
        return [float(gaps_s)] * max(n - 1, 0)
    gaps = [float(g) for g in gaps_s]
    if len(gaps) != max(n - 1, 0):
        raise InvalidInputError(f"gaps_s lists {len(gaps)} gaps for {n} calls; give one per pair of calls")
    return gaps


def simulate(
    requests: Sequence[AssembledPrompt],
    *,
    name: str = "layout",
    provider: str | None = None,
    rules: CacheRules | None = None,
    prices: CachePrices | None = None,
    gaps_s: float | Sequence[float] = 30.0,
    output_tokens: int | Sequence[int] = 0,
    planner: Planner | str | None = "ctxkit",
    counter: ChatCounter | None = None,
    stability: StabilityMap | None = None,
) -> SimulationReport:
    """Replay ``requests`` (one session, in order) and bill each call.

    ``gaps_s`` are the seconds between consecutive calls; ``planner`` (Anthropic only)
    makes each call's breakpoints: ``"ctxkit"`` (:func:`~ctxkit.cache.plan.plan_anthropic`
    with the remaining calls and gaps), ``"system"`` (one mark at the end of the system
    prompt, a common hand-written setup), ``None`` (no marks) or a callable.
    """
    if not requests:
        raise InvalidInputError("simulate needs at least one request")
    model = requests[0].model
    provider = provider or _provider_of(model)
    rules = rules or rules_for(model)
    if prices is None:
        prices = CachePrices(input=0.0, cache_read=0.0) if provider == "llamacpp" else prices_for(model)
    counter = counter or chat_counter(model)
    gaps = _gap_list(len(requests), gaps_s)
    outs = [int(output_tokens)] * len(requests) if isinstance(output_tokens, int) else [int(o) for o in output_tokens]
    if len(outs) != len(requests):
        raise InvalidInputError("output_tokens must be one int or one per request")
    reqs = []
    for r in requests:
        segs = segments(r, provider=provider, counter=counter, stability=stability)
        reqs.append(_Request(segs, _chain(segs), sum(s.tokens for s in segs) + counter.base_tokens))
    if provider == "anthropic":
        calls = _simulate_anthropic(requests, reqs, rules, prices, gaps, outs, planner, counter, stability)
    elif provider == "llamacpp":
        calls = _simulate_llamacpp(reqs, prices, outs, counter)
    else:
        calls = _simulate_openai(reqs, rules, prices, gaps, outs, counter)
    return SimulationReport(name=name, provider=provider, model=model, calls=tuple(calls))


def _simulate_openai(
    reqs: list[_Request],
    rules: CacheRules,
    prices: CachePrices,
    gaps: list[float],
    outs: list[int],
    counter: ChatCounter,
) -> list[CallCost]:
    ttl = rules.default_ttl
    life = rules.ttl_seconds(ttl)
    now = 0.0
    live: list[tuple[_Request, float]] = []  # (request, last used)
    calls: list[CallCost] = []
    for i, req in enumerate(reqs):
        if i:
            now += gaps[i - 1]
        live = [(r, t) for r, t in live if now - t <= life]
        cached = 0
        for j, (r, _t) in enumerate(live):
            common, boundary = _common(r, req, counter)
            got = reusable_tokens(common, rules, boundary=boundary)
            if rules.explicit_breakpoints:  # exact match at a breakpoint boundary, no rounding
                got = boundary if boundary >= rules.min_cacheable_tokens else 0
            if got > cached:
                cached = got
            if got:
                live[j] = (r, now)
        storable = reusable_tokens(req.total, rules, boundary=req.segs[-1].end if req.segs else 0)
        written = max(storable - cached, 0)
        uncached = req.total - cached - written
        if storable:
            live.append((req, now))
        cost = prices.cost(uncached=uncached, read=cached, written=written, ttl=ttl, output=outs[i])
        calls.append(
            CallCost(
                call=i,
                input_tokens=req.total,
                cached_tokens=cached,
                written_tokens=written,
                uncached_tokens=uncached,
                output_tokens=outs[i],
                cost=cost,
            )
        )
    return calls


def _simulate_llamacpp(
    reqs: list[_Request], prices: CachePrices, outs: list[int], counter: ChatCounter
) -> list[CallCost]:
    calls: list[CallCost] = []
    prev: _Request | None = None
    for i, req in enumerate(reqs):
        cached = _common(prev, req, counter)[0] if prev is not None else 0
        cached = min(cached, req.total - 1) if req.total else 0
        uncached = req.total - cached
        cost = prices.cost(uncached=uncached, read=cached, output=outs[i])
        calls.append(
            CallCost(
                call=i,
                input_tokens=req.total,
                cached_tokens=cached,
                written_tokens=0,
                uncached_tokens=uncached,
                output_tokens=outs[i],
                cost=cost,
            )
        )
        prev = req
    return calls


def _system_planner(rules: CacheRules) -> Planner:
    from ctxkit.cache.plan import Breakpoint

    def plan(prompt: AssembledPrompt, i: int, remaining: int, gap: float) -> CachePlan | None:
        segs = segments(prompt, provider="anthropic")
        sys_segs = [s for s in segs if s.kind == "message" and s.role in ("system", "developer")]
        if not sys_segs:
            return None
        s = sys_segs[0]
        return CachePlan(
            provider="anthropic",
            model=prompt.model,
            cacheable_tokens=s.end,
            horizon_calls=remaining + 1,
            expected_cost_without=0.0,
            expected_cost_with=0.0,
            breakpoints=(
                Breakpoint(
                    segment_index=s.index,
                    field=s.field,
                    section=s.section,
                    prefix_tokens=s.end,
                    new_tokens=s.end,
                    ttl=rules.default_ttl,
                    expected_savings=0.0,
                ),
            ),
        )

    return plan


def _simulate_anthropic(
    prompts: Sequence[AssembledPrompt],
    reqs: list[_Request],
    rules: CacheRules,
    prices: CachePrices,
    gaps: list[float],
    outs: list[int],
    planner: Planner | str | None,
    counter: ChatCounter,
    stability: StabilityMap | None,
) -> list[CallCost]:
    if planner == "ctxkit":

        def make(prompt: AssembledPrompt, i: int, remaining: int, gap: float) -> CachePlan | None:
            return plan_anthropic(
                prompt,
                prices=prices,
                rules=rules,
                remaining_calls=remaining,
                interval_s=gaps[i:],
                counter=counter,
                stability=stability,
                may_be_cached=i > 0,
            )

        plan_fn: Planner | None = make
    elif planner == "system":
        plan_fn = _system_planner(rules)
    elif planner is None or callable(planner):
        plan_fn = planner
    else:
        raise InvalidInputError(f"planner must be 'ctxkit', 'system', None or a callable, not {planner!r}")
    lookback = rules.lookback_blocks or 10**9
    entries: dict[str, _Entry] = {}
    now = 0.0
    calls: list[CallCost] = []
    for i, (prompt, req) in enumerate(zip(prompts, reqs, strict=True)):
        if i:
            now += gaps[i - 1]
        entries = {k: e for k, e in entries.items() if now - e.last_used <= e.ttl_s}
        remaining = len(reqs) - i - 1
        plan = plan_fn(prompt, i, remaining, gaps[i] if i < len(gaps) else 0.0) if plan_fn else None
        bps = sorted(plan.breakpoints, key=lambda b: b.segment_index) if plan else []
        if len(bps) > rules.max_breakpoints:
            raise InvalidInputError(
                f"a plan has {len(bps)} breakpoints; {rules.provider} accepts {rules.max_breakpoints}"
            )
        # read: the longest live entry ending at a breakpoint or within the lookback before one
        read_idx = -1
        for b in bps:
            for j in range(b.segment_index, max(b.segment_index - lookback, -1), -1):
                e = entries.get(req.chain[j])
                if e is not None and req.segs[j].end >= rules.min_cacheable_tokens:
                    if j > read_idx:
                        read_idx = j
                    break
        cached = req.segs[read_idx].end if read_idx >= 0 else 0
        if read_idx >= 0:
            entries[req.chain[read_idx]].last_used = now
        written = 0
        cost_written = 0.0
        prev_end = cached
        for b in bps:
            end = req.segs[b.segment_index].end
            if end < rules.min_cacheable_tokens or b.segment_index <= read_idx:
                if b.segment_index <= read_idx and req.chain[b.segment_index] in entries:
                    entries[req.chain[b.segment_index]].last_used = now
                continue
            new = max(end - prev_end, 0)
            written += new
            cost_written += prices.cost(written=new, ttl=b.ttl)
            prev_end = max(prev_end, end)
            key = req.chain[b.segment_index]
            entries[key] = _Entry(key, end, now, rules.ttl_seconds(b.ttl))
        uncached = req.total - cached - written
        cost = prices.cost(uncached=uncached, read=cached, output=outs[i]) + cost_written
        calls.append(
            CallCost(
                call=i,
                input_tokens=req.total,
                cached_tokens=cached,
                written_tokens=written,
                uncached_tokens=uncached,
                output_tokens=outs[i],
                cost=cost,
                breakpoints=len(bps),
            )
        )
    return calls


def compare(
    a: Sequence[AssembledPrompt],
    b: Sequence[AssembledPrompt],
    *,
    names: tuple[str, str] = ("ctxkit", "naive"),
    planners: tuple[Planner | str | None, Planner | str | None] | None = None,
    **kwargs: object,
) -> LayoutComparison:
    """Simulate two layouts of one session under the same rules and prices; ``b``'s cost over ``a``'s is ``cost_ratio``.

    ``planners`` gives each layout its Anthropic planner (default: ctxkit's for both).
    """
    pa, pb = planners or ("ctxkit", "ctxkit")
    ra = simulate(a, name=names[0], planner=pa, **kwargs)  # type: ignore[arg-type]
    rb = simulate(b, name=names[1], planner=pb, **kwargs)  # type: ignore[arg-type]
    return LayoutComparison(a=ra, b=rb)
