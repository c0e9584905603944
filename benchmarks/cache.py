"""Cache-friendly layout: KV-cache reuse on the real local model, and simulated provider cost.

Sessions: real ShareGPT conversations (the first clean chats with ``2 * turns`` alternating
messages, re-joined by :mod:`_data`), replayed turn by turn. Every request carries a
~1,500-token system prompt (assistant instructions plus a reference handbook of real Paul
Graham essay paragraphs) and six tool definitions, the chat so far, and two retrieved
essay paragraphs (BM25 top 2 for the user's message). Each chat message is cut to its
first ``--message-chars`` characters so a whole session fits SmolLM2's 8k window.

Two layouts of the same inputs, assembled by :class:`ctxkit.Assembler`:

* **ctxkit** — stable first: system prompt and tools, the history, and the retrieved
  context with the query in the final user message. The application appends the user
  message *as sent* to its transcript (append-only history), so every request extends
  the previous one.
* **naive** — what many apps and LangChain's default "stuff" prompt do: the current
  timestamp and the retrieved context at the top of the system prompt; the history holds
  the raw user messages.

Real model (SmolLM2-135M-Instruct, the shipped Q4_1 run as its 16-bit conversion, via
llama-cpp-python, one ``Llama`` object per layout so each keeps its own KV cache, calls
interleaved turn by turn): each request is rendered by
the model's own chat template and sent with ``max_tokens=1``; llama.cpp reuses the longest
common prefix of its KV cache and evaluates the rest. Fields:

* ``reuse_ctxkit`` / ``reuse_naive`` — prompt tokens reused from the KV cache / prompt tokens,
  from turn 2 on, over all sessions (target for ctxkit ≥ 0.90); ``reuse_*_by_session``: median
  with min–max over sessions;
* ``speedup_vs_naive`` — total prompt-processing time naive / ctxkit per session, median with
  min–max (target ≥ 3);
* ``sim_llamacpp_error`` — largest gap between the reuse :func:`ctxkit.cache.simulate` predicts
  for llama.cpp and the reuse measured, as a share of prompt tokens.

Simulated providers (no network; the same sessions assembled for ``claude-sonnet-4-5`` and
``gpt-4o`` with their counters, replayed by :func:`ctxkit.cache.compare` with 30 s between
calls, ctxkit's breakpoint planner for Anthropic in both layouts; with the append-only
transcript the final message is declared per-session, since the next call re-sends it):

* ``simulated_cost_ratio_anthropic`` / ``simulated_cost_ratio_openai`` — naive cost / ctxkit
  cost of the input tokens per session, median with min–max over ``--sim-sessions`` sessions;
  the ``*_raw_history`` fields are the same with ctxkit keeping raw user messages in its
  transcript (fewer tokens, a shorter reusable prefix).

Options: ``--sessions N`` (model sessions, default 20), ``--turns N`` (default 10),
``--sim-sessions N`` (default 20), ``--message-chars N`` (default 400), ``--quick``
(2 model sessions of 6 turns; the simulation keeps its 20 sessions).
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from typing import Any

from _data import chat_histories, essay_paragraphs, lexical_scores
from _timing import spread

from ctxkit import Assembler, Budget, Chunk, Message, ToolSpec
from ctxkit.assembly import AssembledPrompt
from ctxkit.cache import compare, simulate

LOCAL = "smollm2-135m-instruct"
HEADER = "Use the following context to answer."
INSTRUCTIONS = (
    "You are Atlas, the research assistant of a small venture firm. You help founders and partners think "
    "through questions about startups, fundraising, hiring, product and writing. Follow these rules.\n"
    "1. Answer the question that was asked, directly, in plain language. Lead with the answer.\n"
    "2. When retrieved context is provided, ground your answer in it and cite documents by their id.\n"
    "3. When the context does not cover the question, say so and answer from general knowledge, marked as such.\n"
    "4. Never invent figures, names, dates or quotations. If unsure, say what would settle the question.\n"
    "5. Prefer short paragraphs and concrete examples over lists of generic advice.\n"
    "6. Use the tools when a question needs live data (company records, the calendar, the deal database).\n"
    "7. Keep a neutral, candid tone; disagree when the evidence warrants it.\n"
    "Reference handbook (excerpts the partners asked you to keep in mind):\n"
)
TOOLS = [
    ToolSpec(
        name="search_deals",
        description="Search the deal database by company name, sector or stage.",
        parameters={
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "Free-text search."},
                "stage": {"type": "string", "enum": ["pre-seed", "seed", "series-a", "series-b"]},
            },
            "required": ["query"],
        },
    ),
    ToolSpec(
        name="get_company",
        description="Fetch a company's record: founders, round history, metrics.",
        parameters={"type": "object", "properties": {"company_id": {"type": "string"}}, "required": ["company_id"]},
    ),
    ToolSpec(
        name="schedule_meeting",
        description="Propose a meeting slot with a founder.",
        parameters={
            "type": "object",
            "properties": {
                "founder_email": {"type": "string"},
                "duration_minutes": {"type": "integer", "description": "Length of the meeting."},
            },
            "required": ["founder_email"],
        },
    ),
    ToolSpec(
        name="summarize_document",
        description="Summarize an uploaded memo or deck.",
        parameters={"type": "object", "properties": {"document_id": {"type": "string"}}, "required": ["document_id"]},
    ),
    ToolSpec(
        name="market_size",
        description="Estimate a market's size from the research library.",
        parameters={"type": "object", "properties": {"market": {"type": "string"}}, "required": ["market"]},
    ),
    ToolSpec(
        name="send_note",
        description="Send an internal note to a partner.",
        parameters={
            "type": "object",
            "properties": {"partner": {"type": "string"}, "text": {"type": "string"}},
            "required": ["partner", "text"],
        },
    ),
]


def _system_prompt(asm: Assembler, target_tokens: int) -> str:
    """Instructions plus whole essay paragraphs until the system message reaches ~``target_tokens``."""
    tok = asm.counter.tokenizer
    parts = [INSTRUCTIONS]
    for p in essay_paragraphs():
        if tok.count("".join(parts)) >= target_tokens:
            break
        if 200 <= len(p.text) <= 900:
            parts.append(p.text + "\n")
    return "".join(parts)


class _Retriever:
    def __init__(self, skip: int) -> None:
        paras = [p for p in essay_paragraphs() if 200 <= len(p.text) <= 700][skip:]
        self.paras = paras[:1500]
        self.texts = [p.text for p in self.paras]

    def __call__(self, query: str, k: int = 2) -> list[Chunk]:
        scores = lexical_scores(query, self.texts)
        best = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]
        return [
            Chunk(
                text=self.paras[i].text,
                score=max(scores[i], 0.01),
                id=f"{self.paras[i].doc_id}#{self.paras[i].position}",
            )
            for i in best
        ]


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n].rsplit(" ", 1)[0] + " …"


def build_sessions(
    model: str, chats: Any, *, turns: int, message_chars: int, system_tokens: int = 1500, history: str = "sent"
) -> tuple[list[list[AssembledPrompt]], list[list[AssembledPrompt]]]:
    """Both layouts of every session, assembled for ``model``.

    ``history="sent"``: ctxkit's transcript keeps each user message as sent (with its retrieved
    context); ``"raw"``: it keeps the raw user message, like the naive layout.
    """
    budget = Budget.for_model(model, output_reserve=64) if model == LOCAL else None
    asm = Assembler(model, budget)
    system = _system_prompt(Assembler("gpt-4o"), system_tokens)
    retrieve = _Retriever(skip=200)
    ours_all, naive_all = [], []
    for chat in chats:
        ours: list[AssembledPrompt] = []
        naive: list[AssembledPrompt] = []
        sent_history: list[Message] = []
        raw_history: list[Message] = []
        for t in range(turns):
            user = _cut(chat[2 * t].content, message_chars)
            answer = _cut(chat[2 * t + 1].content, message_chars)
            chunks = retrieve(user)
            p = asm.assemble(query=user, system=system, tools=TOOLS, history=sent_history, chunks=chunks)
            context = "".join(f'<document id="{c.id}">\n{c.text}\n</document>\n' for c in chunks)
            stamp = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
            naive_system = f"Current date and time: {stamp}\n\n{HEADER}\n\n{context}\n{system}"
            q = asm.assemble(query=user, system=naive_system, tools=TOOLS, history=raw_history)
            if p.dropped or q.dropped:
                raise RuntimeError(f"session does not fit {model}'s window at turn {t}; lower --message-chars")
            ours.append(p)
            naive.append(q)
            kept = p.messages[-1] if history == "sent" else Message.user(user)
            sent_history = [*sent_history, kept, Message.assistant(answer)]
            raw_history = [*raw_history, Message.user(user), Message.assistant(answer)]
        ours_all.append(ours)
        naive_all.append(naive)
    return ours_all, naive_all


# --------------------------------------------------------------------------- real model
class _Runner:
    """One llama.cpp model with its own KV cache; runs prompts and records reuse and time."""

    def __init__(self, path: str) -> None:
        import llama_cpp

        from ctxkit.tokenizers.chat import _template_formatter

        self.llm = llama_cpp.Llama(model_path=path, n_ctx=8192, n_batch=512, n_threads=2, verbose=False)
        self.fmt = _template_formatter(self.llm)

    def tokens(self, prompt: AssembledPrompt) -> list[int]:
        out = self.fmt(
            messages=[m.to_openai() for m in prompt.messages], tools=[t.to_openai() for t in prompt.tools] or None
        )
        return list(self.llm.tokenize(out.prompt.encode("utf-8"), add_bos=not out.added_special, special=True))

    def run(self, tokens: list[int]) -> tuple[int, float]:
        """(tokens reused from the KV cache, seconds) for one call; reuse is llama-cpp-python's own rule."""
        cached = list(self.llm._input_ids) if self.llm.n_tokens else []
        common = 0
        for a, b in zip(cached, tokens, strict=False):
            if a != b:
                break
            common += 1
        reused = common - 1 if common == len(tokens) else common
        start = time.perf_counter()
        self.llm.create_completion(tokens, max_tokens=1, temperature=0.0)
        return max(reused, 0), time.perf_counter() - start

    def reset(self) -> None:
        self.llm.reset()


def run_model(ours: list[list[AssembledPrompt]], naive: list[list[AssembledPrompt]]) -> dict[str, Any]:
    from ctxkit.gguf import resolve_local_model

    path = str(resolve_local_model(None).path)  # the default SmolLM2, in the 16-bit form ctxkit runs it
    runners = {"ctxkit": _Runner(path), "naive": _Runner(path)}
    totals = {k: {"reused": 0, "tokens": 0} for k in runners}
    per_session: dict[str, list[float]] = {k: [] for k in runners}
    speedups: list[float] = []
    sim_err = 0.0
    for s, (a_sess, b_sess) in enumerate(zip(ours, naive, strict=True)):
        times = {k: 0.0 for k in runners}
        sess = {k: {"reused": 0, "tokens": 0} for k in runners}
        for r in runners.values():
            r.reset()  # a new session starts cold for both layouts
        measured_ours: list[int] = []
        for t in range(len(a_sess)):
            order = ("ctxkit", "naive") if (s + t) % 2 == 0 else ("naive", "ctxkit")
            for name in order:
                prompt = (a_sess if name == "ctxkit" else b_sess)[t]
                toks = runners[name].tokens(prompt)
                reused, secs = runners[name].run(toks)
                times[name] += secs
                if name == "ctxkit":
                    measured_ours.append(reused)
                if t >= 1:
                    sess[name]["reused"] += reused
                    sess[name]["tokens"] += len(toks)
        for k in runners:
            totals[k]["reused"] += sess[k]["reused"]
            totals[k]["tokens"] += sess[k]["tokens"]
            per_session[k].append(sess[k]["reused"] / max(sess[k]["tokens"], 1))
        speedups.append(times["naive"] / times["ctxkit"])
        predicted = simulate(a_sess, provider="llamacpp", gaps_s=0)
        for call, got in zip(predicted.calls[1:], measured_ours[1:], strict=True):
            sim_err = max(sim_err, abs(call.cached_tokens - got) / max(call.input_tokens, 1))
        print(
            f"  session {s}: reuse ctxkit {per_session['ctxkit'][-1]:.3f} naive {per_session['naive'][-1]:.3f}, "
            f"time ctxkit {times['ctxkit']:.1f}s naive {times['naive']:.1f}s",
            flush=True,
        )
    return {
        "reuse_ctxkit": round(totals["ctxkit"]["reused"] / max(totals["ctxkit"]["tokens"], 1), 4),
        "reuse_naive": round(totals["naive"]["reused"] / max(totals["naive"]["tokens"], 1), 4),
        "reuse_ctxkit_by_session": spread(per_session["ctxkit"]),
        "reuse_naive_by_session": spread(per_session["naive"]),
        "speedup_vs_naive": spread(speedups, 2),
        "sim_llamacpp_error": round(sim_err, 4),
        "prompt_tokens_from_turn_2": {k: v["tokens"] for k, v in totals.items()},
    }


def run_simulation(chats: Any, turns: int, message_chars: int, history: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for provider, model in (("anthropic", "claude-sonnet-4-5"), ("openai", "gpt-4o")):
        for mode in (history, "raw" if history == "sent" else "sent"):
            ours, naive = build_sessions(model, chats, turns=turns, message_chars=message_chars, history=mode)
            ratios, shares = [], []
            # an append-only transcript re-sends the final message next turn: it is per-session, not per-turn
            stability = {"retrieved+query": "session", "query": "session"} if mode == "sent" else None
            for a, b in zip(ours, naive, strict=True):
                cmp = compare(a, b, gaps_s=30, stability=stability)
                ratios.append(cmp.cost_ratio)
                shares.append(cmp.a.cached_share)
            suffix = "" if mode == history else f"_{mode}_history"
            out[f"simulated_cost_ratio_{provider}{suffix}"] = spread(ratios, 2)
            out[f"simulated_cached_share_ctxkit_{provider}{suffix}"] = spread(shares, 3)
    return out


def main(argv: list[str]) -> dict[str, object]:
    ap = argparse.ArgumentParser(prog="cache")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--turns", type=int, default=10)
    ap.add_argument("--sim-sessions", type=int, default=20)
    ap.add_argument("--message-chars", type=int, default=400)
    ap.add_argument("--no-model", action="store_true", help="simulation only")
    ap.add_argument("--history", choices=["sent", "raw"], default="sent", help="ctxkit's transcript policy")
    args = ap.parse_args(argv)
    sessions, turns = (2, 6) if args.quick else (args.sessions, args.turns)
    n_chats = max(sessions, args.sim_sessions)
    chats = chat_histories(2 * max(turns, args.turns), n_chats)
    result: dict[str, object] = {
        "sessions": sessions,
        "turns": turns,
        "sim_sessions": args.sim_sessions,
        "message_chars": args.message_chars,
    }
    start = time.perf_counter()
    result["history"] = args.history
    result.update(run_simulation(chats[: args.sim_sessions], args.turns, args.message_chars, args.history))
    result["simulation_seconds"] = round(time.perf_counter() - start, 1)
    if not args.no_model:
        ours, naive = build_sessions(
            LOCAL, chats[:sessions], turns=turns, message_chars=args.message_chars, history=args.history
        )
        system_tokens = ours[0][0].sections["system"].used + ours[0][0].sections["tools"].used
        result["system_and_tools_tokens_local"] = system_tokens
        start = time.perf_counter()
        result.update(run_model(ours, naive))
        result["model_seconds"] = round(time.perf_counter() - start, 1)
    return result
