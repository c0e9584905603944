"""Vector indexes (FAISS, NumPy, Qdrant local mode), BM25, fusion, MMR and dedupe, without the model.

Vectors here are random unit vectors: these tests pin exactness, filters, mutation and
persistence. Recall of the approximate index on *real* MiniLM embeddings is checked in
``test_retrieval_model.py``.
"""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxkit.errors import InvalidInputError, ResourceError
from ctxkit.retrieval import (
    BM25Index,
    FaissIndex,
    NumpyIndex,
    QdrantIndex,
    load_index,
    matches_filter,
    mmr,
    near_duplicates,
    rrf_fuse,
)

EXAMPLES = settings().max_examples  # the conftest profile (CTXKIT_HYPOTHESIS_EXAMPLES)
DIM = 32


def _unit(n: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _data(n: int = 500) -> tuple[list[str], np.ndarray, list[dict]]:
    ids = [f"c{i}" for i in range(n)]
    meta = [{"doc": f"d{i % 7}", "n": i, "lang": "en" if i % 3 else "fr"} for i in range(n)]
    return ids, _unit(n), meta


def _brute(vecs: np.ndarray, ids: list[str], q: np.ndarray, k: int, keep: list[bool] | None = None) -> list[str]:
    sims = vecs @ q
    order = [int(i) for i in np.argsort(-sims, kind="stable")]
    return [ids[i] for i in order if keep is None or keep[i]][:k]


INDEXES = [
    pytest.param(lambda: NumpyIndex(DIM), id="numpy"),
    pytest.param(lambda: FaissIndex(DIM, kind="flat"), id="faiss-flat"),
    pytest.param(lambda: FaissIndex(DIM, kind="hnsw", exact_below=0), id="faiss-hnsw"),
    pytest.param(lambda: FaissIndex(DIM, kind="ivf", nprobe=1000, exact_below=0), id="faiss-ivf"),
    pytest.param(lambda: QdrantIndex(DIM), id="qdrant-memory"),
]
# Exact indexes (brute force; IVF probing every list) must return the true top-k; HNSW is a graph
# search, approximate by design, and is held to its recall instead.
APPROXIMATE = {"faiss-hnsw"}


@pytest.mark.parametrize("make", INDEXES)
def test_search_matches_brute_force(make, request: pytest.FixtureRequest) -> None:
    ids, vecs, meta = _data()
    ix = make()
    ix.add(ids, vecs, meta)
    assert len(ix) == 500 and "c3" in ix and "zz" not in ix
    queries = _unit(20, seed=1)
    approximate = request.node.callspec.id in APPROXIMATE
    overlap = []
    for q, hits in zip(queries, ix.search_batch(queries, 10), strict=True):
        want = _brute(vecs, ids, q, 10)
        got = [h.id for h in hits]
        if approximate:
            overlap.append(len(set(got) & set(want)))
        else:
            assert got == want
            assert [h.score for h in hits] == pytest.approx([float(vecs[ids.index(i)] @ q) for i in want], abs=1e-5)
        assert all(a.score >= b.score - 1e-6 for a, b in itertools.pairwise(hits))
    if approximate:
        assert sum(overlap) / (10 * len(queries)) >= 0.95, overlap  # recall@10 over 20 queries
    exact = ix.search(vecs[42], 1)[0]
    assert exact.id == "c42" and exact.score == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("make", INDEXES)
def test_filters_update_and_delete(make) -> None:
    ids, vecs, meta = _data()
    ix = make()
    ix.add(ids, vecs, meta)
    flt = {"doc": "d3", "n": {"$gte": 100, "$lt": 400}, "lang": {"$in": ["en"]}}
    keep = [matches_filter(m, flt) for m in meta]
    q = _unit(1, seed=5)[0]
    got = ix.search(q, 5, filter=flt)
    assert [h.id for h in got] == _brute(vecs, ids, q, 5, keep)
    assert all(matches_filter(ix.get_metadata(h.id), flt) for h in got)
    assert {h.id for h in ix.search(q, 500, filter={"lang": {"$nin": ["en"]}, "doc": {"$ne": "d0"}})} == {
        i for i, m in zip(ids, meta, strict=True) if m["lang"] == "fr" and m["doc"] != "d0"
    }
    # update: c7 now points where c8 does, with new metadata
    ix.upsert(["c7"], vecs[8:9], [{"doc": "new"}])
    assert {h.id for h in ix.search(vecs[8], 2)} == {"c7", "c8"}
    assert ix.get_metadata("c7") == {"doc": "new"}
    np.testing.assert_allclose(ix.get_vectors(["c7"])[0], vecs[8], atol=1e-6)
    # delete
    assert ix.delete(["c8", "c7", "missing"]) == 2
    assert len(ix) == 498 and "c8" not in ix
    assert "c8" not in {h.id for h in ix.search(vecs[8], 20)}
    with pytest.raises(InvalidInputError, match="already"):
        ix.add(["c1"], vecs[1:2])
    with pytest.raises(InvalidInputError, match="shape"):
        ix.add(["new"], np.ones((1, DIM + 1)))
    with pytest.raises(InvalidInputError, match="unknown operators"):
        ix.search(q, 3, filter={"doc": {"$regex": "d"}})


def test_faiss_auto_switches_to_hnsw_and_compacts() -> None:
    ix = FaissIndex(DIM, approx_threshold=300)
    ids, vecs, meta = _data(600)
    ix.add(ids[:200], vecs[:200], meta[:200])
    ix.search(vecs[0], 1)
    assert ix.active_kind == "flat"
    ix.add(ids[200:], vecs[200:], meta[200:])
    assert ix.search(vecs[500], 1)[0].id == "c500"
    assert ix.active_kind == "hnsw"
    assert type(ix.faiss_index).__name__ == "IndexHNSWFlat"
    ix.delete(ids[:250])
    ix.compact()
    assert len(ix) == 350 and ix.search(vecs[300], 1)[0].id == "c300"


@pytest.mark.parametrize("make", [lambda: NumpyIndex(DIM), lambda: FaissIndex(DIM, kind="hnsw")])
def test_save_load_roundtrip(tmp_path: Path, make) -> None:
    ids, vecs, meta = _data(300)
    ix = make()
    ix.add(ids, vecs, meta)
    ix.delete(["c0"])
    path = ix.save(tmp_path / "sub" / "index.ctx")
    back = load_index(path)
    assert type(back) is type(ix) and len(back) == 299 and "c0" not in back
    assert back.get_metadata("c5") == meta[5]
    q = _unit(5, seed=9)
    assert [[h.id for h in r] for r in back.search_batch(q, 5)] == [[h.id for h in r] for r in ix.search_batch(q, 5)]
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]  # no temp files left behind


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ResourceError, match="no index file"):
        load_index(tmp_path / "nope")
    (tmp_path / "junk").write_bytes(b"not an index")
    with pytest.raises(ResourceError, match="not a ctxkit index"):
        load_index(tmp_path / "junk")
    ix = NumpyIndex(DIM)
    ix.add(["a"], _unit(1))
    p = ix.save(tmp_path / "cut")
    p.write_bytes(p.read_bytes()[:-40])
    with pytest.raises(ResourceError, match="corrupt or truncated"):
        load_index(p)


_CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from ctxkit.retrieval import FaissIndex
    import ctxkit.retrieval.index as mod

    path = sys.argv[1]
    rng = np.random.default_rng(0)
    v = rng.normal(size=(400, 32)).astype("float32")
    ix = FaissIndex(32, kind="hnsw")
    ix.add([f"old{i}" for i in range(100)], v[:100])
    ix.save(path)
    print("saved-v1", flush=True)
    ix.add([f"new{i}" for i in range(300)], v[100:])

    def slow(part):  # hold the save open after its first part so the parent can kill it
        print("wrote-" + part, flush=True)
        time.sleep(60)

    mod._save_hook = slow
    ix.save(path)
    print("saved-v2", flush=True)
    """
)


def test_killed_mid_save_leaves_previous_index_loadable(tmp_path: Path) -> None:
    path = tmp_path / "index.ctx"
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    with subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "saved-v1"
            assert proc.stdout.readline().strip() == "wrote-header"
            temps = [p for p in tmp_path.iterdir() if p.name.startswith(".index.ctx.tmp-")]
            assert temps and temps[0].stat().st_size > 0, "the new index is being written beside the old one"
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == -signal.SIGKILL
    ix = load_index(path)
    assert len(ix) == 100 and "old5" in ix and "new0" not in ix
    assert ix.search(ix.get_vectors(["old7"])[0], 1)[0].id == "old7"


def test_qdrant_local_path_persists(tmp_path: Path) -> None:
    ids, vecs, meta = _data(50)
    ix = QdrantIndex(DIM, path=tmp_path / "q", collection="chunks")
    ix.add(ids, vecs, meta)
    ix.close()
    again = QdrantIndex(DIM, path=tmp_path / "q", collection="chunks")
    assert len(again) == 50 and again.search(vecs[3], 1)[0].id == "c3"
    with pytest.raises(InvalidInputError, match="384"):
        QdrantIndex(384, client=again.client, collection="chunks")
    again.close()


# --------------------------------------------------------------------------- BM25
def test_bm25_ranks_by_terms_with_filters_and_deletes() -> None:
    bm = BM25Index()
    texts = {
        "a": "the quick brown fox jumps over the lazy dog",
        "b": "startup founders should talk to users early",
        "c": "a fox den in the forest near the river",
        "d": "hiring is the hardest problem for startup founders",
    }
    bm.upsert(list(texts), list(texts.values()), [{"t": "animal"}, {"t": "biz"}, {"t": "animal"}, {"t": "biz"}])
    assert [h.id for h in bm.search("fox", 5)] == ["a", "c"] or [h.id for h in bm.search("fox", 5)] == ["c", "a"]
    assert [h.id for h in bm.search("startup founders hiring", 1)] == ["d"]
    assert [h.id for h in bm.search("founders", 5, filter={"t": "animal"})] == []
    assert bm.search("zebra", 3) == []
    assert bm.delete(["d", "x"]) == 1
    assert [h.id for h in bm.search("startup founders hiring", 5)] == ["b"]
    with pytest.raises(InvalidInputError):
        bm.search("x", 0)


# --------------------------------------------------------------------------- fusion, MMR, dedupe
def test_rrf_matches_formula() -> None:
    fused = dict(rrf_fuse([["a", "b", "c"], ["c", "a"]], k=60))
    assert fused["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert fused["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert fused["b"] == pytest.approx(1 / 62)
    assert [i for i, _ in rrf_fuse([["a", "b", "c"], ["c", "a"]])] == ["a", "c", "b"]
    assert rrf_fuse([]) == []
    w = dict(rrf_fuse([["a"], ["b"]], weights=[2.0, 1.0]))
    assert w["a"] == pytest.approx(2 / 61)


def _mmr_reference(q: np.ndarray, c: np.ndarray, k: int, lam: float) -> list[int]:
    rel = c @ q
    picked: list[int] = []
    while len(picked) < min(k, len(c)):
        best, best_s = -1, -np.inf
        for i in range(len(c)):
            if i in picked:
                continue
            div = max((float(c[i] @ c[j]) for j in picked), default=0.0)
            s = rel[i] if not picked else lam * rel[i] - (1 - lam) * div
            if s > best_s:
                best, best_s = i, s
        picked.append(best)
    return picked


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.integers(1, 40), st.integers(1, 12), st.floats(0, 1), st.integers(0, 2**31))
def test_property_mmr_equals_pairwise_reference(n: int, k: int, lam: float, seed: int) -> None:
    c = _unit(n, seed, dim=8)
    q = _unit(1, seed + 1, dim=8)[0]
    got = mmr(q, c, k, lambda_=lam)
    want = _mmr_reference(q.astype(np.float64), c.astype(np.float64), k, lam)
    assert len(got) == len(set(got)) == min(k, n)
    assert got[0] == want[0]
    # float32 ties aside, the picks agree
    assert got == want or np.allclose(c[got] @ q, c[want] @ q, atol=1e-5)


def _dedupe_reference(v: np.ndarray, thr: float) -> list[int]:
    kept: list[int] = []
    for i in range(len(v)):
        if all(float(v[i] @ v[j]) < thr for j in kept):
            kept.append(i)
    return kept


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.integers(1, 40), st.integers(0, 2**31), st.floats(0.5, 0.99))
def test_property_near_duplicates_equals_greedy_reference(n: int, seed: int, thr: float) -> None:
    base = _unit(max(1, n // 3), seed, dim=4)
    rng = np.random.default_rng(seed)
    v = base[rng.integers(0, len(base), n)] + rng.normal(scale=0.05, size=(n, 4)).astype(np.float32)
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    got = near_duplicates(v, threshold=thr)
    sims = v @ v.T
    kept_sims = sims[np.ix_(got, got)] - np.eye(len(got)) * 10
    assert (kept_sims < thr + 1e-5).all(), "no two kept items are near-duplicates"
    ref = _dedupe_reference(v.astype(np.float64), thr)
    if not np.any(np.abs(sims - thr) < 1e-5):  # away from float ties the greedy sets agree
        assert got == ref


def test_mmr_relevance_scores_and_errors() -> None:
    c = _unit(5, 3)
    assert mmr(None, c, 2, lambda_=1.0, relevance=[0.1, 0.9, 0.5, 0.2, 0.3]) == [1, 2]
    with pytest.raises(InvalidInputError):
        mmr(c[0], c, 2, lambda_=1.5)
    assert near_duplicates(np.vstack([c[0], c[0], c[1]])) == [0, 2]


def test_import_is_light_and_missing_extras_name_the_extra() -> None:
    code = (
        "import sys, ctxkit.retrieval\n"
        "heavy = [m for m in ('faiss', 'torch', 'sentence_transformers', 'bm25s', 'qdrant_client', 'tqdm') "
        "if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("module", "make"),
    [("faiss", lambda: FaissIndex(DIM)), ("bm25s", BM25Index), ("qdrant_client", lambda: QdrantIndex(DIM))],
)
def test_missing_dependency_names_the_retrieval_extra(monkeypatch: pytest.MonkeyPatch, module: str, make) -> None:
    from ctxkit.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'ctxkit\[retrieval\]'"):
        make()
