"""Assemble a prompt under a token budget.

One request flows through here in order:

1. **measure** — every candidate item (system prompt, tool schemas, few-shot
   examples, memory, history turns, retrieved chunks, query) gets its token cost
   from the model's chat counter; counts of seen text come from the tokenizer cache;
2. **plan** — required sections are charged first (raising
   :class:`~ctxkit.errors.SectionOverBudgetError` when they cannot fit), floors are
   reserved, then optional sections are served by priority up to their caps;
3. **fill** — history keeps its newest whole turns (tool calls and their results
   are never split), examples keep their first pairs, memory is truncated when it
   must be, retrieved chunks are packed by value per token (exact knapsack when
   affordable);
4. **lay out** — stable sections first, volatile last: system, examples, memory,
   history, then the final user message with the retrieved context and the query;
5. **verify** — the rendered request is counted exactly; if it is over the limit
   (token merges across boundaries can add a token or two) the least valuable
   optional items are shed until it fits. A prompt over budget is never returned.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar, cast

import numpy as np

from ctxkit._inputs import reject_bare_string
from ctxkit._lru import LRUCache
from ctxkit.assembly.context import block_cost, context_overhead, document_block, wrapper_cost
from ctxkit.assembly.packing import EXACT_MAX_CELLS, pack
from ctxkit.assembly.prompt import AssembledPrompt, AuditRecord, SectionReport
from ctxkit.budget import SECTION_NAMES, Budget, as_budget
from ctxkit.errors import BudgetExceededError, InvalidInputError, SectionOverBudgetError
from ctxkit.messages import Chunk, Message, ToolSpec
from ctxkit.tokenizers._tiktoken import TiktokenTokenizer
from ctxkit.tokenizers.base import TokenCountCache
from ctxkit.tokenizers.chat import (
    ChatCounter,
    EstimateChatCounter,
    OpenAIChatCounter,
    base_tokens_for,
    get_chat_counter,
)

_T = TypeVar("_T")

__all__ = ["Assembler", "ChunkOrder", "assemble", "document_block", "group_turns"]

ChunkOrder = Literal["score", "source", "edges"]

_MIN_TRUNCATED_TOKENS = 16
_PLAN_MEMO_SIZE = 16
_RESULT_MEMO_SIZE = 64

#: tiktoken encodings whose pre-tokenizer makes a newline followed by "<" a hard piece boundary
_ADDITIVE_ENCODINGS = frozenset({"cl100k_base", "o200k_base"})
#: counters whose ``count_messages`` is exactly base + the sum of ``message_tokens`` + ``tools_tokens``
_ADDITIVE_COUNTERS: frozenset[type] = frozenset({OpenAIChatCounter, EstimateChatCounter})


@dataclass
class _Item:
    section: str
    label: str
    messages: list[Message]
    cost: int
    value: float = 0.0
    pinned: bool = False
    chunk: Chunk | None = None
    block: str = ""
    truncated_from: int | None = None
    index: int = 0


@dataclass
class _State:
    kept: dict[str, list[_Item]] = field(default_factory=lambda: {s: [] for s in SECTION_NAMES})
    audit: list[AuditRecord] = field(default_factory=list)
    offered: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SECTION_NAMES, 0))
    offered_items: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SECTION_NAMES, 0))
    caps: dict[str, int] = field(default_factory=dict)

    def copy(self) -> _State:
        """A copy that verification can shed from without touching this one (items are shared, not copied)."""
        return _State(
            kept={s: list(v) for s, v in self.kept.items()},
            audit=list(self.audit),
            offered=self.offered,
            offered_items=self.offered_items,
            caps=self.caps,
        )

    def drop(self, item: _Item, reason: str) -> None:
        self.audit.append(
            AuditRecord(section=item.section, item=item.label, action="dropped", tokens=item.cost, reason=reason)
        )


@dataclass
class _Plan:
    """Measure, plan and fill of one request: everything but the query's text, which enters only by its cost."""

    st: _State
    header_cost: int
    refs: tuple[object, ...]  # the inputs whose ids are in the key, kept alive so no other object takes an id
    # filled by the first verification that sheds nothing: the layout of ``st`` and its reports
    layout: _Layout | None = None
    reports: dict[str, SectionReport] | None = None
    audit: tuple[AuditRecord, ...] = ()


@dataclass
class _Layout:
    """Everything the rendered request holds but the query: the messages before it and the context blocks."""

    msgs: list[Message]
    section_of: list[str]
    blocks: list[str]
    head: str  # the final message's text before the query: header, blocks, newline
    # for counters whose total is additive over messages: the exact total of everything but the final message
    prefix_total: int | None = None
    # for tokenizers whose count is additive over the final message's parts: header and all blocks but the last
    blocks_total: int | None = None


def _frozen_refs(refs: tuple[object, ...]) -> tuple[object, ...]:
    """``refs`` with lists copied to tuples: a caller's list mutated later must not drop the objects a key names."""
    return tuple(tuple(r) if type(r) is list else r for r in refs)


def _items_of(name: str, items: object, kind: type[_T]) -> list[_T]:
    """``items`` as a list of ``kind``, or an InvalidInputError naming the input and the first bad element."""
    if items is None:
        return []
    if isinstance(items, str | bytes | Mapping) or not isinstance(items, Iterable):
        raise InvalidInputError(f"{name} must be a list of {kind.__name__}, not {type(items).__name__}")
    out = list(items)
    for i, x in enumerate(out):
        if not isinstance(x, kind):
            raise InvalidInputError(
                f"{name}[{i}] is a {type(x).__name__}, not a ctxkit {kind.__name__}; build it with {kind.__name__}(...)"
            )
    return out


def group_turns(messages: Sequence[Message]) -> list[list[Message]]:
    """Split a history into turns (a user or system message and what follows it).

    Validates tool-call structure: every tool message must answer a call of the
    assistant message right before it, and every call must be answered, so that no
    turn boundary can split a call from its result.
    """
    reject_bare_string(messages, "group_turns(messages)", "group_turns([Message.user(...)])")
    turns: list[list[Message]] = []
    open_calls: set[str] = set()
    for i, m in enumerate(messages):
        if not isinstance(m, Message):
            raise InvalidInputError(
                f"history[{i}] is a {type(m).__name__}, not a ctxkit Message; build it with Message(...)"
            )
        if m.role == "tool":
            if m.tool_call_id not in open_calls:
                raise InvalidInputError(
                    f"history[{i}] is a tool result for call {m.tool_call_id!r}, which no directly preceding "
                    "assistant message made; providers reject orphaned tool results. Remove it or add its call."
                )
            open_calls.discard(m.tool_call_id)
        else:
            if open_calls:
                raise InvalidInputError(
                    f"history[{i}] ({m.role}) comes before the results of tool calls {sorted(open_calls)}; "
                    "each tool call must be answered by a tool message right after the assistant message."
                )
            if m.tool_calls:
                ids = [c.id for c in m.tool_calls]
                if len(set(ids)) != len(ids):
                    raise InvalidInputError(f"history[{i}] repeats a tool call id: {ids}")
                open_calls = set(ids)
        if m.role in ("user", "system", "developer") or not turns:
            turns.append([m])
        else:
            turns[-1].append(m)
    if open_calls:
        raise InvalidInputError(
            f"the history ends with tool calls {sorted(open_calls)} that have no results; "
            "append their tool messages before assembling."
        )
    return turns


class Assembler:
    """Builds budgeted prompts for one model; reuse it across turns (its counts are cached).

    ``budget`` is the whole prompt's: a :class:`~ctxkit.budget.Budget`, or an ``int``, the input
    limit in tokens (:func:`~ctxkit.budget.as_budget`); default ``Budget.for_model(model)``.

    ``chunk_order`` lays retrieved chunks out by ``score`` (best first), by
    ``source`` (document, then position), or ``edges`` (best at both ends, weakest in
    the middle, against lost-in-the-middle). ``exact_packing`` True forces the exact
    knapsack for retrieved chunks (False: greedy only; None: exact where cheap); a forced
    exact table over ``exact_packing_max_cells`` cells (one byte each) raises
    :class:`~ctxkit.errors.InvalidInputError` rather than taking the memory.
    """

    def __init__(
        self,
        model: str = "gpt-4o",
        budget: Budget | int | None = None,
        *,
        counter: ChatCounter | None = None,
        chunk_order: ChunkOrder = "score",
        context_header: str = "Use the following context to answer.",
        memory_header: str = "Summary of the earlier conversation:",
        exact_packing: bool | None = None,
        exact_packing_max_cells: int = EXACT_MAX_CELLS,
        truncate_memory: bool = True,
        truncate_chunks: bool = False,
    ) -> None:
        if not isinstance(chunk_order, str) or chunk_order not in ("score", "source", "edges"):
            raise InvalidInputError(f"chunk_order must be 'score', 'source' or 'edges', not {chunk_order!r}")
        if not isinstance(model, str):
            raise InvalidInputError(f"model must be a model name (str), not {type(model).__name__}")
        chosen_budget = as_budget(budget, model)
        if counter is not None and not isinstance(counter, ChatCounter):
            raise InvalidInputError(
                f"counter must be a ChatCounter (get_chat_counter(model)), not {type(counter).__name__}"
            )
        for name, header in (("context_header", context_header), ("memory_header", memory_header)):
            if not isinstance(header, str):
                raise InvalidInputError(f"{name} must be a str, not {type(header).__name__}")
        self.model = model
        self.budget = chosen_budget
        self.counter: ChatCounter = counter or get_chat_counter(model)
        self.chunk_order: ChunkOrder = chunk_order
        self.context_header = context_header
        self.memory_header = memory_header
        if not isinstance(exact_packing_max_cells, int) or exact_packing_max_cells < 1:
            raise InvalidInputError(f"exact_packing_max_cells must be a positive int, got {exact_packing_max_cells!r}")
        self.exact_packing = exact_packing
        self.exact_packing_max_cells = exact_packing_max_cells
        self.truncate_memory = truncate_memory
        self.truncate_chunks = truncate_chunks
        # recent requests: the plan (all but the query's text) and the finished prompt, keyed by the
        # identity of the (immutable) inputs, the assembler's settings and the token cache's generation
        self._plans: LRUCache[Hashable, _Plan] = LRUCache(_PLAN_MEMO_SIZE)
        self._results: LRUCache[Hashable, tuple[AssembledPrompt, tuple[object, ...]]] = LRUCache(_RESULT_MEMO_SIZE)

    def _memo_key(
        self,
        system: object,
        tools: object,
        examples: object,
        memory: object,
        history: object,
        chunks: object,
        budget: object,
    ) -> tuple[tuple[Hashable, ...], tuple[object, ...]] | None:
        """The key of a request's plan and the inputs it names by id; None when an input is not memoizable.

        Messages, chunks, tool specs and budgets are frozen, so the same objects in the same order
        under the same settings give the same plan. Clearing the tokenizer's count cache (a cold
        start) bumps its generation, so nothing memoized from before is reused.
        """
        seqs: list[Sequence[object]] = []
        for x in (tools, examples, history, chunks):
            if type(x) is not list and type(x) is not tuple:
                return None
            seqs.append(cast("Sequence[object]", x))
        if not (system is None or type(system) is str) or not (memory is None or type(memory) is str):
            return None
        cache = getattr(self.counter.tokenizer, "cache", None)
        generation = cache.generation if isinstance(cache, TokenCountCache) else 0
        key = (
            generation,
            budget if type(budget) is int else id(budget),  # an int budget is coerced afresh each call
            id(self.budget),
            id(self.counter),
            system,
            memory,
            *(tuple(map(id, x)) for x in seqs),
            self.model,
            self.chunk_order,
            self.context_header,
            self.memory_header,
            self.exact_packing,
            self.exact_packing_max_cells,
            self.truncate_memory,
            self.truncate_chunks,
        )
        try:
            hash(key)
        except TypeError:  # a setting that is not hashable (it still works, it is just not memoized)
            return None
        return key, (*seqs, budget, self.budget, self.counter)

    def __repr__(self) -> str:
        return (
            f"Assembler(model={self.model!r}, input_limit={self.budget.input_limit}, chunk_order={self.chunk_order!r})"
        )

    # ------------------------------------------------------------------ measure
    def _msg_items(self, section: str, groups: Iterable[list[Message]], prefix: str) -> list[_Item]:
        cost = self.counter.message_tokens
        return [
            _Item(section, f"{prefix}[{i}]", g, sum(cost(m) for m in g), pinned=any(m.pinned for m in g), index=i)
            for i, g in enumerate(groups)
        ]

    def _block(self, chunk: Chunk, index: int) -> str:
        return document_block(chunk, index)

    # ------------------------------------------------------------------ costs of the retrieved context
    def chunk_cost(self, chunk: Chunk, index: int = 0) -> int:
        """Tokens ``chunk`` costs in this assembler's prompts: its ``<document>`` block, counted whole by the
        model's tokenizer (what :meth:`assemble` charges for it)."""
        return block_cost(self.counter.tokenizer, chunk, index)

    def context_cost(self) -> int:
        """Tokens the retrieved context costs besides its blocks (header, blank line, the break before the query);
        charged once when any chunk is kept. See :func:`ctxkit.assembly.context.context_overhead`."""
        return context_overhead(self.counter.tokenizer, self.context_header)

    # ------------------------------------------------------------------ assemble
    def assemble(
        self,
        *,
        query: str,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
        examples: Sequence[Message] = (),
        memory: str | None = None,
        history: Sequence[Message] = (),
        chunks: Sequence[Chunk] = (),
        budget: Budget | int | None = None,
    ) -> AssembledPrompt:
        """Assemble one prompt; see the module docstring for the steps.

        ``budget`` overrides the assembler's for this call: a :class:`~ctxkit.budget.Budget`, or an
        ``int``, the input limit in tokens (the assembler's budget with that ``max_input_tokens``; see
        :func:`~ctxkit.budget.as_budget`).

        A request whose inputs are the same objects as a recent one's (the history and chunks an
        application passes again on its next turn) reuses that request's plan and only lays out
        and verifies the new query; the very same request returns the same prompt.
        """
        memo = self._memo_key(system, tools, examples, memory, history, chunks, budget)
        if memo is not None and isinstance(query, str):
            done = self._results.get((memo[0], query))
            if done is not None:
                prompt: AssembledPrompt = done[0]
                return prompt
            # the same input objects as a validated earlier request: only the query is new
            query_msg = Message.user(query)
            plan: _Plan | None = self._plans.get((memo[0], self.counter.message_tokens(query_msg)))
            if plan is not None:
                chosen = self.budget if budget is None else as_budget(budget, self.model, base=self.budget)
                prompt = self._finish(plan.st.copy(), list(tools), query_msg, chosen, plan.header_cost, plan)
                self._results.put((memo[0], query), (prompt, plan.refs))
                return prompt
        budget = self.budget if budget is None else as_budget(budget, self.model, base=self.budget)
        if not isinstance(query, str):
            raise InvalidInputError("query must be a string (the user's latest message)")
        reject_bare_string(tools, "assemble(tools=...)", "tools=[ToolSpec(...)]")
        reject_bare_string(examples, "assemble(examples=...)", "examples=[Message.user(...), Message.assistant(...)]")
        reject_bare_string(history, "assemble(history=...)", "history=[Message.user(...)]")
        reject_bare_string(chunks, "assemble(chunks=...)", "chunks=[Chunk(text=..., score=...)]")
        for name, text in (("system", system), ("memory", memory)):
            if text is not None and not isinstance(text, str):
                raise InvalidInputError(f"{name} must be a str or None, not {type(text).__name__}")
        tools = _items_of("tools", tools, ToolSpec)
        examples = _items_of("examples", examples, Message)
        history = _items_of("history", history, Message)
        chunks = _items_of("chunks", chunks, Chunk)
        query_msg = Message.user(query)
        st, header_cost = self._plan(query_msg, system, tools, examples, memory, history, chunks, budget)
        new_plan = None
        if memo is not None:
            new_plan = _Plan(st.copy(), header_cost, _frozen_refs(memo[1]))
            self._plans.put((memo[0], self.counter.message_tokens(query_msg)), new_plan)

        # ---- lay out and verify
        prompt = self._finish(st, list(tools), query_msg, budget, header_cost, new_plan)
        if new_plan is not None and memo is not None:
            self._results.put((memo[0], query), (prompt, new_plan.refs))
        return prompt

    def _plan(
        self,
        query_msg: Message,
        system: str | None,
        tools: list[ToolSpec],
        examples: list[Message],
        memory: str | None,
        history: list[Message],
        chunks: list[Chunk],
        budget: Budget,
    ) -> tuple[_State, int]:
        """Measure, plan and fill (steps 1-3): what each section keeps, before layout and verification."""
        limit = budget.input_limit
        st = _State()
        st.caps = {name: spec.cap(limit) for name, spec in budget.sections.items()}

        # ---- measure
        items: dict[str, list[_Item]] = {s: [] for s in SECTION_NAMES}
        if system:
            items["system"] = self._msg_items("system", [[Message.system(system)]], "system")
        if tools:
            names = [t.name for t in tools]
            if len(set(names)) != len(names):
                raise InvalidInputError(f"tool names must be unique, got {names}")
            items["tools"] = [_Item("tools", "tools", [], self.counter.tools_tokens(tools))]
        items["examples"] = self._msg_items("examples", group_turns(examples), "example")
        if memory:
            items["memory"] = self._msg_items("memory", [[Message.system(f"{self.memory_header}\n{memory}")]], "memory")
        items["history"] = self._msg_items("history", group_turns(history), "turn")
        items["query"] = self._msg_items("query", [[query_msg]], "query")
        chunk_items = self._chunk_items(chunks, st)
        header_cost = self.context_cost() if chunk_items else 0
        items["retrieved"] = chunk_items
        for s, its in items.items():
            st.offered[s] = sum(i.cost for i in its) + (header_cost if s == "retrieved" else 0)
            st.offered_items[s] = len(its) + (st.offered_items[s] if s == "retrieved" else 0)

        # ---- plan: required sections and pinned turns first
        specs = budget.sections
        room = limit - self._base_tokens(items, specs["system"].required)
        order = sorted(SECTION_NAMES, key=lambda s: -specs[s].priority)
        for s in order:
            mandatory = items[s] if specs[s].required else [i for i in items[s] if i.pinned]
            need = sum(i.cost for i in mandatory)
            if need > room:
                raise SectionOverBudgetError(s if specs[s].required else f"{s} (pinned)", need, max(room, 0))
            room -= need
            st.kept[s].extend(mandatory)
        # floors of optional sections, reserved before higher sections take the rest
        floors = {s: min(specs[s].min_tokens, st.offered[s]) for s in SECTION_NAMES if not specs[s].required}

        # ---- fill optional sections by priority
        for s in order:
            if specs[s].required:
                continue
            reserved_below = sum(v for k, v in floors.items() if k != s and specs[k].priority <= specs[s].priority)
            pinned_used = sum(i.cost for i in st.kept[s])
            allot = min(st.caps[s] - pinned_used, room - reserved_below)
            floors[s] = 0
            used = self._fill(s, [i for i in items[s] if not i.pinned], max(allot, 0), header_cost, st)
            room -= used
        return st, header_cost

    def _base_tokens(self, items: dict[str, list[_Item]], system_required: bool) -> int:
        """The counter's fixed overhead for whichever message may come first in the rendered prompt.

        A chat template may add a default system prompt when the list does not start with a
        system message (SmolLM2's does); a required system prompt always comes first, so that
        default is not charged then. Otherwise the largest overhead of the roles that may lead.
        """
        if system_required and items["system"]:
            return base_tokens_for(self.counter, "system")
        roles = {"user"}  # the final user message (query) is always there
        for s in ("system", "examples", "memory", "history"):
            roles.update(it.messages[0].role for it in items[s] if it.messages)
        return max(base_tokens_for(self.counter, r) for r in roles)

    def _chunk_items(self, chunks: Sequence[Chunk], st: _State) -> list[_Item]:
        seen: dict[str, str] = {}
        out: list[_Item] = []
        blocks: list[str] = []
        kept_chunks: list[Chunk] = []
        for i, c in enumerate(chunks):
            if not isinstance(c, Chunk):
                raise InvalidInputError(f"chunks[{i}] is a {type(c).__name__}; wrap text as Chunk(text=..., score=...)")
            label = c.id or f"chunk[{i}]"
            if not c.text.strip():
                st.audit.append(
                    AuditRecord(section="retrieved", item=label, action="dropped", tokens=0, reason="empty text")
                )
                st.offered_items["retrieved"] += 1
                continue
            if c.text in seen:
                st.audit.append(
                    AuditRecord(
                        section="retrieved",
                        item=label,
                        action="dropped",
                        tokens=0,
                        reason=f"exact duplicate of {seen[c.text]}",
                    )
                )
                st.offered_items["retrieved"] += 1
                continue
            seen[c.text] = label
            blocks.append(self._block(c, i))
            kept_chunks.append(c)
        costs = self.counter.tokenizer.count_many(blocks)
        for c, block, cost in zip(kept_chunks, blocks, costs, strict=True):
            out.append(_Item("retrieved", c.id or f"chunk[{len(out)}]", [], cost, value=c.score, chunk=c, block=block))
        return out

    def _fill(self, s: str, cands: list[_Item], allot: int, header_cost: int, st: _State) -> int:
        if not cands:
            return 0
        kept = st.kept[s]
        if s == "history":  # newest whole turns, contiguous
            used = 0
            stop = False
            for it in reversed(cands):
                if not stop and used + it.cost <= allot:
                    kept.append(it)
                    used += it.cost
                else:
                    stop = True
                    st.drop(it, f"older than the newest turns that fit the history allotment of {allot} tokens")
            kept.sort(key=lambda i: i.index)
            return used
        if s == "examples":
            used = 0
            stop = False
            for it in cands:
                if not stop and used + it.cost <= allot:
                    kept.append(it)
                    used += it.cost
                else:
                    stop = True
                    st.drop(it, f"did not fit the examples allotment of {allot} tokens")
            return used
        if s == "memory":
            it = cands[0]
            if it.cost <= allot:
                kept.append(it)
                return it.cost
            return self._truncate_message_item(it, allot, st)
        if s == "retrieved":
            capacity = allot - header_cost
            if capacity <= 0:
                for it in cands:
                    st.drop(it, f"no room for retrieved context (allotment {allot} tokens)")
                return 0
            values = np.array([max(i.value, 0.0) for i in cands]) + 1e-9  # zero scores still fill free room
            chosen = set(
                pack(
                    values.tolist(),
                    [i.cost for i in cands],
                    capacity,
                    exact=self.exact_packing,
                    max_cells=self.exact_packing_max_cells,
                )
            )
            used = header_cost
            for idx, it in enumerate(cands):
                if idx in chosen:
                    kept.append(it)
                    used += it.cost
                else:
                    st.drop(it, f"not chosen by value-per-token packing into {capacity} tokens")
            if self.truncate_chunks:
                used += self._truncate_best_chunk(cands, chosen, allot - used, st)
            if not kept:
                return 0
            return used
        return self._fill_whole(s, cands, allot, st)

    def _fill_whole(self, s: str, cands: list[_Item], allot: int, st: _State) -> int:
        """A section kept whole or not at all: a non-required ``system`` or ``tools`` is dropped when it does not fit.

        The query is the request itself and is never dropped; :class:`~ctxkit.budget.Budget`
        refuses a non-required query, so this is reached for it only through a budget built
        without validation (``model_construct``), and then it must fit like a required one.
        """
        used = 0
        for it in cands:
            if used + it.cost <= allot:
                st.kept[s].append(it)
                used += it.cost
            elif s == "query":
                raise SectionOverBudgetError("query", it.cost, max(allot - used, 0))
            else:
                st.drop(it, f"{s} is not required and needs {it.cost} tokens; the allotment is {allot - used}")
        return used

    def _truncate_message_item(self, it: _Item, allot: int, st: _State) -> int:
        msg = it.messages[0]
        overhead = self.counter.message_tokens(msg.model_copy(update={"content": ""}))
        room = allot - overhead
        if not self.truncate_memory or room < _MIN_TRUNCATED_TOKENS:
            st.drop(it, f"needs {it.cost} tokens; the allotment is {allot}")
            return 0
        text = self.counter.tokenizer.truncate(msg.content, room)
        new = msg.model_copy(update={"content": text})
        cost = self.counter.message_tokens(new)
        st.kept[it.section].append(_Item(it.section, it.label, [new], cost, truncated_from=it.cost))
        st.audit.append(
            AuditRecord(
                section=it.section,
                item=it.label,
                action="truncated",
                tokens=it.cost,
                kept_tokens=cost,
                reason=f"needs {it.cost} tokens; the allotment is {allot}",
            )
        )
        return cost

    def _truncate_best_chunk(self, cands: list[_Item], chosen: set[int], room: int, st: _State) -> int:
        rest = [(i, c) for i, c in enumerate(cands) if i not in chosen]
        if not rest or room < _MIN_TRUNCATED_TOKENS + 8:
            return 0
        _, best = max(rest, key=lambda p: p[1].value)
        if best.chunk is None:  # every retrieved item carries its chunk
            return 0
        tok = self.counter.tokenizer
        wrapper = wrapper_cost(tok, best.chunk)
        if room - wrapper - 2 < _MIN_TRUNCATED_TOKENS:
            return 0
        text = tok.truncate(best.chunk.text, room - wrapper - 2)
        if not text.strip():
            return 0
        chunk = best.chunk.model_copy(update={"text": text})
        block = self._block(chunk, 0)
        cost = tok.count(block)
        if cost > room:
            return 0
        # replace the drop record written by the packer with a truncation record
        st.audit[:] = [
            a for a in st.audit if not (a.section == "retrieved" and a.item == best.label and a.action == "dropped")
        ]
        st.audit.append(
            AuditRecord(
                section="retrieved",
                item=best.label,
                action="truncated",
                tokens=best.cost,
                kept_tokens=cost,
                reason=f"best unpacked chunk cut to the {room} tokens left",
            )
        )
        st.kept["retrieved"].append(
            _Item("retrieved", best.label, [], cost, best.value, chunk=chunk, block=block, truncated_from=best.cost)
        )
        return cost

    # ------------------------------------------------------------------ lay out + verify
    def _ordered_chunks(self, its: list[_Item]) -> list[_Item]:
        if self.chunk_order == "source":
            first_seen: dict[str, int] = {}
            for n, i in enumerate(its):
                if i.chunk is not None:
                    first_seen.setdefault(i.chunk.doc_id, n)
            return sorted(its, key=lambda i: (first_seen[i.chunk.doc_id], i.chunk.position) if i.chunk else (0, 0))
        by_score = sorted(its, key=lambda i: -i.value)
        if self.chunk_order == "score":
            return by_score
        front = by_score[0::2]
        back = by_score[1::2]
        return front + back[::-1]

    def _seed_final_count(self, content: str, blocks: list[str], query: str) -> None:
        """Count the final user message from its parts, so verifying it re-tokenizes only the last block.

        For cl100k_base and o200k_base the pre-tokenizer never puts ``"\\n"`` and a following
        ``"<"`` in one piece, and BPE never merges across pieces; every block starts with
        ``<document`` and the header part ends with a newline, so the count of the whole is
        the sum of the counts of ``header + "\\n\\n"``, each block but the last (all cached),
        and ``last block + "\\n" + query``. Other tokenizers are counted whole, as before.
        """
        tok = self.counter.tokenizer
        if not isinstance(tok, TiktokenTokenizer) or tok.name not in _ADDITIVE_ENCODINGS or not blocks:
            return
        if content in tok.cache._data:
            return
        count = tok.count
        total = count(f"{self.context_header}\n\n") + count(f"{blocks[-1]}\n{query}")
        for block in blocks[:-1]:
            total += count(block)
        tok.cache.put(content, total)

    def _layout(self, st: _State) -> _Layout:
        msgs: list[Message] = []
        section_of: list[str] = []
        for s in ("system", "examples", "memory", "history"):
            for it in st.kept[s]:
                msgs.extend(it.messages)
                section_of.extend([s] * len(it.messages))
        chunk_items = [i for i in st.kept["retrieved"] if i.chunk is not None]
        blocks = [i.block for i in self._ordered_chunks(chunk_items)] if chunk_items else []
        head = f"{self.context_header}\n\n{''.join(blocks)}\n" if blocks else ""
        return _Layout(msgs, section_of, blocks, head)

    def _render(self, layout: _Layout, query_msg: Message, *, seed: bool = True) -> tuple[list[Message], list[str]]:
        msgs = list(layout.msgs)
        section_of = list(layout.section_of)
        if layout.blocks:
            content = layout.head + query_msg.content
            if seed:
                self._seed_final_count(content, layout.blocks, query_msg.content)
            msgs.append(query_msg.model_copy(update={"content": content}))
            section_of.append("retrieved+query")
        else:
            msgs.append(query_msg)
            section_of.append("query")
        return msgs, section_of

    def _remember_totals(self, layout: _Layout, total: int, final: Message) -> None:
        """After an exact full count, keep what lets the next query be counted from its own parts.

        OpenAI's and the estimator's counters total their base, each message's cost and the tools'
        cost (``count_messages`` is that sum), and a message's cost is a constant of its role and
        name plus its content's count: so the total for another query is the rest's total plus the
        final message's cost. With cl100k/o200k the final content's count is additive over its
        parts (see :meth:`_seed_final_count`).
        """
        if type(self.counter) not in _ADDITIVE_COUNTERS:
            return
        layout.prefix_total = total - self.counter.message_tokens(final)
        tok = self.counter.tokenizer
        if layout.blocks and isinstance(tok, TiktokenTokenizer) and tok.name in _ADDITIVE_ENCODINGS:
            layout.blocks_total = tok.count(f"{self.context_header}\n\n") + sum(
                tok.count(b) for b in layout.blocks[:-1]
            )

    def _final_cost(self, layout: _Layout, query_msg: Message, final: Message) -> int:
        """The final message's cost from its parts (see :meth:`_remember_totals`), or counted whole."""
        if not layout.blocks or layout.blocks_total is None:
            return self.counter.message_tokens(final)
        count = self.counter.tokenizer.count
        query = query_msg.content
        content = layout.blocks_total + count(f"{layout.blocks[-1]}\n{query}")
        return self.counter.message_tokens(query_msg) - count(query) + content

    def _shed_one(self, st: _State, over: int) -> bool:
        reason = f"shed after exact verification: the rendered prompt was {over} tokens over"
        chunks = [i for i in st.kept["retrieved"] if i.chunk is not None]
        if chunks:
            worst = min(chunks, key=lambda i: (i.value / max(i.cost, 1), i.value))
            st.kept["retrieved"].remove(worst)
            st.drop(worst, reason)
            return True
        hist = [i for i in st.kept["history"] if not i.pinned]
        if hist:
            st.kept["history"].remove(hist[0])
            st.drop(hist[0], reason)
            return True
        for s in ("examples", "memory"):
            if st.kept[s]:
                it = st.kept[s].pop()
                st.drop(it, reason)
                return True
        return False

    def _finish(
        self,
        st: _State,
        tools: list[ToolSpec],
        query_msg: Message,
        budget: Budget,
        header_cost: int,
        plan: _Plan | None = None,
    ) -> AssembledPrompt:
        """Lay out and verify; ``plan`` (whose state ``st`` copies) keeps the layout and reports for reuse."""
        limit = budget.input_limit
        shed = False
        while True:
            if shed or plan is None or plan.layout is None:
                layout = self._layout(st)
                if plan is not None and not shed:
                    plan.layout = layout
            else:
                layout = plan.layout
            msgs, section_of = self._render(layout, query_msg, seed=layout.prefix_total is None)
            if layout.prefix_total is not None:
                total = layout.prefix_total + self._final_cost(layout, query_msg, msgs[-1])
            else:
                total = self.counter.count_messages(msgs, tools if st.kept["tools"] else [])
                self._remember_totals(layout, total, msgs[-1])
            if total <= limit:
                break
            shed = True
            if not self._shed_one(st, total - limit):
                required = {s: sum(i.cost for i in st.kept[s]) for s in SECTION_NAMES}
                worst = max(required, key=lambda k: required[k])
                raise SectionOverBudgetError(worst, required[worst], max(limit - (total - required[worst]), 0))
        if total > limit:  # pragma: no cover - guarded by the loop above
            raise BudgetExceededError(total, limit)
        if plan is not None and not shed and plan.reports is not None:
            reports, audit = plan.reports, plan.audit
        else:
            reports, audit = self._reports(st, header_cost), tuple(st.audit)
            if plan is not None and not shed:
                plan.reports, plan.audit = reports, audit
        # every field is built here from checked parts, so the prompt is constructed without re-validation
        return AssembledPrompt.model_construct(
            model=self.model,
            messages=tuple(msgs),
            section_of=tuple(section_of),
            tools=tuple(tools) if st.kept["tools"] else (),
            sections=reports,
            audit=audit,
            total_tokens=total,
            input_limit=limit,
            tokens_exact=self.counter.tokenizer.exact,
        )

    def _reports(self, st: _State, header_cost: int) -> dict[str, SectionReport]:
        reports: dict[str, SectionReport] = {}
        dropped = {s: 0 for s in SECTION_NAMES}
        truncated = {s: 0 for s in SECTION_NAMES}
        for a in st.audit:
            (dropped if a.action == "dropped" else truncated)[a.section] += 1
        for s in SECTION_NAMES:
            kept = st.kept[s]
            used = sum(i.cost for i in kept)
            if s == "retrieved" and any(i.chunk is not None for i in kept):
                used += header_cost
            reports[s] = SectionReport(
                name=s,
                requested=st.offered[s],
                used=used,
                cap=st.caps[s],
                items_kept=len(kept),
                items_dropped=dropped[s],
                items_truncated=truncated[s],
            )
        return reports


def assemble(model: str = "gpt-4o", budget: Budget | int | None = None, **inputs: object) -> AssembledPrompt:
    """One-shot :meth:`Assembler.assemble` (build an :class:`Assembler` to reuse caches across turns).

    ``budget``: a :class:`~ctxkit.budget.Budget`, or an ``int``, the input limit in tokens.
    """
    return Assembler(model, budget).assemble(**inputs)  # type: ignore[arg-type]
