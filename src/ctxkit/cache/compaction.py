"""Decide whether compacting the history now is worth breaking the cached prefix.

Compacting (summarising or dropping old turns) makes every later prompt shorter, but it
rewrites the prefix from the first changed token on: what was a cheap cache read becomes
a cache write (or plain input) once, and only later calls read the shorter prefix. With
reads at 0.1x, a long cached history is cheap to keep, so compaction pays only when
enough turns remain (or the history is large against what it compacts to).

:func:`decide_compaction` prices both futures turn by turn under the provider's rules::

    keep:     turn k reads  S + H + a·(k-1)          writes a
    compact:  turn 1 reads  S                        writes C + a
              turn k reads  S + C + a·(k-1)          writes a

where ``S`` is the cached part before the rewrite, ``H`` the rewritten part, ``C`` what
it compacts to and ``a`` the tokens each turn adds to the stable prefix. A prefix under
the model's minimum is neither read nor written (plain input). Per-turn content is the
same under both and left out.

History-compression policies ask before rewriting through :class:`CacheAwareCompaction`
(``gate.allow(prompt, compacted_tokens=...)``), or any object with the same method
(:class:`CompactionGate`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from pydantic import ConfigDict, Field

from ctxkit._model import CtxkitModel
from ctxkit.cache.layout import Stability, StabilityMap, chat_counter, segments
from ctxkit.cache.prices import CachePrices, prices_for
from ctxkit.cache.rules import CacheRules, rules_for
from ctxkit.errors import InvalidInputError
from ctxkit.tokenizers.chat import ChatCounter

if TYPE_CHECKING:
    from ctxkit.assembly.prompt import AssembledPrompt

__all__ = ["CacheAwareCompaction", "CompactionDecision", "CompactionGate", "decide_compaction"]


class CompactionDecision(CtxkitModel):
    """Whether to compact now, with the priced alternatives."""

    model_config = ConfigDict(frozen=True)

    compact: bool
    cost_keep: float = Field(description="USD for the stable prefix over the remaining turns, history kept")
    cost_compact: float = Field(description="USD for the same turns after compacting now (compaction cost included)")
    breakeven_turns: int | None = Field(
        description="fewest remaining turns for which compacting now pays (None: never within 10,000)"
    )
    remaining_turns: int
    reason: str

    @property
    def savings(self) -> float:
        """USD saved by compacting now (negative: compacting costs more)."""
        return self.cost_keep - self.cost_compact

    def __bool__(self) -> bool:
        return self.compact

    def __str__(self) -> str:
        return self.reason


def _turn_cost(readable: int, prefix: int, rules: CacheRules, prices: CachePrices, ttl: str) -> float:
    """Cost of a call whose stable prefix has ``prefix`` tokens, of which ``readable`` are in the cache."""
    if prefix < rules.min_cacheable_tokens:
        return prices.cost(uncached=prefix)
    read = readable if readable >= rules.min_cacheable_tokens else 0
    read -= read % rules.increment_tokens
    return prices.cost(read=read, written=prefix - read, ttl=ttl)


def _per_turn(
    k: int, kept: int, history: int, compacted: int, per_turn: int, rules: CacheRules, prices: CachePrices, ttl: str
) -> tuple[float, float]:
    """(keep, compact) cost of remaining turn ``k`` (1-based)."""
    prev_keep = kept + history + per_turn * (k - 1)
    keep = _turn_cost(prev_keep, prev_keep + per_turn, rules, prices, ttl)
    if k == 1:
        return keep, _turn_cost(kept, kept + compacted + per_turn, rules, prices, ttl)
    prev = kept + compacted + per_turn * (k - 1)
    return keep, _turn_cost(prev, prev + per_turn, rules, prices, ttl)


def decide_compaction(
    *,
    kept_tokens: int,
    history_tokens: int,
    compacted_tokens: int,
    remaining_turns: int,
    tokens_per_turn: int = 0,
    prices: CachePrices,
    rules: CacheRules,
    ttl: str | None = None,
    compaction_cost: float = 0.0,
) -> CompactionDecision:
    """Price keeping the cached history against compacting it now, over ``remaining_turns``.

    ``kept_tokens``: cached prefix before the first token compaction rewrites (system,
    tools, ...); ``history_tokens``: the cached tokens it rewrites; ``compacted_tokens``:
    their size after; ``tokens_per_turn``: what each turn adds to the stable prefix;
    ``compaction_cost``: USD of producing the summary (an LLM call), if any.
    """
    for name, v in (
        ("kept_tokens", kept_tokens),
        ("history_tokens", history_tokens),
        ("compacted_tokens", compacted_tokens),
        ("remaining_turns", remaining_turns),
        ("tokens_per_turn", tokens_per_turn),
    ):
        if v < 0:
            raise InvalidInputError(f"{name} must be >= 0, got {v}")
    if compaction_cost < 0:
        raise InvalidInputError("compaction_cost must be >= 0")
    ttl = ttl or rules.default_ttl
    keep = compact = 0.0
    cum_keep, cum_compact = 0.0, compaction_cost
    breakeven = None
    horizon = max(remaining_turns, 10_000)
    for k in range(1, horizon + 1):
        dk, dc = _per_turn(k, kept_tokens, history_tokens, compacted_tokens, tokens_per_turn, rules, prices, ttl)
        cum_keep += dk
        cum_compact += dc
        if k == remaining_turns:
            keep, compact = cum_keep, cum_compact
        if breakeven is None and cum_compact < cum_keep:
            breakeven = k
        if k >= remaining_turns and (breakeven is not None or (k > 1 and dc >= dk)):
            break  # answered, or compacting no longer gains per turn and never catches up
    if remaining_turns == 0:
        keep, compact = 0.0, 0.0
    do = compact < keep
    saved = keep - compact
    reason = (
        f"{'compact now' if do else 'keep the cached history'}: over {remaining_turns} turns keeping costs "
        f"${keep:.6f}, compacting {history_tokens}->{compacted_tokens} tokens costs ${compact:.6f} "
        f"({'saves' if saved >= 0 else 'loses'} ${abs(saved):.6f})"
        + (f"; compacting pays from {breakeven} remaining turns" if breakeven else "; compacting does not pay")
    )
    return CompactionDecision(
        compact=do,
        cost_keep=keep,
        cost_compact=compact,
        breakeven_turns=breakeven,
        remaining_turns=remaining_turns,
        reason=reason,
    )


@runtime_checkable
class CompactionGate(Protocol):
    """What a history-compression policy asks before it rewrites a cached prefix."""

    def allow(self, prompt: AssembledPrompt, *, compacted_tokens: int) -> bool: ...


class CacheAwareCompaction:
    """A :class:`CompactionGate` that prices the rewrite against the cached prefix.

    ``rewrite_sections`` are the sections compaction rewrites (default memory and history);
    the cached prefix before the first of them is kept. ``remaining_turns`` and
    ``tokens_per_turn`` are the caller's expectation for the rest of the session.
    """

    def __init__(
        self,
        model: str,
        *,
        prices: CachePrices | None = None,
        rules: CacheRules | None = None,
        remaining_turns: int = 10,
        tokens_per_turn: int = 300,
        compaction_cost: float = 0.0,
        rewrite_sections: tuple[str, ...] = ("memory", "history"),
        counter: ChatCounter | None = None,
        stability: StabilityMap | None = None,
    ) -> None:
        self.model = model
        self.prices = prices or prices_for(model)
        self.rules = rules or rules_for(model)
        self.remaining_turns = remaining_turns
        self.tokens_per_turn = tokens_per_turn
        self.compaction_cost = compaction_cost
        self.rewrite_sections = rewrite_sections
        self._counter = counter
        self.stability = stability

    def __repr__(self) -> str:
        return (
            f"CacheAwareCompaction(model={self.model!r}, remaining_turns={self.remaining_turns}, "
            f"tokens_per_turn={self.tokens_per_turn})"
        )

    def decide(
        self, prompt: AssembledPrompt, *, compacted_tokens: int, remaining_turns: int | None = None
    ) -> CompactionDecision:
        """Price compacting ``prompt``'s rewritable sections down to ``compacted_tokens``."""
        counter = self._counter or chat_counter(prompt.model)
        segs = segments(prompt, counter=counter, stability=self.stability)
        kept = history = 0
        rewriting = False
        for s in segs:
            if s.stability == Stability.TURN:
                break
            if s.section in self.rewrite_sections:
                rewriting = True
            if rewriting:
                history += s.tokens
            else:
                kept += s.tokens
        return decide_compaction(
            kept_tokens=kept,
            history_tokens=history,
            compacted_tokens=compacted_tokens,
            remaining_turns=self.remaining_turns if remaining_turns is None else remaining_turns,
            tokens_per_turn=self.tokens_per_turn,
            prices=self.prices,
            rules=self.rules,
            compaction_cost=self.compaction_cost,
        )

    def allow(self, prompt: AssembledPrompt, *, compacted_tokens: int) -> bool:
        """True when compacting now saves money over the expected remaining turns."""
        return self.decide(prompt, compacted_tokens=compacted_tokens).compact
