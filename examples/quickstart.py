"""ctxkit quickstart: exact offline token counts and a budgeted prompt, on real data.

Runs on embedded defaults only: no API key, no internet.

    nox -s demo            # or: python examples/quickstart.py
"""

from __future__ import annotations

import time

from ctxkit import Assembler, Budget, Chunk, count_tokens, get_tokenizer
from ctxkit.datasets import chat_histories, essay_paragraphs, lexical_scores


def show_counting() -> None:
    text = "Token prices fall, yet AI bills rise: applications send too many tokens to too large a model."
    print("== Token counts (exact, offline) ==")
    for model in ("gpt-4o", "gpt-4", "claude-sonnet-4", "smollm2-135m-instruct"):
        tok = get_tokenizer(model)
        kind = "exact" if tok.exact else f"estimate (±{tok.error_margin:.0%}, upper bound shown)"
        print(f"  {model:<24} {count_tokens(text, model):>4} tokens   [{tok.name}, {kind}]")
    print()


def show_assembly() -> None:
    query = "How should a startup founder think about fundraising and investors?"
    paragraphs = essay_paragraphs()
    scores = lexical_scores(query, [p.text for p in paragraphs])
    top = sorted(range(len(paragraphs)), key=lambda i: -scores[i])[:50]
    chunks = [
        Chunk(
            text=paragraphs[i].text,
            score=round(scores[i], 3),
            id=f"{paragraphs[i].doc_id}#{paragraphs[i].position}",
            doc_id=paragraphs[i].doc_id,
            title=paragraphs[i].doc_id,
            position=paragraphs[i].position,
        )
        for i in top
    ]
    history = list(chat_histories(40, 1)[0])
    print(f"== Budgeted assembly: {len(chunks)} retrieved essay paragraphs, a {len(history)}-message real chat ==")
    for limit in (1_000, 4_000, 16_000):
        assembler = Assembler(
            "gpt-4o", Budget.for_model("gpt-4o", max_input_tokens=limit, output_reserve=1_000), chunk_order="edges"
        )
        t0 = time.perf_counter()
        prompt = assembler.assemble(
            system="You are a concise assistant. Answer from the context; cite document ids.",
            history=history,
            chunks=chunks,
            query=query,
        )
        ms = (time.perf_counter() - t0) * 1000
        print(f"\n-- budget {limit} tokens: {prompt.total_tokens} used, assembled in {ms:.1f} ms --")
        print(prompt.section_table())
        dropped = prompt.dropped
        reasons = sorted({a.reason.split(":")[0] for a in dropped})
        print(f"audit: {len(dropped)} items dropped, {len(prompt.truncated)} truncated; reasons: {reasons[:3]}")


if __name__ == "__main__":
    show_counting()
    show_assembly()
