"""Exact token counts of short ASCII texts before tiktoken's encoder is built.

Building tiktoken's ``CoreBPE`` for o200k_base takes ~100 ms, loading its 200k ranks another
~40 ms, and the first count of a process used to pay both. A short text needs a few dozen of
those ranks. :class:`QuickCounter` counts it with tiktoken's own algorithm in Python, over a
rank index that loads only the buckets of the ranks it looks up:

* pre-tokenization: the encoding's regular expression with its Unicode classes (``\\p{L}``,
  ``\\p{N}``, ``\\s`` ...) replaced by their ASCII members, which is exact for ASCII text
  (:func:`ascii_pattern`), compiled with :mod:`re`;
* a piece whose bytes are a rank is one token; any other is merged pairwise, lowest rank first,
  the leftmost of equal ranks first (tiktoken's ``_byte_pair_merge``).

It answers ``None`` for what it does not handle (non-ASCII or long texts, long unmerged pieces)
and once it has counted :data:`CHAR_BUDGET` characters — by then building the real encoder is
the cheaper way — and the caller uses tiktoken. The index is written by
:mod:`ctxkit.tokenizers._tiktoken` from the verified ranks of a loaded ``tiktoken.Encoding``;
its header and every bucket carry a CRC-32 checked before use (against damage; like the
parsed-ranks cache, the index is trusted as much as the cache directory it lives in).
"""

from __future__ import annotations

import marshal
import mmap
import re
import struct
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path

__all__ = ["CHAR_BUDGET", "MAX_MERGE_PIECE", "MAX_TEXT", "QuickCounter", "ascii_pattern", "write_index"]

_MAGIC = b"CTXKBPE1"
_BUCKET_BITS = 12  # 4096 buckets: ~50 ranks (~600 bytes) each for o200k_base

#: longest text (in characters) the quick path counts
MAX_TEXT = 4096
#: longest piece (in bytes) it merges pairwise (the merge is quadratic in Python)
MAX_MERGE_PIECE = 64
#: characters counted before the quick path steps aside for tiktoken's encoder
CHAR_BUDGET = 64_000

# ASCII members of the Unicode classes tiktoken's patterns use (general categories; White_Space)
_UPPER = frozenset(range(ord("A"), ord("Z") + 1))
_LOWER = frozenset(range(ord("a"), ord("z") + 1))
_DIGIT = frozenset(range(ord("0"), ord("9") + 1))
_SPACE = frozenset((0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20))
_ALL = frozenset(range(128))
_PROPERTIES: dict[str, frozenset[int]] = {
    "L": _UPPER | _LOWER,
    "Lu": _UPPER,
    "Ll": _LOWER,
    "Lt": frozenset(),
    "Lm": frozenset(),
    "Lo": frozenset(),
    "M": frozenset(),
    "N": _DIGIT,
}
_ESCAPES: dict[str, int] = {"r": 0x0D, "n": 0x0A, "t": 0x09}
_PROPERTY = re.compile(r"\\p\{(\w+)\}")


def _class(members: frozenset[int]) -> str:
    """A :mod:`re` character class of exactly ``members`` (one that matches no ASCII when empty)."""
    if not members:
        return r"[^\x00-\x7f]"
    runs: list[str] = []
    codes = sorted(members)
    start = prev = codes[0]
    for c in [*codes[1:], -1]:
        if c != prev + 1:
            runs.append(f"\\x{start:02x}" if start == prev else f"\\x{start:02x}-\\x{prev:02x}")
            start = c
        prev = c
    return "[" + "".join(runs) + "]"


def _escape_members(pattern: str, i: int) -> tuple[frozenset[int], int] | None:
    """The ASCII members of the escape at ``pattern[i]`` (a backslash) and the index after it."""
    m = _PROPERTY.match(pattern, i)
    if m is not None:
        members = _PROPERTIES.get(m.group(1))
        return None if members is None else (members, m.end())
    kind = pattern[i + 1 : i + 2]
    if kind == "s":
        return _SPACE, i + 2
    if kind == "S":
        return _ALL - _SPACE, i + 2
    if kind in _ESCAPES:
        return frozenset((_ESCAPES[kind],)), i + 2
    return None


def ascii_pattern(pat_str: str) -> str | None:
    """``pat_str`` (a tiktoken pre-tokenization regex) rewritten for :mod:`re` over ASCII-only text.

    Unicode classes become explicit classes of their ASCII members and ``$`` becomes ``\\Z`` (the
    Rust regex ``$`` is the end of the text only). ``None`` when the pattern uses anything else
    this translation does not know, so nothing is ever guessed.
    """
    out: list[str] = []
    i, n = 0, len(pattern := pat_str)
    while i < n:
        ch = pattern[i]
        if ch == "[":
            negate = pattern.startswith("[^", i)
            i += 2 if negate else 1
            members: set[int] = set()
            while i < n and pattern[i] != "]":
                if pattern[i] == "\\":
                    found = _escape_members(pattern, i)
                    if found is None:
                        return None
                    members |= found[0]
                    i = found[1]
                elif pattern[i] in "[-^" or ord(pattern[i]) > 127:
                    return None  # nested classes, ranges, non-ASCII literals: not needed, not guessed
                else:
                    members.add(ord(pattern[i]))
                    i += 1
            if i >= n:
                return None
            i += 1
            out.append(_class(frozenset(_ALL - members) if negate else frozenset(members)))
        elif ch == "\\":
            found = _escape_members(pattern, i)
            if found is None:
                return None
            out.append(_class(found[0]))
            i = found[1]
        elif ch == "$":
            out.append(r"\Z")
            i += 1
        elif ch == "." or ord(ch) > 127:
            return None
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def write_index(path: Path, write: Callable[[Path, bytes], None], pat_str: str, ranks: Mapping[bytes, int]) -> None:
    """Write the bucketed rank index of ``ranks`` to ``path`` through ``write(path, data)``."""
    buckets: list[dict[bytes, int]] = [{} for _ in range(1 << _BUCKET_BITS)]
    mask = (1 << _BUCKET_BITS) - 1
    for piece, rank in ranks.items():
        buckets[zlib.crc32(piece) & mask][piece] = rank
    blobs = [marshal.dumps(b) for b in buckets]
    offsets = [0]
    for blob in blobs:
        offsets.append(offsets[-1] + len(blob))
    checksums = [zlib.crc32(blob) for blob in blobs]
    header = marshal.dumps((pat_str, _BUCKET_BITS, offsets, checksums))
    head = _MAGIC + struct.pack("<II", zlib.crc32(header), len(header))
    write(path, head + header + b"".join(blobs))


class DamagedIndexError(Exception):
    """The index file is not one :func:`write_index` wrote (or a bucket no longer matches its checksum)."""


class QuickCounter:
    """Exact counts of short ASCII texts from a rank index (see the module docstring)."""

    def __init__(self, path: Path, *, budget: int = CHAR_BUDGET) -> None:
        with path.open("rb") as fh:  # mapped, not read: a count touches a few of its pages
            try:
                data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            except ValueError as exc:  # an empty file
                raise DamagedIndexError(f"{path} is empty") from exc
        start = len(_MAGIC) + 8
        if len(data) < start or data[: len(_MAGIC)] != _MAGIC:
            raise DamagedIndexError(f"{path} is not a ctxkit rank index")
        checksum, size = struct.unpack_from("<II", data, len(_MAGIC))
        header = data[start : start + size]
        if zlib.crc32(header) != checksum:
            raise DamagedIndexError(f"{path}: the header does not match its checksum")
        try:
            pat_str, bits, offsets, checksums = marshal.loads(header)
        except (EOFError, ValueError, TypeError) as exc:
            raise DamagedIndexError(f"{path}: unreadable header") from exc
        translated = ascii_pattern(pat_str) if isinstance(pat_str, str) else None
        if translated is None or bits != _BUCKET_BITS or len(offsets) != (1 << bits) + 1:
            raise DamagedIndexError(f"{path}: a pattern or layout this version does not use")
        if len(checksums) != 1 << bits or start + size + offsets[-1] != len(data):
            raise DamagedIndexError(f"{path}: truncated")
        self.pat_str: str = pat_str
        self._data = memoryview(data)[start + size :]
        self._offsets: list[int] = offsets
        self._checksums: list[int] = checksums
        self._mask: int = (1 << bits) - 1
        self._buckets: list[dict[bytes, int] | None] = [None] * (1 << bits)
        self._split = re.compile(translated, re.ASCII).findall
        #: characters counted so far, and how many it counts before stepping aside
        self.counted = 0
        self.budget = budget
        #: set when tiktoken's encoder is loaded: from then on it is the faster way
        self.retired = False

    def _bucket(self, index: int) -> dict[bytes, int]:
        blob = self._data[self._offsets[index] : self._offsets[index + 1]]
        if zlib.crc32(blob) != self._checksums[index]:
            raise DamagedIndexError(f"rank bucket {index} does not match its checksum")
        loaded = marshal.loads(blob)
        if not isinstance(loaded, dict):
            raise DamagedIndexError(f"rank bucket {index} is not a mapping")
        bucket: dict[bytes, int] = loaded
        self._buckets[index] = bucket
        return bucket

    def rank(self, piece: bytes) -> int | None:
        """The rank (token id) of ``piece``, or ``None`` when it is not a token."""
        index = zlib.crc32(piece) & self._mask
        bucket = self._buckets[index]
        if bucket is None:
            bucket = self._bucket(index)
        return bucket.get(piece)

    def _merge_count(self, piece: bytes) -> int:
        """Tokens of ``piece`` by tiktoken's byte-pair merge: lowest-ranked adjacent pair first."""
        rank = self.rank
        bounds = list(range(len(piece) + 1))  # token j is piece[bounds[j]:bounds[j + 1]]
        pairs = [rank(piece[i : i + 2]) for i in range(len(piece) - 1)]  # rank of tokens j and j + 1
        while True:
            best: int | None = None
            at = -1
            for j, r in enumerate(pairs):
                if r is not None and (best is None or r < best):
                    best, at = r, j
            if best is None:
                return len(bounds) - 1
            del bounds[at + 1]
            del pairs[at]
            if at > 0:
                pairs[at - 1] = rank(piece[bounds[at - 1] : bounds[at + 1]])
            if at < len(bounds) - 2:
                pairs[at] = rank(piece[bounds[at] : bounds[at + 2]])

    def count(self, text: str) -> int | None:
        """The exact token count of ``text``, or ``None`` when the caller should ask tiktoken."""
        if self.retired or len(text) > MAX_TEXT or not text.isascii() or self.counted >= self.budget:
            return None
        try:
            total = 0
            for word in self._split(text):
                piece = word.encode("ascii")
                if self.rank(piece) is not None:
                    total += 1
                elif len(piece) > MAX_MERGE_PIECE:
                    return None
                else:
                    total += self._merge_count(piece)
        except (DamagedIndexError, EOFError, ValueError, TypeError):
            self.retired = True
            return None
        self.counted += len(text)
        return total
