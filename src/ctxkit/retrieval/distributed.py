"""Distributed ingest on Ray Data (extra ``scale``): chunk -> embed over workers -> index shards.

:func:`ingest` runs the same code on a local Ray instance (``ray.init(num_cpus=2)``, what the tests
do) and on a cluster (``address="ray://head:10001"`` or ``"auto"`` inside the cluster):

1. documents become a Ray Dataset and are chunked by :class:`~ctxkit.retrieval.Chunker` in
   ``map_batches`` tasks;
2. an actor pool of ``workers`` actors, each holding one embedder (:func:`make_embedder`, e.g.
   ``"onnx"``), embeds the chunks (``map_batches`` with ``ActorPoolStrategy``); each actor uses
   ``cpus_per_worker`` threads;
3. the embedded rows are split into ``shards`` blocks, and each block is written as one ctxkit
   index file (FAISS, ``index_kind``) by a task; the driver writes ``shards.json`` last, so the
   folder loads with :func:`ctxkit.retrieval.shards.load_sharded` as one
   :class:`~ctxkit.retrieval.shards.ShardedIndex`.

Each row's metadata holds the chunk (``text``, ``doc_id``, ``title``, ``position``, ``tokens``) and
the document metadata, so search results can be turned back into text without the corpus.

**Resumable.** The embedders share the SQLite embedding cache at ``cache_path`` (content-hash
keys): a restarted or extended ingest embeds only chunks the cache does not hold yet. On a cluster
put ``cache_path`` and ``out_dir`` on storage every node sees (NFS, a mounted bucket).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from ctxkit._optional import require
from ctxkit.errors import InvalidInputError
from ctxkit.paths import atomic_write
from ctxkit.retrieval.chunking import Chunker, Document
from ctxkit.retrieval.fast_embed import default_fast_backend, make_embedder
from ctxkit.retrieval.index import FaissIndex, IndexKind

__all__ = ["IngestReport", "ingest"]


class IngestReport(BaseModel):
    """What :func:`ingest` did."""

    model_config = ConfigDict(frozen=True)

    documents: int
    chunks: int
    embedded: int
    cache_hits: int
    shards: list[str]
    workers: int
    backend: str
    seconds: float

    @property
    def chunks_per_s(self) -> float:
        return self.chunks / self.seconds if self.seconds > 0 else 0.0


def _chunk_batch(batch: dict[str, Any], *, target_tokens: int, overlap: int) -> dict[str, Any]:
    chunker = Chunker(target_tokens, overlap)
    out: dict[str, list[Any]] = {"id": [], "text": [], "meta": []}
    for doc_id, text, title, meta in zip(batch["id"], batch["text"], batch["title"], batch["meta"], strict=True):
        extra = json.loads(str(meta))
        for c in chunker.split(str(text), doc_id=str(doc_id), title=str(title)):
            out["id"].append(c.id)
            out["text"].append(c.text)
            out["meta"].append(
                json.dumps(
                    {
                        **extra,
                        "text": c.text,
                        "doc_id": str(doc_id),
                        "title": str(title),
                        "position": c.position,
                        "tokens": c.metadata.get("tokens"),
                    },
                    ensure_ascii=False,
                )
            )
    return {k: np.asarray(v, dtype=object) for k, v in out.items()}


class _EmbedActor:
    """One embedder per Ray actor, loaded once; counts what it embedded and what the cache served."""

    def __init__(self, backend: str, cache_path: str | None, threads: int, options: dict[str, Any]) -> None:
        opts = dict(options)
        if backend != "static" and backend != "torch":
            opts.setdefault("threads", threads)
        if backend == "torch":
            import torch

            torch.set_num_threads(threads)
        self.embedder = make_embedder(backend, cache=cache_path, **opts)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        stats = getattr(self.embedder, "stats", None)
        before = (stats.embedded, stats.cache_hits) if stats is not None else (0, 0)
        vecs = self.embedder.embed([str(t) for t in batch["text"]])
        n = len(vecs)
        embedded = (stats.embedded - before[0]) if stats is not None else n
        batch["vector"] = list(vecs)
        batch["embedded"] = np.full(n, 0, dtype=np.int64)
        if n:
            batch["embedded"][0] = embedded
        return batch


def _write_shard(batch: dict[str, Any], *, out_dir: str, dim: int, kind: IndexKind) -> dict[str, Any]:
    ids = [str(i) for i in batch["id"]]
    if not ids:
        return {"path": np.asarray([], dtype=object), "n": np.asarray([], dtype=np.int64)}
    index = FaissIndex(dim, kind=kind)
    index.upsert(ids, np.vstack(list(batch["vector"])), [json.loads(str(m)) for m in batch["meta"]])
    name = f"shard-{min(ids)[:24].replace('/', '_')}-{len(ids)}.ctxidx"
    index.save(Path(out_dir) / name)
    return {"path": np.asarray([name], dtype=object), "n": np.asarray([len(ids)], dtype=np.int64)}


def ingest(
    documents: Iterable[Document | Mapping[str, Any]],
    out_dir: str | os.PathLike[str],
    *,
    backend: str = "fast",
    cache_path: str | os.PathLike[str] | None = None,
    workers: int = 2,
    cpus_per_worker: int = 1,
    shards: int | None = None,
    index_kind: IndexKind = "flat",
    chunk_tokens: int = 128,
    chunk_overlap: int = 16,
    batch_size: int = 256,
    address: str | None = None,
    embedder_options: Mapping[str, Any] | None = None,
) -> IngestReport:
    """Chunk, embed (on ``workers`` Ray actors) and index ``documents`` into shard files in ``out_dir``.

    Starts Ray if it is not running (``ray.init(address=address)``; with no address, a local
    instance). ``documents`` are :class:`~ctxkit.retrieval.Document` objects or mappings with
    ``id``, ``text`` and optional ``title``/``metadata``. Returns an :class:`IngestReport`; load the
    result with :func:`ctxkit.retrieval.shards.load_sharded`.
    """
    if workers < 1 or cpus_per_worker < 1:
        raise InvalidInputError(f"workers and cpus_per_worker must be at least 1, got {workers}, {cpus_per_worker}")
    ray = require("ray", feature="distributed ingest", extra="scale", package="ray[data]")
    rows: list[dict[str, Any]] = []
    for d in documents:
        doc = d if isinstance(d, Document) else Document.model_validate(dict(d))
        rows.append(
            {
                "id": doc.id,
                "text": doc.text,
                "title": doc.title or "",
                "meta": json.dumps(dict(doc.metadata or {}), ensure_ascii=False),
            }
        )
    if len({r["id"] for r in rows}) != len(rows):
        raise InvalidInputError("document ids must be unique")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    from ray.data import ActorPoolStrategy

    t0 = time.perf_counter()

    resolved = default_fast_backend() if backend == "fast" else backend
    ds = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), 4 * workers)))
    ds = ds.map_batches(_chunk_batch, fn_kwargs={"target_tokens": chunk_tokens, "overlap": chunk_overlap})
    ds = ds.map_batches(
        _EmbedActor,
        fn_constructor_kwargs={
            "backend": resolved,
            "cache_path": str(cache_path) if cache_path is not None else None,
            "threads": cpus_per_worker,
            "options": dict(embedder_options or {}),
        },
        compute=ActorPoolStrategy(size=workers),
        num_cpus=cpus_per_worker,
        batch_size=batch_size,
    )
    embedded_ds = ds.materialize()
    n_chunks = embedded_ds.count()
    embedded = int(embedded_ds.sum("embedded") or 0) if n_chunks else 0
    dim = len(embedded_ds.take(1)[0]["vector"]) if n_chunks else 0
    names: list[str] = []
    if n_chunks:
        n_shards = shards or workers
        written = embedded_ds.repartition(n_shards).map_batches(
            _write_shard, fn_kwargs={"out_dir": str(out), "dim": dim, "kind": index_kind}, batch_size=None
        )
        names = sorted(str(r["path"]) for r in written.take_all())
        for stale in out.glob("shard-*.ctxidx"):
            if stale.name not in names:
                stale.unlink()
    with atomic_write(out / "shards.json") as f:
        f.write(json.dumps({"dim": dim, "shards": names}).encode())
    return IngestReport(
        documents=len(rows),
        chunks=n_chunks,
        embedded=embedded,
        cache_hits=n_chunks - embedded,
        shards=names,
        workers=workers,
        backend=resolved,
        seconds=round(time.perf_counter() - t0, 3),
    )
