"""The Retriever's file: one zip archive, written atomically, read back with a typed, checked manifest.

:meth:`Retriever.save <ctxkit.retrieval.Retriever.save>` writes the whole retriever to one file
and :meth:`Retriever.load <ctxkit.retrieval.Retriever.load>` rebuilds it in another process, with
nothing re-embedded. The file is a zip archive (format version 1) of four members:

* ``manifest.json`` — a :class:`StoreManifest`: format name and version, the embedder's ``name``
  and ``dim``, the tokenizer spec, the chunker settings, the hybrid flag with the BM25
  parameters, and the ranking settings (``rrf_k``, ``lexical_weight``, ``mmr_lambda``,
  ``dedupe_threshold``, ``candidates``, ``packing``, ``evidence_pool`` and the evidence
  weights; a store without the last three packs whole chunks, as it did when it was written);
* ``chunks.jsonl`` — every stored :class:`~ctxkit.messages.Chunk`, one JSON object per line
  (``model_dump(mode="json")``), in store order;
* ``by_doc.json`` — document id -> its chunk ids;
* ``index.ctx`` — the vector index exactly as :meth:`BaseVectorIndex.save` writes it.

One file rather than a folder, because only a single file can be swapped in atomically: it is
written to a temporary sibling, flushed, fsynced and renamed over the target
(:func:`ctxkit.paths.atomic_write`), so an interrupted save leaves the previous store (or none),
never a half-written one that loads. Each zip member carries a CRC-32 that reading checks (the
index member also carries its own SHA-256). Nothing is pickled. Every way a file can fail to be
a readable store raises :class:`~ctxkit.errors.StoreFormatError`, whose message says whether to
save again or to upgrade ctxkit.
"""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ctxkit.errors import InvalidInputError, ResourceError, StoreFormatError, UnknownNameError
from ctxkit.messages import Chunk
from ctxkit.paths import atomic_write, remove_stale_temporaries
from ctxkit.retrieval.embeddings import Embedder, SentenceTransformerEmbedder
from ctxkit.retrieval.evidence import EvidenceWeights
from ctxkit.retrieval.index import BaseVectorIndex
from ctxkit.tokenizers import Tokenizer, get_tokenizer

__all__ = [
    "STORE_FORMAT",
    "STORE_VERSION",
    "BM25Settings",
    "ChunkerSettings",
    "EmbedderInfo",
    "IndexInfo",
    "OpenStore",
    "RankingSettings",
    "StoreManifest",
    "open_store",
    "write_store",
]

STORE_FORMAT: Final = "ctxkit.retriever"
STORE_VERSION: Final = 1
_INDEX_MEMBER = "index.ctx"
# The name SentenceTransformerEmbedder() gives itself when built with no model: a store is checked
# against it before the default model is built (and so loaded).
_DEFAULT_EMBEDDER_NAME = "st:all-MiniLM-L6-v2"
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, OSError, EOFError, KeyError, TypeError, ValueError)

# Called with the name of each member after it is written during a save; tests use it to
# interrupt a save midway. Not part of the public API.
_save_hook: Callable[[str], None] | None = None


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class EmbedderInfo(_Part):
    """Which embedder made the stored vectors; a store is loaded only with the same one."""

    name: str
    dim: int = Field(ge=1)


class ChunkerSettings(_Part):
    """The settings of the plain :class:`~ctxkit.retrieval.Chunker` and the spec of its tokenizer."""

    target_tokens: int
    overlap_tokens: int
    max_tokens: int
    markdown: bool
    tokenizer: str


class BM25Settings(_Part):
    """The BM25 parameters of a hybrid retriever (its index is rebuilt from the stored chunk texts)."""

    k1: float
    b: float
    stopwords: str | list[str] | None


class RankingSettings(_Part):
    """How the retriever ranks and packs; the packing fields are absent from stores older than evidence packing."""

    rrf_k: int
    lexical_weight: float
    mmr_lambda: float
    dedupe_threshold: float | None
    candidates: int
    packing: Literal["evidence", "chunks"] = "chunks"
    evidence_pool: float = 4.0
    evidence: EvidenceWeights | None = None

    @field_validator("evidence", mode="before")
    @classmethod
    def _as_written(cls, value: object) -> object:
        """Weights added after a store was written take the value that reproduces its packing then."""
        if isinstance(value, dict):
            return {**_ADDED_EVIDENCE_WEIGHTS, **value}
        return value


#: evidence weights newer than store format 1, at the values that leave older stores' packing unchanged
_ADDED_EVIDENCE_WEIGHTS: dict[str, object] = {
    "title": 0.0,
    "anaphora": False,
    "salience": 0.0,
    "feedback": 0.0,
    "answer_type": 0.0,
}


class IndexInfo(_Part):
    """The vector index: its class (informative; the member's own header decides), dimension and member."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    kind: str = Field(alias="class")
    dim: int = Field(ge=1)
    member: str = _INDEX_MEMBER


class StoreManifest(_Part):
    """``manifest.json``: everything but the chunks and the vectors, checked when a store is opened."""

    format: Literal["ctxkit.retriever"] = STORE_FORMAT
    version: int = Field(STORE_VERSION, ge=1, le=STORE_VERSION)
    ctxkit_version: str = ""
    embedder: EmbedderInfo
    tokenizer: str
    chunker: ChunkerSettings
    hybrid: bool
    bm25: BM25Settings | None
    ranking: RankingSettings
    index: IndexInfo
    chunks: int = Field(ge=0)

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json", by_alias=True), ensure_ascii=False)


def _corrupt(src: Path, exc: BaseException) -> str:
    return (
        f"{src} is not a readable Retriever store: it is truncated, corrupt or not a store at all ({exc!r}). "
        "Save the Retriever again, or rebuild it from the documents"
    )


def write_store(
    target: Path,
    manifest: StoreManifest,
    chunks: Sequence[Chunk],
    by_doc: Mapping[str, list[str]],
    index_bytes: bytes,
) -> None:
    """Write a store to ``target`` atomically (the layout is in the module docstring)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with (
        atomic_write(target) as f,
        zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf,
    ):
        zf.writestr("manifest.json", manifest.to_json())
        _written("manifest.json")
        with zf.open("chunks.jsonl", "w", force_zip64=True) as out:
            for s in range(0, len(chunks), 1024):
                lines = [json.dumps(c.model_dump(mode="json"), ensure_ascii=False) + "\n" for c in chunks[s : s + 1024]]
                out.write("".join(lines).encode("utf-8"))
        _written("chunks.jsonl")
        zf.writestr("by_doc.json", json.dumps(dict(by_doc), ensure_ascii=False))
        _written("by_doc.json")
        zf.writestr(manifest.index.member, index_bytes, compress_type=zipfile.ZIP_STORED)
        _written(manifest.index.member)


def _written(name: str) -> None:
    if _save_hook is not None:
        _save_hook(name)


@dataclass
class OpenStore:
    """A store whose manifest was read and checked; :meth:`contents` reads the rest."""

    src: Path
    zf: zipfile.ZipFile
    manifest: StoreManifest

    def embedder(self, given: Embedder | None) -> Embedder:
        """The embedder to load with: ``given`` if it made the store, else the default one if the store used it.

        Stored vectors only compare with queries embedded by the same model, so any other one is
        refused with :class:`~ctxkit.errors.InvalidInputError`.
        """
        name, dim, src = self.manifest.embedder.name, self.manifest.embedder.dim, self.src
        if given is None:
            if name != _DEFAULT_EMBEDDER_NAME:
                raise InvalidInputError(
                    f"{src} was built with the embedder {name!r} ({dim} dims), not the default "
                    f"{_DEFAULT_EMBEDDER_NAME!r}; pass the embedder that built it: Retriever.load(path, embedder=...)"
                )
            given = SentenceTransformerEmbedder()
        if given.name != name or given.dim != dim:
            raise InvalidInputError(
                f"{src} was built with the embedder {name!r} ({dim} dims) but the given embedder is "
                f"{given.name!r} ({given.dim} dims): stored vectors only match queries from the same model. "
                "Pass the embedder that built the store"
            )
        return given

    def chunker_tokenizer(self) -> Tokenizer:
        """The chunker's tokenizer, after checking that this process can build both of the store's tokenizers."""
        spec, chunker_spec = self.manifest.tokenizer, self.manifest.chunker.tokenizer
        try:
            get_tokenizer(spec)
            return get_tokenizer(chunker_spec)
        except (UnknownNameError, ResourceError) as exc:
            raise StoreFormatError(
                f"{self.src} counts tokens with {spec!r} (chunker: {chunker_spec!r}), which this process cannot "
                f"build: {exc}. Install or register_tokenizer() it, then load again"
            ) from exc

    def contents(self) -> tuple[list[Chunk], dict[str, list[str]], BaseVectorIndex]:
        """The stored chunks (in store order), the document -> chunk ids map and the vector index, checked
        against each other and the manifest."""
        try:
            return self._contents()
        except StoreFormatError:
            raise
        except _READ_ERRORS as exc:  # a pydantic ValidationError is a ValueError
            raise StoreFormatError(_corrupt(self.src, exc)) from exc

    def _contents(self) -> tuple[list[Chunk], dict[str, list[str]], BaseVectorIndex]:
        src, zf, n_chunks = self.src, self.zf, self.manifest.chunks
        with zf.open("chunks.jsonl") as part:  # streamed; the CRC-32 is checked at the end
            chunks = [
                Chunk.model_validate(json.loads(line)) for line in io.TextIOWrapper(part, "utf-8") if line.strip()
            ]
        by_doc: Any = json.loads(zf.read("by_doc.json").decode("utf-8"))
        if not isinstance(by_doc, dict) or not all(
            isinstance(v, list) and all(isinstance(i, str) for i in v) for v in by_doc.values()
        ):
            raise StoreFormatError(f"{src} has a malformed by_doc.json; save the Retriever again")
        ids = {c.id for c in chunks}
        if len(chunks) != n_chunks or len(ids) != n_chunks:
            raise StoreFormatError(
                f"{src} lists {n_chunks} chunks but holds {len(chunks)} ({len(ids)} distinct ids); save it again"
            )
        member = self.manifest.index.member
        try:
            index = BaseVectorIndex.from_bytes(zf.read(member), where=f"{src}:{member}")
        except ResourceError as exc:  # the index member's own checks failed
            raise StoreFormatError(
                f"the vector index inside {src} cannot be read ({exc}); save the Retriever again"
            ) from exc
        if index.dim != self.manifest.embedder.dim:
            raise StoreFormatError(
                f"{src}: its index has {index.dim} dimensions but its embedder {self.manifest.embedder.dim}; "
                "save the Retriever again"
            )
        missing = [i for i in ids if i not in index]
        if missing:
            raise StoreFormatError(
                f"{src} is inconsistent: {len(missing)} chunks (e.g. {missing[0]!r}) have no vector; save it again"
            )
        return chunks, {str(d): list(v) for d, v in by_doc.items()}, index


@contextmanager
def open_store(path: Path) -> Iterator[OpenStore]:
    """Open the store at ``path`` and check its manifest; :class:`~ctxkit.errors.StoreFormatError` if it is not
    a readable store of a version this ctxkit reads."""
    remove_stale_temporaries(path)
    try:
        zf = zipfile.ZipFile(path)
    except FileNotFoundError as exc:
        raise StoreFormatError(f"no Retriever store at {path}; build a Retriever and call save({str(path)!r})") from exc
    except IsADirectoryError as exc:
        raise StoreFormatError(f"{path} is a folder; pass the file that Retriever.save() wrote") from exc
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise StoreFormatError(_corrupt(path, exc)) from exc
    with zf:
        yield OpenStore(path, zf, _read_manifest(zf, path))


def _read_manifest(zf: zipfile.ZipFile, src: Path) -> StoreManifest:
    """The checked manifest of an open store: right format, a version this ctxkit reads, every field well-typed."""
    try:
        raw: Any = json.loads(zf.read("manifest.json").decode("utf-8"))
    except KeyError as exc:
        raise StoreFormatError(
            f"{src} is a zip file but not a Retriever store (no manifest.json); pass a file that Retriever.save() wrote"
        ) from exc
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as exc:
        raise StoreFormatError(_corrupt(src, exc)) from exc
    if not isinstance(raw, dict) or raw.get("format") != STORE_FORMAT:
        raise StoreFormatError(f"{src} is not a Retriever store; pass a file that Retriever.save() wrote")
    version = raw.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise StoreFormatError(f"{src} has an invalid store version {version!r}; save the Retriever again")
    if version > STORE_VERSION:
        raise StoreFormatError(
            f"{src} is a version {version} Retriever store, but this ctxkit reads up to version {STORE_VERSION}: "
            "upgrade ctxkit, or save the Retriever again with this version"
        )
    try:
        return StoreManifest.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
        raise StoreFormatError(
            f"{src} has a malformed manifest ({problems}); save the Retriever again from the documents"
        ) from exc
