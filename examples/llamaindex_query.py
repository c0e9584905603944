"""An existing-style LlamaIndex query engine, run as-is and then with ctxkit swapped in.

The pipeline is the usual one: a ``VectorStoreIndex`` over Paul Graham essay paragraphs
(real MiniLM embeddings, offline), ``as_query_engine(similarity_top_k=6)`` and a
llama.cpp LLM on the local SmolLM2-135M-Instruct. Adopting ctxkit changes two lines::

    llm = LlamaCPP(model_path=..., ...)                   ->  llm = CtxkitLLM(model="llamacpp:default", ...)
    engine = index.as_query_engine(llm=llm, ...)          ->  ... node_postprocessors=[CtxkitNodePostprocessor(...)]

The postprocessor packs the retrieved nodes into a token budget by score; the LLM
answers through ctxkit's dispatcher. Both runs are measured the same way, by ctxkit's
LlamaIndex event handler (:func:`ctxkit.telemetry.llamaindex.instrument_llamaindex`),
which reads the usage each LLM reports. The local model costs nothing per token, so
the table also prices the same tokens at a paid API model's list price.
Run: ``python examples/llamaindex_query.py``
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

QUESTIONS = (
    "What should founders do when they are starting a startup?",
    "How do investors decide which companies to fund?",
)
LOCAL_MODEL = "smollm2-135m-instruct"
PRICED_MODEL = "gpt-4o-mini"  # list price used to show what the same tokens would cost on an API
MAX_TOKENS = 24
BUDGET = 300  # ctxkit: retrieved context packed into 300 tokens


def build_index() -> Any:
    from llama_index.core import Document, VectorStoreIndex

    from ctxkit.datasets import essay_paragraphs
    from ctxkit.integrations.llamaindex import CtxkitEmbedding

    paragraphs = essay_paragraphs(200)[:40]
    docs = [Document(text=p.text, metadata={"essay": p.doc_id}) for p in paragraphs]
    return VectorStoreIndex.from_documents(docs, embed_model=CtxkitEmbedding())


def chatml(messages: Sequence[Any]) -> str:
    """SmolLM2's ChatML prompt format, as a llama.cpp LlamaIndex pipeline configures it."""
    text = "".join(f"<|im_start|>{m.role.value}\n{m.content}<|im_end|>\n" for m in messages)
    return text + "<|im_start|>assistant\n"


def make_engine(index: Any, *, use_ctxkit: bool) -> Any:
    from llama_index.core.base.llms.types import ChatMessage, MessageRole

    from ctxkit.gguf import extra_bufts_guard, resolve_local_model
    from ctxkit.integrations.llamaindex import CtxkitLLM, CtxkitNodePostprocessor

    if not use_ctxkit:  # the pipeline as it was
        from llama_index.llms.llama_cpp import LlamaCPP

        # The same weights ctxkit runs; the guard keeps a quantized model from crashing on AMX CPUs.
        path = str(resolve_local_model(None).path)
        with extra_bufts_guard(path):
            llm = LlamaCPP(
                model_path=path,
                temperature=0.0,
                max_new_tokens=MAX_TOKENS,
                context_window=4096,
                messages_to_prompt=chatml,
                completion_to_prompt=lambda p: chatml([ChatMessage(role=MessageRole.USER, content=p)]),
                verbose=False,
            )
        engine = index.as_query_engine(llm=llm, similarity_top_k=6)
    else:  # the same pipeline with ctxkit: these two statements changed
        llm = CtxkitLLM(model="llamacpp:default", max_tokens=MAX_TOKENS, context_window=4096)
        engine = index.as_query_engine(
            llm=llm,
            similarity_top_k=6,
            node_postprocessors=[CtxkitNodePostprocessor(budget_tokens=BUDGET, tokenizer=LOCAL_MODEL)],
        )
    return engine


def run(index: Any, *, use_ctxkit: bool) -> dict[str, Any]:
    """Answer every question; return the tokens and cost the ledger saw."""
    from ctxkit.pricing import cost
    from ctxkit.telemetry import Ledger
    from ctxkit.telemetry.llamaindex import instrument_llamaindex

    ledger = Ledger()
    engine = make_engine(index, use_ctxkit=use_ctxkit)
    handler = instrument_llamaindex(ledger, workflow="query")
    try:
        answers = [str(engine.query(q)) for q in QUESTIONS]
    finally:
        handler.detach()
    usage = ledger.total_usage()
    return {
        "calls": len(ledger),
        "input_tokens": usage.input_tokens,
        "cache_read_tokens": usage.cache_read_tokens,
        "output_tokens": usage.output_tokens,
        "cost": ledger.total_cost(),
        "priced_cost": cost(usage, PRICED_MODEL),
        "answers": answers,
    }


def _fmt(value: Decimal | None) -> str:
    return "unknown" if value is None else f"${value:.6f}"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    index = build_index()
    before = run(index, use_ctxkit=False)
    after = run(index, use_ctxkit=True)
    print(f"LlamaIndex query engine over {len(QUESTIONS)} questions on the local {LOCAL_MODEL}")
    print(f"{'':16}{'tokens sent':>12}{'cache read':>12}{'output':>8}{'local cost':>12}  cost at {PRICED_MODEL} prices")
    for label, r in (("as-is", before), ("with ctxkit", after)):
        print(
            f"{label:16}{r['input_tokens']:>12}{r['cache_read_tokens']:>12}{r['output_tokens']:>8}"
            f"{_fmt(r['cost']):>12}  {_fmt(r['priced_cost'])}"
        )
    saved = 1 - after["input_tokens"] / before["input_tokens"] if before["input_tokens"] else 0.0
    print(f"tokens sent: {before['input_tokens']} -> {after['input_tokens']} ({saved:.0%} fewer)")
    for q, a in zip(QUESTIONS, after["answers"], strict=True):
        print(f"Q: {q}\nA: {a.strip()}")
    return {"before": before, "after": after, "saved": saved}


if __name__ == "__main__":
    main(sys.argv[1:])
