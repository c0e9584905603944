"""An existing-style LangChain RAG chain, run as-is and then with ctxkit swapped in.

The pipeline is the usual LCEL one: a vector-store retriever (top 6 paragraphs of
Paul Graham essays, real MiniLM embeddings), ``format_docs``, a ``ChatPromptTemplate``
that stuffs everything, a chat model on the local SmolLM2-135M-Instruct, and a string
parser. Adopting ctxkit changes two lines::

    prompt = ChatPromptTemplate.from_messages([...])            ->  prompt = CtxkitPrompt(model=..., budget=400, ...)
    llm = ChatLlamaCpp(model_path=..., ...)                     ->  llm = ChatCtxkit(model="llamacpp:default", ...)

The first packs the retrieved paragraphs into a token budget by relevance (the stable
system prompt first, so llama.cpp reuses its KV cache across questions); the second
answers through ctxkit's dispatcher. Both runs are measured by the same ledger callback
(:class:`ctxkit.telemetry.langchain.LedgerCallbackHandler`). The local model costs
nothing per token, so the table also prices the same tokens at a paid API model's list
price. Run: ``python examples/langchain_rag.py``
"""

from __future__ import annotations

import sys
from decimal import Decimal
from typing import Any

QUESTIONS = (
    "What should founders do when they are starting a startup?",
    "How do investors decide which companies to fund?",
)
SYSTEM = "You answer questions about essays. Answer from the context in one short sentence."
LOCAL_MODEL = "smollm2-135m-instruct"
PRICED_MODEL = "gpt-4o-mini"  # list price used to show what the same tokens would cost on an API
MAX_TOKENS = 24
BUDGET = 400  # ctxkit: the whole prompt (system + context + question) fits 400 tokens


def build_retriever(k: int = 6) -> Any:
    """An in-memory vector store of essay paragraphs with real, offline MiniLM embeddings."""
    from langchain_core.vectorstores import InMemoryVectorStore

    from ctxkit.datasets import essay_paragraphs
    from ctxkit.integrations.langchain import CtxkitEmbeddings

    paragraphs = essay_paragraphs(200)[:40]
    store = InMemoryVectorStore(CtxkitEmbeddings())
    store.add_texts([p.text for p in paragraphs], metadatas=[{"source": p.doc_id} for p in paragraphs])
    return store.as_retriever(search_kwargs={"k": k})


def format_docs(docs: list[Any]) -> str:
    return "\n\n".join(d.page_content for d in docs)


def make_chain(retriever: Any, *, use_ctxkit: bool) -> Any:
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.runnables import RunnablePassthrough

    from ctxkit.gguf import extra_bufts_guard, resolve_local_model
    from ctxkit.integrations.langchain import ChatCtxkit, CtxkitPrompt

    if not use_ctxkit:  # the pipeline as it was
        from langchain_community.chat_models import ChatLlamaCpp

        prompt = ChatPromptTemplate.from_messages(
            [("system", SYSTEM), ("human", "Context:\n{context}\n\nQuestion: {question}")]
        )
        # The same weights ctxkit runs (the default model in 16 bits). The guard applies ctxkit's
        # decision on llama.cpp's extra buffer types to models other libraries build, so a
        # quantized model does not crash on AMX CPUs.
        path = str(resolve_local_model(None).path)
        with extra_bufts_guard(path):
            llm = ChatLlamaCpp(
                model_path=path,
                n_ctx=4096,
                n_batch=512,
                max_tokens=MAX_TOKENS,
                temperature=0,
                streaming=False,
                verbose=False,
            )
    else:  # the same pipeline with ctxkit: these two statements changed
        prompt = CtxkitPrompt(model=LOCAL_MODEL, budget=BUDGET, system=SYSTEM, context_separator="\n\n")
        llm = ChatCtxkit(model="llamacpp:default", max_tokens=MAX_TOKENS)

    return {"context": retriever | format_docs, "question": RunnablePassthrough()} | prompt | llm | StrOutputParser()


def run(retriever: Any, *, use_ctxkit: bool) -> dict[str, Any]:
    """Answer every question; return the tokens and cost the ledger saw."""
    from ctxkit.pricing import cost
    from ctxkit.telemetry import Ledger
    from ctxkit.telemetry.langchain import LedgerCallbackHandler

    ledger = Ledger()
    chain = make_chain(retriever, use_ctxkit=use_ctxkit)
    handler = LedgerCallbackHandler(ledger, workflow="rag")
    answers = [chain.invoke(q, config={"callbacks": [handler]}) for q in QUESTIONS]
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
    retriever = build_retriever()
    before = run(retriever, use_ctxkit=False)
    after = run(retriever, use_ctxkit=True)
    print(f"LangChain RAG over {len(QUESTIONS)} questions on the local {LOCAL_MODEL}")
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
