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

from pydantic import ConfigDict, Field

from ctxkit._model import CtxkitModel
from ctxkit.assembly.prompt import AssembledPrompt
from ctxkit.cache.diff import _locate
from ctxkit.cache.layout import Segment, StabilityMap, chat_counter, segments
from ctxkit.cache.plan import CachePlan
from ctxkit.cache.prices import CachePrices
from ctxkit.cache.provider import cache_provider, provider_for
from ctxkit.cache.rules import CacheRules, rules_for
from ctxkit.errors import InvalidInputError
from ctxkit.tokenizers.chat import ChatCounter

__all__ = ["CallCost", "LayoutComparison", "Planner", "Replay", "SimulationReport", "compare", "simulate"]

#: ``planner(prompt, call_index, remaining_calls, gap_to_next_s) -> CachePlan | None`` (Anthropic marks)
Planner = Callable[[AssembledPrompt, int, int, float], CachePlan | None]


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


@dataclass(frozen=True)
class Replay:
    """One session to replay under a provider: its prompts and their segments, the rules and prices
    to bill them with, the gaps between calls and each call's output tokens."""

    prompts: tuple[AssembledPrompt, ...]
    requests: tuple[_Request, ...]
    rules: CacheRules
    prices: CachePrices
    gaps: tuple[float, ...]
    outputs: tuple[int, ...]
    planner: Planner | str | None
    counter: ChatCounter
    stability: StabilityMap | None

    def bill(
        self,
        i: int,
        *,
        cached: int,
        written: int = 0,
        ttl: str = "",
        written_cost: float | None = None,
        breakpoints: int = 0,
    ) -> CallCost:
        """Call ``i`` with ``cached`` tokens read and ``written`` written (at ``ttl``, or costing ``written_cost``)."""
        req = self.requests[i]
        uncached = req.total - cached - written
        out = self.outputs[i]
        if written_cost is None:
            cost = self.prices.cost(uncached=uncached, read=cached, written=written, ttl=ttl, output=out)
        else:
            cost = self.prices.cost(uncached=uncached, read=cached, output=out) + written_cost
        return CallCost(
            call=i,
            input_tokens=req.total,
            cached_tokens=cached,
            written_tokens=written,
            uncached_tokens=uncached,
            output_tokens=out,
            cost=cost,
            breakpoints=breakpoints,
        )


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

    ``provider`` (a registered :class:`~ctxkit.cache.provider.CacheProvider` name) defaults to
    the model's; ``gaps_s`` are the seconds between consecutive calls; ``planner`` (Anthropic only)
    makes each call's breakpoints: ``"ctxkit"`` (:func:`~ctxkit.cache.plan.plan_anthropic`
    with the remaining calls and gaps), ``"system"`` (one mark at the end of the system
    prompt, a common hand-written setup), ``None`` (no marks) or a callable.
    """
    if not requests:
        raise InvalidInputError("simulate needs at least one request")
    model = requests[0].model
    cache = cache_provider(provider) if provider else provider_for(model)
    rules = rules or rules_for(model)
    prices = prices or cache.prices(model)
    counter = counter or chat_counter(model)
    gaps = _gap_list(len(requests), gaps_s)
    outs = [int(output_tokens)] * len(requests) if isinstance(output_tokens, int) else [int(o) for o in output_tokens]
    if len(outs) != len(requests):
        raise InvalidInputError("output_tokens must be one int or one per request")
    reqs = []
    for r in requests:
        segs = segments(r, provider=cache.name, counter=counter, stability=stability)
        reqs.append(_Request(segs, _chain(segs), sum(s.tokens for s in segs) + counter.base_tokens))
    session = Replay(tuple(requests), tuple(reqs), rules, prices, tuple(gaps), tuple(outs), planner, counter, stability)
    return SimulationReport(name=name, provider=cache.name, model=model, calls=tuple(cache.replay(session)))


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
