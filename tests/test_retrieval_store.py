"""The Retriever's file format (``ctxkit.retrieval.store``): old stores load, broken manifests say what to do.

``data/retriever-v1.ctx`` was written by the format-1 code as it stood before the store got its
own module (commit 2228299), with the cheap hash embedder, and ``data/retriever-v1.json`` holds
what that retriever returned then. Loading it must give the same answers for as long as ctxkit
reads format 1.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from _hash_embedder import HashEmbedder
from ctxkit.errors import ResourceError, StoreFormatError
from ctxkit.retrieval import Chunker, Document, NumpyIndex, Retriever
from ctxkit.retrieval.store import _ADDED_EVIDENCE_WEIGHTS, STORE_VERSION, StoreManifest
from ctxkit.tokenizers import get_tokenizer, specs_of
from ctxkit.tokenizers._estimate import EstimatingTokenizer

DATA = Path(__file__).resolve().parent / "data"
V1 = DATA / "retriever-v1.ctx"
EXPECTED: dict[str, Any] = json.loads((DATA / "retriever-v1.json").read_text(encoding="utf-8"))


def _answers(r: Retriever) -> dict[str, Any]:
    queries = list(EXPECTED["search"])
    return {
        "len": len(r),
        "by_doc": r._by_doc,
        "search": {q: [c.id for c in r.search(q, 4)] for q in queries},
        "retrieve": {q: [c.id for c in r.retrieve(q, 80)] for q in queries},
        "evidence": {q: [[c.id, c.text] for c in r.retrieve(q, 60, packing="evidence")] for q in queries},
    }


def _rewrite_manifest(dst: Path, edit: Callable[[dict[str, Any]], object], src: Path = V1) -> Path:
    """A copy of a store whose manifest is ``edit(manifest)`` (bytes are written as they are)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            if name == "manifest.json":
                new = edit(json.loads(data))
                data = new if isinstance(new, bytes) else json.dumps(new).encode()
            zout.writestr(name, data)
    return dst


def test_a_format_1_store_written_before_the_store_module_loads_and_answers_the_same(tmp_path: Path) -> None:
    r = Retriever.load(V1, embedder=HashEmbedder())
    assert _answers(r) == EXPECTED
    assert (r.rrf_k, r.lexical_weight, r.mmr_lambda, r.dedupe_threshold, r.candidates) == (30, 0.7, 0.8, 0.9, 20)
    assert (r.packing, r.evidence_pool, r.lexical is not None) == ("chunks", 3.0, True)
    assert (r.chunker.target_tokens, r.chunker.overlap_tokens, r.chunker.max_tokens) == (24, 6, 24)
    assert r.tokenizer is get_tokenizer("tiktoken:cl100k_base")

    # saved again, it is still format 1, its manifest is the typed one, and it answers the same
    again = r.save(tmp_path / "again.ctx")
    with zipfile.ZipFile(again) as zf:
        manifest = StoreManifest.model_validate_json(zf.read("manifest.json"))
        old = json.loads(zipfile.ZipFile(V1).read("manifest.json"))
        # weights added since are written out at the values that keep this store's packing as it was
        ranking = {**old["ranking"], "evidence": {**old["ranking"]["evidence"], **_ADDED_EVIDENCE_WEIGHTS}}
        expected = {**old, "ranking": ranking, "ctxkit_version": manifest.ctxkit_version}
        assert json.loads(zf.read("manifest.json")) == expected
    assert manifest.ranking.evidence is not None and manifest.ranking.evidence.title == 0.0  # not today's default
    assert manifest.version == STORE_VERSION == 1 and manifest.chunks == EXPECTED["len"]
    assert _answers(Retriever.load(again, embedder=HashEmbedder())) == EXPECTED


def test_a_store_from_before_evidence_packing_packs_whole_chunks(tmp_path: Path) -> None:
    def strip(m: dict[str, Any]) -> dict[str, Any]:
        ranking = {k: v for k, v in m["ranking"].items() if k not in ("packing", "evidence_pool", "evidence")}
        return {**m, "ranking": ranking, "ctxkit_version": "0.0.9"}

    r = Retriever.load(_rewrite_manifest(tmp_path / "old.ctx", strip), embedder=HashEmbedder())
    assert (r.packing, r.evidence_pool) == ("chunks", 4.0)
    assert {q: [c.id for c in r.retrieve(q, 80)] for q in EXPECTED["retrieve"]} == EXPECTED["retrieve"]


def _drop(*path: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def edit(m: dict[str, Any]) -> dict[str, Any]:
        node = m
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
        return m

    return edit


def _set(value: object, *path: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def edit(m: dict[str, Any]) -> dict[str, Any]:
        node = m
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return m

    return edit


BROKEN = [
    pytest.param(lambda m: b"{not json", r"truncated, corrupt or not a store.*Save the Retriever again", id="not-json"),
    pytest.param(lambda m: [m], r"not a Retriever store; pass a file that Retriever.save\(\) wrote", id="a-list"),
    pytest.param(_set("other.format", "format"), r"not a Retriever store", id="other-format"),
    pytest.param(_set("1", "version"), r"invalid store version '1'; save the Retriever again", id="version-str"),
    pytest.param(_set(True, "version"), r"invalid store version True", id="version-bool"),
    pytest.param(_set(0, "version"), r"invalid store version 0", id="version-0"),
    pytest.param(_set(2, "version"), r"version 2 .*reads up to version 1: upgrade ctxkit", id="newer"),
    pytest.param(
        _drop("chunker"), r"malformed manifest \(chunker: Field required\); save the Retriever again", id="no-chunker"
    ),
    pytest.param(_drop("embedder", "dim"), r"malformed manifest \(embedder\.dim: Field required", id="no-dim"),
    pytest.param(
        _set("many", "chunks"), r"malformed manifest \(chunks: Input should be a valid integer", id="chunks-str"
    ),
    pytest.param(
        _set(-1, "chunks"), r"malformed manifest \(chunks: Input should be greater than or equal to 0", id="neg"
    ),
    pytest.param(_set("sentences", "ranking", "packing"), r"malformed manifest \(ranking\.packing", id="packing"),
    pytest.param(_set(None, "ranking"), r"malformed manifest \(ranking: Input should be a valid dictionary", id="null"),
    pytest.param(_set(0, "ranking", "candidates"), r"invalid settings in its manifest .*candidates", id="settings"),
    pytest.param(_set(5, "chunks"), r"lists 5 chunks but holds 6 \(6 distinct ids\); save it again", id="count"),
    pytest.param(_set("nosuch:thing", "tokenizer"), r"cannot build: .*register_tokenizer\(\) it", id="tokenizer"),
    pytest.param(_set("missing.ctx", "index", "member"), r"truncated, corrupt or not a store", id="index-member"),
]


@pytest.mark.parametrize(("edit", "message"), BROKEN)
def test_a_broken_manifest_raises_store_format_error_saying_what_to_do(
    tmp_path: Path, edit: Callable[[dict[str, Any]], object], message: str
) -> None:
    bad = _rewrite_manifest(tmp_path / "bad.ctx", edit)
    with pytest.raises(StoreFormatError, match=message) as info:
        Retriever.load(bad, embedder=HashEmbedder())
    assert isinstance(info.value, ResourceError)  # callers that catch ResourceError keep working


def test_missing_stores_and_manifests_raise_store_format_error(tmp_path: Path) -> None:
    with pytest.raises(StoreFormatError, match=r"no Retriever store at .*call save"):
        Retriever.load(tmp_path / "missing.ctx", embedder=HashEmbedder())
    with pytest.raises(StoreFormatError, match="is a folder"):
        Retriever.load(tmp_path, embedder=HashEmbedder())
    no_manifest = tmp_path / "nomanifest.ctx"
    with zipfile.ZipFile(V1) as zin, zipfile.ZipFile(no_manifest, "w") as zout:
        for name in zin.namelist():
            if name != "manifest.json":
                zout.writestr(name, zin.read(name))
    with pytest.raises(StoreFormatError, match=r"not a Retriever store \(no manifest.json\)"):
        Retriever.load(no_manifest, embedder=HashEmbedder())


def test_a_save_round_trips_through_the_typed_manifest(tmp_path: Path) -> None:
    emb = HashEmbedder()
    r = Retriever(
        emb, NumpyIndex(emb.dim), chunker=Chunker(24, 6), tokenizer="gpt-4o", hybrid=False, packing="evidence"
    )
    r.add_documents([Document(id="a", title='A "quoted" title', text="Refunds take five days. " * 6)], progress=False)
    path = r.save(tmp_path / "r.ctx")
    assert zipfile.ZipFile(path).namelist() == ["manifest.json", "chunks.jsonl", "by_doc.json", "index.ctx"]
    manifest = StoreManifest.model_validate_json(zipfile.ZipFile(path).read("manifest.json"))
    assert manifest.tokenizer == "gpt-4o" and manifest.bm25 is None and manifest.ranking.packing == "evidence"
    assert manifest.index.kind == "NumpyIndex" and manifest.chunks == len(r)
    back = Retriever.load(path, embedder=emb)
    assert back._chunks == r._chunks and back.retrieve("refund", 50) == r.retrieve("refund", 50)


def test_specs_of_names_the_specs_a_tokenizer_was_built_from() -> None:
    tok = get_tokenizer("gpt-4o")
    assert get_tokenizer("tiktoken:o200k_base") is tok
    specs = specs_of(tok)
    assert specs[0] == "tiktoken:o200k_base" and "gpt-4o" in specs
    assert all(get_tokenizer(s) is tok for s in specs)
    by_hand = EstimatingTokenizer(get_tokenizer("tiktoken:cl100k_base"), name="estimate:by-hand-2")
    assert specs_of(by_hand) == []
