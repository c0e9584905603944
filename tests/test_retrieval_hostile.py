"""Issue 14, retrieval side: hostile input at the retriever's and the index's entry points.

* a token count supplied with a chunk never decides whether a budget holds;
* a bare ``str``/``bytes`` where a collection of ids, documents or chunks is expected raises;
* a bare index file with flipped bytes never loads (SHA-256 trailer, format 2);
* a save killed by SIGKILL leaves a temporary that the next load or save removes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ctxkit
from _hash_embedder import HashEmbedder
from ctxkit import Assembler, Budget, Chunk, Message
from ctxkit.assembly.assembler import document_block
from ctxkit.errors import InvalidInputError, ResourceError
from ctxkit.retrieval import FaissIndex, NumpyIndex, Retriever, load_index
from ctxkit.retrieval import index as index_mod
from ctxkit.retrieval.chunking import Document
from ctxkit.retrieval.index import BaseVectorIndex
from ctxkit.tokenizers import get_tokenizer
from ctxkit.tokenizers._tiktoken import TiktokenTokenizer

TOK = "tiktoken:cl100k_base"
WORDS = ["refund", "budget", "token", "faiss", "thread", "policy", "window", "cache", "model", "query"]


def _retriever(*, hybrid: bool = False, index: BaseVectorIndex | None = None) -> Retriever:
    emb = HashEmbedder()
    return Retriever(emb, index if index is not None else NumpyIndex(emb.dim), tokenizer=TOK, hybrid=hybrid)


def _recount(chunks: list[Chunk], tok: TiktokenTokenizer) -> int:
    """The chunks' cost counted by a tokenizer instance that shares no cache with ctxkit's."""
    return sum(tok.count(document_block(c)) for c in chunks)


# --------------------------------------------------------------------------- trusted metadata
def test_a_caller_token_count_never_decides_the_budget() -> None:
    r = _retriever()
    big = Chunk(id="big", doc_id="d", text="budget " * 1200, metadata={"tokens": 1})
    r.add_chunks([big], progress=False)
    real = get_tokenizer(TOK).count(big.text)
    assert real > 1000
    assert r.get_chunk("big").metadata["tokens"] == real  # the stored count is ctxkit's own
    assert r.retrieve("budget", 50) == []  # was: 1,201 real tokens returned for a budget of 50
    fresh = TiktokenTokenizer("cl100k_base")
    got = r.retrieve("budget", 5000)
    assert [c.id for c in got] == ["big"] and _recount(got, fresh) <= 5000
    # a chunk handed to chunk_cost with a lie in its metadata is costed by its text
    assert r.chunk_cost(big) == fresh.count(document_block(big))


_HOSTILE_TOKENS = st.one_of(
    st.none(),
    st.integers(-(10**9), 10**9),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4),
    st.booleans(),
)
_TEXTS = st.lists(
    st.one_of(
        st.lists(st.sampled_from(WORDS), min_size=1, max_size=300).map(" ".join),
        st.text(min_size=1, max_size=300),
    ),
    min_size=1,
    max_size=8,
)


@given(
    texts=_TEXTS,
    tokens=st.lists(_HOSTILE_TOKENS, min_size=8, max_size=8),
    budget=st.integers(0, 800),
    query=st.sampled_from(WORDS),
    hybrid=st.booleans(),
    diversity=st.booleans(),
    packing=st.sampled_from(["evidence", "chunks"]),
)
def test_retrieved_chunks_fit_the_budget_when_recounted(
    texts: list[str], tokens: list[Any], budget: int, query: str, hybrid: bool, diversity: bool, packing: Any
) -> None:
    r = _retriever(hybrid=hybrid)
    chunks = [
        Chunk(id=f"c{i}", doc_id=f"d{i % 3}", text=t, metadata={"tokens": tokens[i]}) for i, t in enumerate(texts)
    ]
    r.add_chunks(chunks, progress=False)
    got = r.retrieve(query, budget, diversity=diversity, packing=packing)
    fresh = TiktokenTokenizer("cl100k_base")
    assert _recount(got, fresh) <= budget
    for c in got:
        source = texts[int(c.id[1:])]
        if packing == "chunks":  # whole chunks, as stored
            assert c.text == source
        else:  # sentences of the chunk, runs of neighbours joined by the source's own whitespace, gaps marked
            assert all(run in source for run in c.text.split(" … "))
            assert c.metadata["tokens"] == fresh.count(c.text)


@given(
    texts=_TEXTS,
    tokens=st.lists(_HOSTILE_TOKENS, min_size=8, max_size=8),
    limit=st.integers(40, 1500),
)
def test_assembled_prompt_fits_when_recounted_with_lying_chunk_metadata(
    texts: list[str], tokens: list[Any], limit: int
) -> None:
    chunks = [
        Chunk(id=f"c{i}", text=t, score=1.0 / (i + 1), metadata={"tokens": tokens[i]}) for i, t in enumerate(texts)
    ]
    budget = Budget.for_model("gpt-4o", max_input_tokens=limit, output_reserve=0)
    p = Assembler("gpt-4o", budget).assemble(query="What is the refund policy?", chunks=chunks)
    # OpenAI's documented accounting, recounted with an o200k tokenizer that shares no cache with ctxkit
    fresh = TiktokenTokenizer("o200k_base")
    recount = 3 + sum(3 + fresh.count(m.role) + fresh.count(m.content) for m in p.messages)
    assert recount == p.total_tokens <= limit


# --------------------------------------------------------------------------- bare strings
def test_bare_strings_where_collections_are_expected_raise() -> None:
    r = _retriever(hybrid=True)
    r.add_documents([Document(id="faq-1", text="refunds take five days")], progress=False)
    cid = r.index.ids[0]
    assert r.lexical is not None
    lexical = r.lexical
    calls: list[Callable[[], object]] = [
        lambda: r.delete_documents("faq-1"),  # was: deleted nothing, returned 0
        lambda: r.add_documents("xyz"),  # was: ingested three one-character documents
        lambda: r.add_documents(b"xyz"),  # type: ignore[arg-type]
        lambda: r.add_chunks("abc"),  # type: ignore[arg-type]
        lambda: asyncio.run(r.aadd_documents("xyz")),
        lambda: r.index.delete(cid),
        lambda: r.index.get_vectors(cid),
        lambda: lexical.delete(cid),
        lambda: r.chunker.split_documents("abc"),  # type: ignore[arg-type]
        lambda: r.tokenizer.count_many("abc"),
        lambda: r.embedder.embed("abc"),
    ]
    for call in calls:
        with pytest.raises(InvalidInputError, match=r"not (a single|one)|use embed_query"):
            call()
    assert len(r) == 1 and len(r.index) == 1 and len(lexical) == 1
    assert r.delete_documents(["faq-1"]) == 1 and len(r) == 0


@pytest.mark.parametrize("field", ["tools", "examples", "history", "chunks"])
def test_assembler_refuses_bare_strings(field: str) -> None:
    with pytest.raises(InvalidInputError, match=rf"assemble\({field}=\.\.\.\) takes a collection"):
        Assembler("gpt-4o").assemble(query="q", **{field: "abc"})


def test_assembler_refuses_tools_that_are_not_toolspecs() -> None:
    with pytest.raises(InvalidInputError, match=r"tools\[0\] is a dict"):
        Assembler("gpt-4o").assemble(query="q", tools=[{"name": "x"}])  # type: ignore[list-item]
    with pytest.raises(InvalidInputError, match=r"history\[0\] is a str"):
        Assembler("gpt-4o").assemble(query="q", history=["hi"])  # type: ignore[list-item]
    assert Assembler("gpt-4o").assemble(query="q", history=[Message.user("hi")]).total_tokens > 0


# --------------------------------------------------------------------------- flipped bytes
def _vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: FaissIndex(16, kind="flat"), id="faiss-flat"),
        pytest.param(lambda: FaissIndex(16, kind="hnsw"), id="faiss-hnsw"),
        pytest.param(lambda: NumpyIndex(16), id="numpy"),
    ],
)
def test_a_bare_index_file_with_a_flipped_bit_never_loads(tmp_path: Path, make: Callable[[], BaseVectorIndex]) -> None:
    ix = make()
    ix.add([f"id{i}" for i in range(60)], _vectors(60, 16), [{"n": i} for i in range(60)])
    path = ix.save(tmp_path / "index.ctx")
    good = path.read_bytes()
    assert len(load_index(path)) == 60
    rng = np.random.default_rng(14)
    positions = rng.integers(0, len(good), size=70)  # the reproducer's 70 trials; 34 loaded silently before
    for pos in positions.tolist():
        bad = bytearray(good)
        bad[pos] ^= 1 << int(rng.integers(0, 8))
        path.write_bytes(bytes(bad))
        with pytest.raises(ResourceError, match=r"corrupt|not a ctxkit index"):
            load_index(path)
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(ResourceError, match="corrupt or truncated"):
        load_index(path)


def test_a_format_1_index_file_still_loads(tmp_path: Path) -> None:
    ix = FaissIndex(16, kind="hnsw")
    vecs = _vectors(30, 16)
    ix.add([f"id{i}" for i in range(30)], vecs)
    parts = ix._file_parts()
    assert parts[0] == ("magic", index_mod._MAGIC) and index_mod._MAGIC == b"CTXKIT-INDEX-2\n"
    v1 = tmp_path / "v1.ctx"
    v1.write_bytes(index_mod._MAGIC_V1 + b"".join(data for _, data in parts[1:]))
    old = load_index(v1)
    assert old.ids == ix.ids and old.search(vecs[7], 1)[0].id == "id7"
    again = old.save(tmp_path / "v2.ctx")  # saved again: format 2, with its checksum
    assert again.read_bytes().startswith(b"CTXKIT-INDEX-2\n") and load_index(again).ids == ix.ids


# --------------------------------------------------------------------------- killed saves
_CHILD = textwrap.dedent(
    """
    import sys, time
    from _hash_embedder import HashEmbedder
    from ctxkit.retrieval import NumpyIndex, Retriever
    import ctxkit.retrieval.store as rmod
    import ctxkit.retrieval.index as imod

    kind, path = sys.argv[1], sys.argv[2]
    emb = HashEmbedder()
    r = Retriever(emb, NumpyIndex(emb.dim), tokenizer="tiktoken:cl100k_base")
    r.add_documents([{"id": f"old{i}", "text": f"old document {i} " * 50} for i in range(20)], progress=False)
    target = r.save(path) if kind == "retriever" else r.index.save(path)
    print("saved-first", flush=True)
    r.add_documents([{"id": f"new{i}", "text": f"new document {i} " * 400} for i in range(200)], progress=False)

    def slow(part):  # hold the save open midway so the parent can kill it
        print("wrote-" + part, flush=True)
        if "wrote-" + part == sys.argv[3]:
            time.sleep(120)

    (rmod if kind == "retriever" else imod)._save_hook = slow
    r.save(path) if kind == "retriever" else r.index.save(path)
    print("saved-second", flush=True)
    """
)


def _temps(folder: Path, name: str) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(f".{name}.tmp-")]


def _child_env(tmp: Path) -> dict[str, str]:
    src = Path(ctxkit.__file__).resolve().parents[1]
    tests = Path(__file__).resolve().parent
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(src), str(tests), env.get("PYTHONPATH", "")])
    return env


@pytest.mark.parametrize(
    ("kind", "part", "cleaner"),
    [
        ("retriever", "wrote-chunks.jsonl", "load"),
        ("retriever", "wrote-chunks.jsonl", "save"),
        ("index", "wrote-vectors", "load"),
        ("index", "wrote-vectors", "save"),
    ],
)
def test_a_save_killed_by_sigkill_leaves_a_temporary_that_the_next_load_or_save_removes(
    tmp_path: Path, kind: str, part: str, cleaner: str
) -> None:
    path = tmp_path / "store.ctx"
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    cmd = [sys.executable, str(script), kind, str(path), part]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=_child_env(tmp_path)) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "saved-first"
            while (line := proc.stdout.readline().strip()) != part:
                assert line.startswith("wrote-"), line
            live = _temps(tmp_path, path.name)
            assert len(live) == 1 and live[0].stat().st_size > 0
            # a live writer's temporary is not touched by a load in another process
            first = load_index(path) if kind == "index" else Retriever.load(path, embedder=HashEmbedder())
            assert _temps(tmp_path, path.name) == live
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert _temps(tmp_path, path.name) == live  # the killed writer could not clean up
    if cleaner == "load":
        again = load_index(path) if kind == "index" else Retriever.load(path, embedder=HashEmbedder())
        assert len(again) == len(first)
    elif kind == "index":
        assert isinstance(first, BaseVectorIndex)
        first.save(path)
    else:
        assert isinstance(first, Retriever)
        first.save(path)
    assert _temps(tmp_path, path.name) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["child.py", "store.ctx"]
