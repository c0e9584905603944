"""The built-in cache providers: Anthropic, OpenAI and a local llama.cpp / vLLM-style server.

Each is a :class:`~ctxkit.cache.provider.CacheProvider` registered under its name when
:mod:`ctxkit.cache` is imported; :func:`~ctxkit.cache.plan.plan_cache`,
:meth:`~ctxkit.cache.plan.CachePlan.apply`, :func:`~ctxkit.cache.layout.segments` and
:func:`~ctxkit.cache.simulate.simulate` dispatch to them by name.

* :class:`AnthropicCache` — explicit ``cache_control`` breakpoints; system blocks render
  before the turns; a session replays with the 20-block lookback and per-breakpoint TTLs.
* :class:`OpenAICache` — automatic prefix caching, ``prompt_cache_key`` / retention and, on
  models that take them, explicit ``prompt_cache_breakpoint`` blocks.
* :class:`LlamaCppCache` — one KV cache holding the previous prompt; no marks, no price.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

from ctxkit.assembly.prompt import AssembledPrompt
from ctxkit.cache.diff import reusable_tokens
from ctxkit.cache.layout import segments
from ctxkit.cache.plan import Breakpoint, CachePlan, plan_anthropic, plan_llamacpp, plan_openai
from ctxkit.cache.prices import CachePrices
from ctxkit.cache.provider import PLAN_OPTIONS, CacheProvider, register_cache_provider
from ctxkit.cache.rules import CacheRules
from ctxkit.cache.simulate import CallCost, Planner, Replay, _common, _Entry, _Request
from ctxkit.errors import InvalidInputError
from ctxkit.messages import ToolSpec

__all__ = ["AnthropicCache", "LlamaCppCache", "OpenAICache"]


def _mark(block: dict[str, Any], ttl: str) -> None:
    block["cache_control"] = {"type": "ephemeral"} if ttl == "5m" else {"type": "ephemeral", "ttl": ttl}


def _blocks_of(role: str, content: str, n_calls: int) -> int:
    """Content blocks the Anthropic renderer makes of one non-system message."""
    if role == "assistant":
        return max((1 if content else 0) + n_calls, 1)
    return 1


class AnthropicCache(CacheProvider):
    """Anthropic: up to 4 ``cache_control`` breakpoints per request, 5-minute or 1-hour TTLs."""

    name: ClassVar[str] = "anthropic"
    system_first: ClassVar[bool] = True
    block_boundaries: ClassVar[bool] = True
    plan_options: ClassVar[frozenset[str]] = PLAN_OPTIONS - {"cache_key"}

    def tool_wire(self, tool: ToolSpec) -> dict[str, Any]:
        return tool.to_anthropic()

    def plan(self, prompt: AssembledPrompt, **options: Any) -> CachePlan:
        return plan_anthropic(prompt, **options)

    # ------------------------------------------------------------------ marks
    def apply(self, plan: CachePlan, prompt: AssembledPrompt) -> dict[str, Any]:
        kwargs = copy.deepcopy(prompt.to_anthropic())
        marks = {b.segment_index: b.ttl for b in plan.breakpoints}
        by_source: dict[tuple[str, int], int] = {
            (s.kind, s.source_index): s.index for s in segments(prompt, provider=self.name)
        }
        for i, tool in enumerate(kwargs.get("tools") or []):
            seg = by_source[("tool", i)]
            if seg in marks:
                _mark(tool, marks[seg])
        system_blocks: list[dict[str, Any]] = []
        for k, m in enumerate(prompt.messages):
            if m.role in ("system", "developer") and m.content:
                block: dict[str, Any] = {"type": "text", "text": m.content}
                if by_source[("message", k)] in marks:
                    _mark(block, marks[by_source[("message", k)]])
                system_blocks.append(block)
        if system_blocks:
            kwargs["system"] = system_blocks
        self._mark_turns(kwargs, prompt, marks, by_source)
        return kwargs

    @staticmethod
    def _mark_turns(
        kwargs: dict[str, Any],
        prompt: AssembledPrompt,
        marks: dict[int, str],
        by_source: dict[tuple[str, int], int],
    ) -> None:
        """Mark the last content block of each marked turn, walking the blocks in message order."""
        flat: list[dict[str, Any]] = [b for turn in kwargs["messages"] for b in turn["content"]]
        turns = [(k, m) for k, m in enumerate(prompt.messages) if m.role not in ("system", "developer")]
        expected = sum(_blocks_of(m.role, m.content, len(m.tool_calls)) for _, m in turns)
        offset = len(flat) - expected  # a placeholder turn the renderer may have inserted first
        if offset < 0:
            raise InvalidInputError("could not map the Anthropic content blocks back to messages; please report this")
        pos = offset
        for k, m in turns:
            n = _blocks_of(m.role, m.content, len(m.tool_calls))
            seg = by_source[("message", k)]
            if seg in marks:
                _mark(flat[pos + n - 1], marks[seg])
            pos += n

    # ------------------------------------------------------------------ replay
    def replay(self, session: Replay) -> list[CallCost]:
        rules = session.rules
        plan_fn = self._planner(session)
        entries: dict[str, _Entry] = {}
        now = 0.0
        calls: list[CallCost] = []
        n = len(session.requests)
        for i, (prompt, req) in enumerate(zip(session.prompts, session.requests, strict=True)):
            if i:
                now += session.gaps[i - 1]
            entries = {k: e for k, e in entries.items() if now - e.last_used <= e.ttl_s}
            gap = session.gaps[i] if i < len(session.gaps) else 0.0
            plan = plan_fn(prompt, i, n - i - 1, gap) if plan_fn else None
            bps = sorted(plan.breakpoints, key=lambda b: b.segment_index) if plan else []
            if len(bps) > rules.max_breakpoints:
                raise InvalidInputError(
                    f"a plan has {len(bps)} breakpoints; {rules.provider} accepts {rules.max_breakpoints}"
                )
            read_idx = self._read(req, bps, entries, rules, now)
            cached = req.segs[read_idx].end if read_idx >= 0 else 0
            written, cost_written = self._write(req, bps, entries, session, now, read_idx, cached)
            calls.append(
                session.bill(i, cached=cached, written=written, written_cost=cost_written, breakpoints=len(bps))
            )
        return calls

    def _planner(self, session: Replay) -> Planner | None:
        planner = session.planner
        if planner == "ctxkit":

            def make(prompt: AssembledPrompt, i: int, remaining: int, gap: float) -> CachePlan | None:
                return plan_anthropic(
                    prompt,
                    prices=session.prices,
                    rules=session.rules,
                    remaining_calls=remaining,
                    interval_s=session.gaps[i:],
                    counter=session.counter,
                    stability=session.stability,
                    may_be_cached=i > 0,
                )

            return make
        if planner == "system":
            return self._system_planner(session.rules)
        if planner is None or callable(planner):
            return planner
        raise InvalidInputError(f"planner must be 'ctxkit', 'system', None or a callable, not {planner!r}")

    def _system_planner(self, rules: CacheRules) -> Planner:
        """One mark at the end of the system prompt, with the default TTL (a common hand-written setup)."""

        def plan(prompt: AssembledPrompt, i: int, remaining: int, gap: float) -> CachePlan | None:
            segs = segments(prompt, provider=self.name)
            sys_segs = [s for s in segs if s.kind == "message" and s.role in ("system", "developer")]
            if not sys_segs:
                return None
            s = sys_segs[0]
            return CachePlan(
                provider=self.name,
                model=prompt.model,
                cacheable_tokens=s.end,
                horizon_calls=remaining + 1,
                expected_cost_without=0.0,
                expected_cost_with=0.0,
                breakpoints=(Breakpoint.at(s, new_tokens=s.end, ttl=rules.default_ttl),),
            )

        return plan

    @staticmethod
    def _read(req: _Request, bps: list[Breakpoint], entries: dict[str, _Entry], rules: CacheRules, now: float) -> int:
        """Index of the longest live entry ending at a breakpoint or within the lookback before one (-1: none)."""
        lookback = rules.lookback_blocks or 10**9
        read_idx = -1
        for b in bps:
            for j in range(b.segment_index, max(b.segment_index - lookback, -1), -1):
                e = entries.get(req.chain[j])
                if e is not None and req.segs[j].end >= rules.min_cacheable_tokens:
                    if j > read_idx:
                        read_idx = j
                    break
        if read_idx >= 0:
            entries[req.chain[read_idx]].last_used = now
        return read_idx

    @staticmethod
    def _write(
        req: _Request,
        bps: list[Breakpoint],
        entries: dict[str, _Entry],
        session: Replay,
        now: float,
        read_idx: int,
        cached: int,
    ) -> tuple[int, float]:
        """Tokens written from the read prefix to each later breakpoint, at its TTL's price; refreshes read marks."""
        rules = session.rules
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
            cost_written += session.prices.cost(written=new, ttl=b.ttl)
            prev_end = max(prev_end, end)
            key = req.chain[b.segment_index]
            entries[key] = _Entry(key, end, now, rules.ttl_seconds(b.ttl))
        return written, cost_written


class OpenAICache(CacheProvider):
    """OpenAI: automatic prefix caching from 1024 tokens (128-token steps), a cache key and retention."""

    name: ClassVar[str] = "openai"
    plan_options: ClassVar[frozenset[str]] = PLAN_OPTIONS - {"static_interval_s", "may_be_cached"}

    def plan(self, prompt: AssembledPrompt, **options: Any) -> CachePlan:
        return plan_openai(prompt, **options)

    def apply(self, plan: CachePlan, prompt: AssembledPrompt) -> dict[str, Any]:
        kwargs = copy.deepcopy(prompt.to_openai())
        if plan.prompt_cache_key:
            kwargs["prompt_cache_key"] = plan.prompt_cache_key
        if plan.retention:
            kwargs["prompt_cache_retention"] = plan.retention
        if plan.breakpoints:
            segs = segments(prompt, provider=self.name)
            for b in plan.breakpoints:
                msg = kwargs["messages"][segs[b.segment_index].source_index]
                text = msg.get("content") or ""
                msg["content"] = [{"type": "text", "text": text, "prompt_cache_breakpoint": {"mode": "explicit"}}]
        return kwargs

    def replay(self, session: Replay) -> list[CallCost]:
        rules = session.rules
        ttl = rules.default_ttl
        life = rules.ttl_seconds(ttl)
        now = 0.0
        live: list[tuple[_Request, float]] = []  # (request, last used)
        calls: list[CallCost] = []
        for i, req in enumerate(session.requests):
            if i:
                now += session.gaps[i - 1]
            live = [(r, t) for r, t in live if now - t <= life]
            cached = 0
            for j, (r, _t) in enumerate(live):
                common, boundary = _common(r, req, session.counter)
                got = reusable_tokens(common, rules, boundary=boundary)
                if rules.explicit_breakpoints:  # exact match at a breakpoint boundary, no rounding
                    got = boundary if boundary >= rules.min_cacheable_tokens else 0
                if got > cached:
                    cached = got
                if got:
                    live[j] = (r, now)
            storable = reusable_tokens(req.total, rules, boundary=req.segs[-1].end if req.segs else 0)
            if storable:
                live.append((req, now))
            calls.append(session.bill(i, cached=cached, written=max(storable - cached, 0), ttl=ttl))
        return calls


class LlamaCppCache(CacheProvider):
    """A local llama.cpp (or vLLM-style) server: the previous prompt's KV cache, reused up to the common prefix."""

    name: ClassVar[str] = "llamacpp"

    def prices(self, model: str) -> CachePrices:
        """A local model costs nothing per token."""
        return CachePrices(input=0.0, cache_read=0.0)

    def plan(self, prompt: AssembledPrompt, **options: Any) -> CachePlan:
        return plan_llamacpp(prompt, **options)

    def apply(self, plan: CachePlan, prompt: AssembledPrompt) -> dict[str, Any]:
        return {**prompt.to_openai(), "cache_prompt": True}

    def replay(self, session: Replay) -> list[CallCost]:
        calls: list[CallCost] = []
        prev: _Request | None = None
        for i, req in enumerate(session.requests):
            cached = _common(prev, req, session.counter)[0] if prev is not None else 0
            cached = min(cached, req.total - 1) if req.total else 0
            calls.append(session.bill(i, cached=cached))
            prev = req
        return calls


for _provider in (AnthropicCache(), OpenAICache(), LlamaCppCache()):
    register_cache_provider(_provider)
