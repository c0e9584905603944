"""Issue 14: the retriever and the count caches under concurrent reads and writes.

Threads add, replace and delete documents while others retrieve, search and save. Every
operation must finish without an exception (a typed "no chunk with id" for a chunk deleted
in between is the only allowed error, and only from ``get_chunk``), and every result must
be a consistent snapshot: each returned chunk is a piece of a version of its document that
was really added, all chunks of one document in one result come from the same version,
and the result fits its budget when recounted by a tokenizer that shares no cache.

The caches are made tiny so that every put evicts: the eviction race of issue 14 (two
threads deleting the same oldest key) happened on the token-count cache.
"""

from __future__ import annotations

import random
import re
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from _hash_embedder import HashEmbedder
from ctxkit._lru import LRUCache
from ctxkit.assembly.assembler import document_block
from ctxkit.errors import InvalidInputError
from ctxkit.messages import Chunk
from ctxkit.retrieval import Chunker, FaissIndex, NumpyIndex, Retriever
from ctxkit.retrieval.embeddings import EmbeddingCache
from ctxkit.retrieval.index import BaseVectorIndex
from ctxkit.tokenizers import get_tokenizer
from ctxkit.tokenizers._tiktoken import TiktokenTokenizer
from ctxkit.tokenizers.base import BaseTokenizer, TokenCountCache

WORDS = ["refund", "budget", "token", "faiss", "thread", "policy", "window", "cache", "model", "query", "delete"]
DOCS = [f"doc{i}" for i in range(12)]
TOK = "tiktoken:cl100k_base"
_VERSION = re.compile(r"\bver(\d+)\b")


@pytest.fixture(autouse=True)
def _frequent_thread_switches() -> Iterator[None]:
    """Switch threads every 10 µs instead of 5 ms, so races show up in a few thousand operations."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(before)


@pytest.fixture
def tiny_shared_count_cache() -> Iterator[None]:
    """The shared cl100k tokenizer with a 16-entry count cache for one test: nearly every count evicts."""
    tok = get_tokenizer(TOK)
    assert isinstance(tok, BaseTokenizer)
    before = tok.cache
    tok.cache = TokenCountCache(16)
    yield
    tok.cache = before


@dataclass
class Stress:
    ops: int = 0
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    texts: dict[tuple[str, int], str] = field(default_factory=dict)  # (doc, version) -> full text, before adding
    next_version: int = 0

    def fail(self, what: str) -> None:
        with self.lock:
            self.failures.append(what)


def _text(rng: random.Random, version: int) -> str:
    return " ".join(f"{rng.choice(WORDS)} ver{version}" for _ in range(rng.randint(5, 120)))


def _check_result(st: Stress, chunks: list[Chunk], budget: int | None, fresh: TiktokenTokenizer, what: str) -> None:
    seen_version: dict[str, int] = {}
    for c in chunks:
        versions = {int(v) for v in _VERSION.findall(c.text)}
        if len(versions) != 1:
            st.fail(f"{what}: chunk {c.id} mixes versions {sorted(versions)}")
            continue
        (version,) = versions
        with st.lock:
            full = st.texts.get((c.doc_id, version))
        if full is None or c.text not in full:
            st.fail(f"{what}: chunk {c.id} is not a piece of {c.doc_id} version {version} as added")
        if seen_version.setdefault(c.doc_id, version) != version:
            st.fail(f"{what}: {c.doc_id} appears in versions {seen_version[c.doc_id]} and {version} in one result")
    if budget is not None:
        cost = sum(fresh.count(document_block(c)) for c in chunks)
        if cost > budget:
            st.fail(f"{what}: {cost} tokens recounted for a budget of {budget}")


def _worker(r: Retriever, st: Stress, seed: int, n_ops: int, save_to: Path | None) -> None:
    rng = random.Random(seed)
    fresh = TiktokenTokenizer("cl100k_base", cache_size=1)
    for _ in range(n_ops):
        op = rng.random()
        try:
            if op < 0.30:  # add or replace a document
                doc = rng.choice(DOCS)
                with st.lock:
                    st.next_version += 1
                    version = st.next_version
                text = _text(rng, version)
                with st.lock:
                    st.texts[(doc, version)] = text
                stored = r.add_documents([{"id": doc, "text": text}], progress=False)
                _check_result(st, stored, None, fresh, "add_documents")
            elif op < 0.40:
                r.delete_documents([rng.choice(DOCS)])
            elif op < 0.85:
                budget = rng.randint(0, 600)
                got = r.retrieve(rng.choice(WORDS), budget, diversity=rng.random() < 0.5)
                _check_result(st, got, budget, fresh, "retrieve")
            elif op < 0.97:
                found = r.search(rng.choice(WORDS), rng.randint(1, 20))
                _check_result(st, found, None, fresh, "search")
                for c in found[:3]:
                    try:
                        again = r.get_chunk(c.id)
                    except InvalidInputError:
                        continue  # deleted since the search: the typed error is the contract
                    _check_result(st, [again], None, fresh, "get_chunk")
            elif save_to is not None:
                path = r.save(save_to / f"r{seed}.ctx")
                back = Retriever.load(path, embedder=r.embedder)
                _check_result(st, list(back._chunks.values()), None, fresh, "save/load")
        except Exception as exc:
            st.fail(f"{type(exc).__name__}: {exc}")
        with st.lock:
            st.ops += 1


def run_stress(
    make_index: Callable[[int], BaseVectorIndex], *, hybrid: bool, threads: int, ops_per_thread: int, save_to: Path
) -> Stress:
    tok = get_tokenizer(TOK)  # its cache is swapped for a tiny one by the fixture tiny_shared_count_cache
    emb = HashEmbedder(cache=EmbeddingCache(max_memory_entries=16))
    r = Retriever(emb, make_index(emb.dim), tokenizer=TOK, hybrid=hybrid, chunker=Chunker(48, 8, tokenizer=tok))
    st = Stress()
    pool = [
        threading.Thread(target=_worker, args=(r, st, seed, ops_per_thread, save_to if seed == 0 else None))
        for seed in range(threads)
    ]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    # afterwards the retriever is whole: every stored chunk has its vector, every id its chunk
    if sorted(r.index.ids) != sorted(r._chunks) or sorted(c for ids in r._by_doc.values() for c in ids) != sorted(
        r._chunks
    ):
        st.fail("the chunk store, the document map and the index disagree after the run")
    if r.lexical is not None and len(r.lexical) != len(r):
        st.fail("BM25 and the chunk store disagree after the run")
    return st


@pytest.mark.parametrize(
    ("make_index", "hybrid"),
    [
        pytest.param(lambda d: NumpyIndex(d), True, id="numpy-hybrid"),
        pytest.param(lambda d: FaissIndex(d, kind="flat"), False, id="faiss-flat-vector"),
        pytest.param(lambda d: FaissIndex(d, kind="hnsw"), True, id="faiss-hnsw-hybrid"),
    ],
)
def test_mixed_threads_see_consistent_snapshots(
    tmp_path: Path, make_index: Callable[[int], BaseVectorIndex], hybrid: bool, tiny_shared_count_cache: None
) -> None:
    st = run_stress(make_index, hybrid=hybrid, threads=6, ops_per_thread=400, save_to=tmp_path)
    assert st.ops == 6 * 400
    assert st.failures == [], f"{len(st.failures)} failures in {st.ops} operations, e.g. {st.failures[:5]}"


def test_token_count_cache_evicts_safely_from_many_threads() -> None:
    cache = TokenCountCache(max_entries=8)
    tok = TiktokenTokenizer("cl100k_base", cache_size=8)
    errors: list[BaseException] = []

    def hammer(seed: int) -> None:
        try:
            for i in range(3000):
                cache.put(f"{seed}-{i}", i)
                if tok.count(f"word{seed} {i % 50}") < 1:
                    raise AssertionError("a count below 1")
                tok.count_many([f"w{seed}-{i}", f"w{seed}-{i + 1}"])
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=hammer, args=(s,)) for s in range(8)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert errors == []
    assert len(cache) <= 8 and len(tok.cache) <= 8
    assert tok.count("word3 7") == TiktokenTokenizer("cl100k_base").count("word3 7")


def test_lru_and_embedding_caches_evict_safely_from_many_threads() -> None:
    lru: LRUCache[str, int] = LRUCache(8)
    emb = HashEmbedder(cache=EmbeddingCache(max_memory_entries=8))
    reference = HashEmbedder()
    errors: list[BaseException] = []

    def hammer(seed: int) -> None:
        try:
            for i in range(600):
                lru.put(f"{seed}-{i}", i)
                lru.get(f"{seed}-{i - 1}")
                text = f"{WORDS[i % len(WORDS)]} {seed} {i % 40}"
                if not (emb.embed([text]) == reference.embed([text])).all():
                    raise AssertionError(f"a cached vector differs for {text!r}")
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=hammer, args=(s,)) for s in range(8)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert errors == []
    assert len(lru) <= 8 and len(emb.cache._mem) <= 8
