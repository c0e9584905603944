"""Exact OpenAI tokenizers (tiktoken), working with no internet.

``tiktoken.get_encoding("cl100k_base")`` downloads its rank file on first use.
The same files ship inside the ``bpe-openai`` package; :func:`ensure_offline_tiktoken`
verifies their sha256 against the hash tiktoken expects and places them in
tiktoken's own cache, so real tiktoken then works offline — for ctxkit and for
any library that calls tiktoken itself (llmlingua does).
"""

from __future__ import annotations

import importlib.util
import marshal
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ctxkit.errors import InvalidInputError, ResourceError
from ctxkit.paths import atomic_write, user_cache_dir
from ctxkit.tokenizers._quickbpe import DamagedIndexError, QuickCounter, write_index
from ctxkit.tokenizers.base import BaseTokenizer

if TYPE_CHECKING:
    import tiktoken

__all__ = ["OFFLINE_ENCODINGS", "TiktokenTokenizer", "ensure_offline_tiktoken", "get_encoding", "quick_counter"]

_BLOB = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"

#: encoding name -> sha256 that tiktoken checks for its rank file.
OFFLINE_ENCODINGS: dict[str, str] = {
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}

#: the layout of ctxkit's parsed-ranks cache files (bump when it changes)
_FAST_FORMAT = 1
#: the layout of ctxkit's rank index files for :class:`QuickCounter` (bump when it changes)
_INDEX_FORMAT = 1

_lock = threading.Lock()
_encodings: dict[str, tiktoken.Encoding] = {}
_quick: dict[str, QuickCounter | None] = {}  # encoding name -> its quick counter (None: no usable index)


def _debug(msg: str, *args: object) -> None:
    import logging  # not at import: counting a short text needs none of it

    logging.getLogger(__name__).debug(msg, *args)


def _tiktoken_cache_dir() -> Path | None:
    """The directory tiktoken reads its cache from (None when caching is disabled)."""
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        value = os.environ["TIKTOKEN_CACHE_DIR"]
    elif "DATA_GYM_CACHE_DIR" in os.environ:
        value = os.environ["DATA_GYM_CACHE_DIR"]
    else:
        import tempfile

        value = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    return Path(value) if value else None


def ensure_offline_tiktoken(name: str) -> Path:
    """Place the verified rank file of encoding ``name`` in tiktoken's cache and return its path."""
    import hashlib

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
    import gzip
    import tempfile
    from importlib import resources

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


def _fast_path(name: str) -> Path:
    import tiktoken

    version = f"py{sys.version_info[0]}{sys.version_info[1]}-tiktoken{tiktoken.__version__}-v{_FAST_FORMAT}"
    return user_cache_dir() / "tiktoken" / f"{name}-{OFFLINE_ENCODINGS[name][:16]}-{version}.marshal"


def _load_fast(name: str) -> tiktoken.Encoding | None:
    """The encoding from ctxkit's own cache of its parsed ranks (None when absent or damaged).

    tiktoken's loader base64-decodes every one of the 100k-200k rank lines in Python on each
    process start (about a third of a second for o200k_base); the same ranks as a ``marshal``
    blob load in a tenth of that. The blob is written from an encoding tiktoken built from the
    verified rank file, and carries a BLAKE2b digest that is checked before it is read.
    """
    import hashlib

    import tiktoken

    try:
        data = _fast_path(name).read_bytes()
    except OSError:
        return None
    digest, blob = data[:32], data[32:]
    if hashlib.blake2b(blob, digest_size=32).digest() != digest:
        return None
    try:
        pat_str, special_tokens, ranks = marshal.loads(blob)
    except (EOFError, ValueError, TypeError):
        return None
    if not (isinstance(pat_str, str) and isinstance(special_tokens, dict) and isinstance(ranks, dict)):
        return None
    return tiktoken.Encoding(name, pat_str=pat_str, mergeable_ranks=ranks, special_tokens=special_tokens)


def _store_fast(name: str, enc: tiktoken.Encoding) -> None:
    """Keep ``enc``'s ranks for :func:`_load_fast`; an unwritable cache only means the slow load next time."""
    import hashlib

    pat_str = getattr(enc, "_pat_str", None)
    special_tokens = getattr(enc, "_special_tokens", None)
    ranks = getattr(enc, "_mergeable_ranks", None)
    if not (isinstance(pat_str, str) and isinstance(special_tokens, dict) and isinstance(ranks, dict)):
        return
    blob = marshal.dumps((pat_str, special_tokens, ranks))
    target = _fast_path(name)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(target) as fh:
            fh.write(hashlib.blake2b(blob, digest_size=32).digest() + blob)
    except OSError as exc:
        _debug("could not cache the parsed %s ranks at %s: %s", name, target, exc)


def _tiktoken_stamp() -> str:
    """Size and mtime of the installed tiktoken package, found without importing it (that takes ~20 ms).

    A rank index is only used with the tiktoken it was written next to: another version could
    pre-tokenize differently, and the index answers before tiktoken is ever imported.
    """
    module = sys.modules.get("tiktoken")
    origin = getattr(module, "__file__", None)
    if origin is None:
        spec = importlib.util.find_spec("tiktoken")
        origin = spec.origin if spec is not None else None
    if origin is None:
        return "none"
    st = os.stat(origin)
    return f"{st.st_size:x}{st.st_mtime_ns:x}"


def _index_path(name: str) -> Path:
    stamp = f"py{sys.version_info[0]}{sys.version_info[1]}-{_tiktoken_stamp()}-v{_INDEX_FORMAT}"
    return user_cache_dir() / "tiktoken" / f"{name}-{OFFLINE_ENCODINGS[name][:16]}-{stamp}.ranks"


def quick_counter(name: str) -> QuickCounter | None:
    """The :class:`QuickCounter` of encoding ``name`` while tiktoken's is not loaded (None when there is no index)."""
    if name in _encodings or name not in OFFLINE_ENCODINGS:
        return None
    with _lock:
        if name not in _quick:
            try:
                _quick[name] = QuickCounter(_index_path(name))
            except (OSError, DamagedIndexError) as exc:
                _debug("no usable rank index for %s: %s", name, exc)
                _quick[name] = None
        return _quick[name]


def _store_index(name: str, enc: tiktoken.Encoding) -> None:
    """Write the rank index :class:`QuickCounter` reads unless a sound one for ``enc`` exists.

    An unwritable cache only means no quick counts in later processes.
    """
    current = _quick.get(name)
    if current is not None:
        current.retired = True  # tiktoken's encoder is loaded now: it is the faster way
    pat_str = getattr(enc, "_pat_str", None)
    ranks = getattr(enc, "_mergeable_ranks", None)
    if not (isinstance(pat_str, str) and isinstance(ranks, dict)):
        return
    try:
        path = _index_path(name)
        if current is None and path.is_file():
            try:
                current = QuickCounter(path)
            except DamagedIndexError:
                current = None
        if current is not None and current.pat_str == pat_str:
            return
        path.parent.mkdir(parents=True, exist_ok=True)

        def write(target: Path, data: bytes) -> None:
            with atomic_write(target) as fh:
                fh.write(data)

        write_index(path, write, pat_str, ranks)
    except OSError as exc:
        _debug("could not write the %s rank index: %s", name, exc)


def get_encoding(name: str) -> tiktoken.Encoding:
    """A real ``tiktoken.Encoding``, loaded offline where ctxkit ships its data."""
    import tiktoken

    with _lock:
        enc = _encodings.get(name)
        if enc is None and name in OFFLINE_ENCODINGS:
            enc = _load_fast(name)
            if enc is None:
                ensure_offline_tiktoken(name)
                enc = tiktoken.get_encoding(name)
                _store_fast(name, enc)
            _store_index(name, enc)
            _encodings[name] = enc
        if enc is None:
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
        self._quick: QuickCounter | None = None
        self._enc: tiktoken.Encoding | None = None
        enc: tiktoken.Encoding | None
        if isinstance(encoding, str):
            # cl100k/o200k: short ASCII texts are counted from ctxkit's rank index until tiktoken's
            # encoder is needed, which is built on first use (see ctxkit.tokenizers._quickbpe)
            self._quick = quick_counter(encoding)
            enc = get_encoding(encoding) if self._quick is None else None
            name = encoding
        else:
            enc = encoding
            name = enc.name
        super().__init__(name, cache_size=cache_size)
        self._encode_ordinary: Callable[[str], list[int]] = self._load_and_encode
        if enc is not None:
            self._use(enc)

    def _use(self, enc: tiktoken.Encoding) -> None:
        self._enc = enc
        self._encode_ordinary = enc.encode_ordinary
        self._quick = None

    def _load_and_encode(self, text: str) -> list[int]:
        return self.encoding.encode_ordinary(text)

    @property
    def encoding(self) -> tiktoken.Encoding:
        """The ``tiktoken.Encoding`` (built on first use when the tokenizer was made from a name)."""
        enc = self._enc
        if enc is None:
            enc = get_encoding(self.name)
            self._use(enc)
        return enc

    def encode(self, text: str) -> list[int]:
        return self._encode_ordinary(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self.encoding.decode_bytes(list(ids)).decode("utf-8", errors="replace")

    def _count_uncached(self, text: str) -> int:
        quick = self._quick
        if quick is not None:
            n = quick.count(text)
            if n is not None:
                return n
        return len(self._encode_ordinary(text))

    def _count_batch_uncached(self, texts: Sequence[str]) -> list[int]:
        if len(texts) < 64:
            return [self._count_uncached(t) for t in texts]
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
