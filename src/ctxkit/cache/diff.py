"""Explain a cache miss: where two consecutive requests diverge, and what it cost.

:func:`explain_miss` compares the segments of two requests (see
:mod:`ctxkit.cache.layout`) and reports the first section, field and token at which
they differ, how many tokens they still share, how many of the previous request's
cacheable tokens the new one could not reuse under the provider's rules, and — given
prices — what that cost::

    report = explain_miss(turn_3, turn_4, prices=prices_for("claude-sonnet-4-5"))
    print(report)   # miss at system (static) messages[0].content token 17: '2026-11-24' -> '2026-11-25' ...
"""

from __future__ import annotations

import html
import json
from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict, Field

from ctxkit._model import CtxkitModel
from ctxkit.cache.layout import Segment, Stability, StabilityMap, chat_counter, prefix_info, segments
from ctxkit.cache.prices import CachePrices
from ctxkit.cache.provider import cache_provider, provider_name
from ctxkit.cache.rules import CacheRules, rules_for
from ctxkit.errors import UnknownNameError
from ctxkit.tokenizers.chat import ChatCounter

if TYPE_CHECKING:
    from ctxkit.assembly.prompt import AssembledPrompt

__all__ = ["MissReport", "explain_miss", "reusable_tokens"]


class MissReport(CtxkitModel):
    """Where two requests diverge and how many cacheable tokens that cost."""

    model_config = ConfigDict(frozen=True)

    diverged: bool = Field(description="False when the previous request's stable prefix is intact in the new one")
    provider: str
    segment_index: int | None = Field(default=None, description="first differing segment, in provider order")
    section: str | None = None
    stability: Stability | None = None
    field: str | None = Field(default=None, description="e.g. 'messages[0].content', 'tools[1].function.parameters'")
    token_position: int = Field(description="index of the first differing token from the start of the request")
    previous_text: str = Field(default="", description="the previous request's text at the divergence")
    current_text: str = Field(default="", description="the new request's text at the divergence")
    common_tokens: int = Field(description="leading tokens the two requests share")
    cacheable_tokens: int = Field(description="the previous request's stable-prefix tokens")
    reusable_tokens: int = Field(description="tokens the provider can serve from its cache for the new request")
    lost_tokens: int = Field(description="cacheable tokens of the previous request that the new one re-processes")
    extra_cost: float | None = Field(default=None, description="USD the lost tokens cost over cache reads")

    def __str__(self) -> str:
        if not self.diverged:
            return (
                f"no miss: the previous stable prefix ({self.cacheable_tokens} tokens) is intact; "
                f"{self.reusable_tokens} tokens reusable under {self.provider} rules"
            )
        cost = f", ${self.extra_cost:.6f} extra" if self.extra_cost is not None else ""
        return (
            f"miss at {self.section} ({self.stability}) {self.field}, token {self.token_position}: "
            f"{self.previous_text!r} -> {self.current_text!r}; {self.common_tokens} tokens shared, "
            f"{self.reusable_tokens} reusable, {self.lost_tokens} of {self.cacheable_tokens} cacheable tokens "
            f"lost{cost}"
        )

    def _repr_html_(self) -> str:
        return f"<div><b>cache miss report</b>: {html.escape(str(self))}</div>"


def reusable_tokens(common: int, rules: CacheRules, *, boundary: int | None = None) -> int:
    """Tokens a provider serves from its cache when a request shares ``common`` leading tokens with a cached one.

    ``boundary`` is the end of the last whole shared segment, for providers that cache
    at block boundaries only (Anthropic: ``CacheProvider.block_boundaries``).
    """
    if cache_provider(rules.provider).block_boundaries:
        common = common if boundary is None else min(common, boundary)
    if common < rules.min_cacheable_tokens:
        return 0
    return common - common % rules.increment_tokens


def _first_diff_path(a: Any, b: Any, path: str = "") -> tuple[str, Any, Any]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(b) + [k for k in a if k not in b]:
            if key not in a or key not in b or a[key] != b[key]:
                return _first_diff_path(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
        if list(a) != list(b):
            return (f"{path} (key order)" if path else "(key order)", list(a), list(b))
        return path, a, b
    if isinstance(a, list) and isinstance(b, list):
        for i in range(max(len(a), len(b))):
            x = a[i] if i < len(a) else None
            y = b[i] if i < len(b) else None
            if x != y:
                return _first_diff_path(x, y, f"{path}[{i}]")
        return path, a, b
    return path, a, b


def explain_miss(
    previous: AssembledPrompt,
    current: AssembledPrompt,
    *,
    provider: str | None = None,
    counter: ChatCounter | None = None,
    rules: CacheRules | None = None,
    prices: CachePrices | None = None,
    stability: StabilityMap | None = None,
) -> MissReport:
    """Compare two consecutive requests; report the first divergence and the cacheable tokens it cost."""
    provider = provider or provider_name(current.model)
    counter = counter or chat_counter(current.model)
    if rules is None:
        try:
            rules = rules_for(current.model)
        except UnknownNameError:
            rules = rules_for("gpt-4o")
    segs_a = segments(previous, provider=provider, counter=counter, stability=stability)
    segs_b = segments(current, provider=provider, counter=counter, stability=stability)
    cacheable = prefix_info(previous, provider=provider, counter=counter, stability=stability).tokens
    i = 0
    while i < len(segs_a) and i < len(segs_b) and segs_a[i].data == segs_b[i].data:
        i += 1
    stable_a = sum(1 for _ in _leading_stable(segs_a))
    if i >= stable_a:  # the previous stable prefix survives whole
        shared = sum(s.tokens for s in segs_b[:i])
        reuse = reusable_tokens(cacheable, rules, boundary=cacheable)
        return MissReport(
            diverged=False,
            provider=provider,
            token_position=shared,
            common_tokens=shared,
            cacheable_tokens=cacheable,
            reusable_tokens=reuse,
            lost_tokens=0,
            extra_cost=0.0 if prices else None,
        )
    seg_a = segs_a[i]
    seg_b = segs_b[i] if i < len(segs_b) else None
    boundary = seg_a.start
    field, inner, prev_text, cur_text = _locate(seg_a, seg_b, counter)
    common = boundary + inner
    reuse = reusable_tokens(min(common, cacheable), rules, boundary=boundary)
    ideal = reusable_tokens(cacheable, rules, boundary=cacheable)
    lost = max(ideal - reuse, 0)
    extra = None
    if prices is not None:
        extra = lost * (prices.input - prices.cache_read) / 1_000_000
    return MissReport(
        diverged=True,
        provider=provider,
        segment_index=i,
        section=seg_a.section,
        stability=seg_a.stability,
        field=field,
        token_position=common,
        previous_text=prev_text,
        current_text=cur_text,
        common_tokens=common,
        cacheable_tokens=cacheable,
        reusable_tokens=reuse,
        lost_tokens=lost,
        extra_cost=extra,
    )


def _leading_stable(segs: tuple[Segment, ...]) -> list[Segment]:
    out = []
    for s in segs:
        if s.stability == Stability.TURN:
            break
        out.append(s)
    return out


def _locate(seg_a: Segment, seg_b: Segment | None, counter: ChatCounter) -> tuple[str, int, str, str]:
    """(field path, tokens shared inside the segment, previous excerpt, current excerpt)."""
    base = seg_a.field
    if seg_b is None:
        return base, 0, seg_a.data[:60], "(missing)"
    a = json.loads(seg_a.data)
    b = json.loads(seg_b.data)
    path, x, y = _first_diff_path(a, b)
    field = f"{base}.{path}" if path else base
    if isinstance(x, str) and isinstance(y, str):
        tok = counter.tokenizer
        ta, tb = tok.encode(x), tok.encode(y)
        k = 0
        while k < len(ta) and k < len(tb) and ta[k] == tb[k]:
            k += 1
        lead = 0
        if path == "content" and seg_a.kind == "message":
            lead = max(seg_a.tokens - tok.count(x) - 1, 0)  # role and format tokens before the content
        return field, lead + k, tok.decode(ta[k : k + 12]), tok.decode(tb[k : k + 12])
    return field, 0, json.dumps(x, ensure_ascii=False)[:60], json.dumps(y, ensure_ascii=False)[:60]
