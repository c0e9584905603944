"""Exact OpenAI tokenizers (tiktoken), working with no internet.

``tiktoken.get_encoding("cl100k_base")`` downloads its rank file on first use.
The same files ship inside the ``bpe-openai`` package; :func:`ensure_offline_tiktoken`
verifies their sha256 against the hash tiktoken expects and places them in
tiktoken's own cache, so real tiktoken then works offline — for ctxkit and for
any library that calls tiktoken itself (llmlingua does).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import threading
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from ctxkit.errors import InvalidInputError, ResourceError
from ctxkit.tokenizers.base import BaseTokenizer

if TYPE_CHECKING:
    import tiktoken

__all__ = ["OFFLINE_ENCODINGS", "TiktokenTokenizer", "ensure_offline_tiktoken", "get_encoding"]

_BLOB = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"

#: encoding name -> sha256 that tiktoken checks for its rank file.
OFFLINE_ENCODINGS: dict[str, str] = {
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}

_lock = threading.Lock()
_encodings: dict[str, tiktoken.Encoding] = {}


def _tiktoken_cache_dir() -> Path | None:
    """The directory tiktoken reads its cache from (None when caching is disabled)."""
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        value = os.environ["TIKTOKEN_CACHE_DIR"]
    elif "DATA_GYM_CACHE_DIR" in os.environ:
        value = os.environ["DATA_GYM_CACHE_DIR"]
    else:
        value = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    return Path(value) if value else None


def ensure_offline_tiktoken(name: str) -> Path:
    """Place the verified rank file of encoding ``name`` in tiktoken's cache and return its path."""
    expected = OFFLINE_ENCODINGS.get(name)
    if expected is None:
        raise InvalidInputError(
            f"no offline data for encoding {name!r}; offline encodings: {sorted(OFFLINE_ENCODINGS)}"
        )
    cache_dir = _tiktoken_cache_dir()
    if cache_dir is None:
        raise ResourceError(
            "TIKTOKEN_CACHE_DIR is set to an empty string, which disables tiktoken's cache, "
            "so its rank files cannot be provided offline. Unset it or point it at a directory."
        )
    target = cache_dir / hashlib.sha1(_BLOB.format(name=name).encode()).hexdigest()
    if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == expected:
        return target
    try:
        packed = resources.files("bpe_openai").joinpath(f"data/{name}.tiktoken.gz").read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise ResourceError(
            f"the offline rank file for {name!r} comes from the 'bpe-openai' package, "
            "a core dependency of ctxkit; reinstall ctxkit (pip install ctxkit) to restore it."
        ) from exc
    data = gzip.decompress(packed)
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected:
        raise ResourceError(
            f"the rank file for {name!r} shipped in bpe-openai has sha256 {digest}, "
            f"not the {expected} tiktoken expects; reinstall bpe-openai."
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".ctxkit-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def get_encoding(name: str) -> tiktoken.Encoding:
    """A real ``tiktoken.Encoding``, loaded offline where ctxkit ships its data."""
    import tiktoken

    with _lock:
        enc = _encodings.get(name)
        if enc is None:
            if name in OFFLINE_ENCODINGS:
                ensure_offline_tiktoken(name)
            try:
                enc = tiktoken.get_encoding(name)
            except ValueError as exc:
                raise InvalidInputError(
                    f"tiktoken has no encoding {name!r}; offline encodings: {sorted(OFFLINE_ENCODINGS)}"
                ) from exc
            except Exception as exc:  # network failure for an encoding without offline data
                raise ResourceError(
                    f"tiktoken could not load {name!r} ({exc}); with no internet only "
                    f"{sorted(OFFLINE_ENCODINGS)} are available."
                ) from exc
            _encodings[name] = enc
        return enc


class TiktokenTokenizer(BaseTokenizer):
    """An exact tokenizer over a tiktoken encoding (cl100k_base, o200k_base, ...)."""

    def __init__(self, encoding: str | tiktoken.Encoding = "o200k_base", *, cache_size: int = 200_000) -> None:
        enc = get_encoding(encoding) if isinstance(encoding, str) else encoding
        super().__init__(enc.name, cache_size=cache_size)
        self.encoding = enc
        self._encode_ordinary = enc.encode_ordinary

    def encode(self, text: str) -> list[int]:
        return self._encode_ordinary(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self.encoding.decode_bytes(list(ids)).decode("utf-8", errors="replace")

    def _count_uncached(self, text: str) -> int:
        return len(self._encode_ordinary(text))

    def _count_batch_uncached(self, texts: Sequence[str]) -> list[int]:
        if len(texts) < 64:
            return [len(self._encode_ordinary(t)) for t in texts]
        return [len(ids) for ids in self.encoding.encode_ordinary_batch(list(texts))]

    def truncate(self, text: str, max_tokens: int) -> str:
        if max_tokens < 0:
            raise InvalidInputError("truncate(max_tokens=...) must be >= 0")
        if self.count(text) <= max_tokens:
            return text
        ids = self._encode_ordinary(text)
        limit = max_tokens
        while limit > 0:
            raw = self.encoding.decode_bytes(ids[:limit])
            candidate = raw.decode("utf-8", errors="ignore")
            if len(candidate.encode()) < len(raw):  # a partial character was cut off
                candidate = text[: len(candidate)]
            if self.count(candidate) <= max_tokens:
                return candidate
            limit -= 1
        return ""
