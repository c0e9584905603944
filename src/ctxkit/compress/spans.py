"""Spans of text that pruning must keep: numbers, identifiers, code, quoted strings, user-marked spans.

Users mark a span with ``<keep>...</keep>``; the tags are removed from the output and
the content is kept verbatim. :func:`strip_keep_tags` returns the clean text and the
marked spans; :func:`force_spans` finds the rest by pattern.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "FORCE_KINDS",
    "PROTECTED_KINDS",
    "ForceKind",
    "force_mask",
    "force_spans",
    "protected_spans",
    "span_groups",
    "strip_keep_tags",
]

ForceKind = Literal["numbers", "identifiers", "code", "quotes", "marked"]
FORCE_KINDS: tuple[ForceKind, ...] = ("numbers", "identifiers", "code", "quotes", "marked")

_PATTERNS: dict[str, re.Pattern[str]] = {
    "numbers": re.compile(r"[-+$€£]?\d+(?:[.,:/]\d+)*%?"),
    "identifiers": re.compile(
        r"\b(?:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+"  # dotted.names
        r"|\w*_\w+"  # snake_case, _private
        r"|[a-z]+[A-Z]\w*"  # camelCase
        r"|[A-Z][a-z]+[A-Z]\w*"  # PascalCase with an inner capital
        r"|[A-Z]{2,}\w*"  # ACRONYMS, HTTP2
        r"|[A-Za-z]+\d\w*"  # letters then digits: gpt4o, v2
        r")\b"
    ),
    "code": re.compile(r"```.*?```|`[^`\n]+`", re.DOTALL),
    "quotes": re.compile(r"\"[^\"\n]{1,300}\"|“[^”\n]{1,300}”|(?<!\w)'[^'\n]{1,300}'(?!\w)"),
}
_MONTH = (
    r"(?:January|February|March|April|May|June|July|August|September|October|November|December"
    r"|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)\.?"
)
_NUM = r"[-+$€£¥]?\d+(?:[.,:/]\d+)*"
_UNIT_WORDS = (
    r"%|°\s?[CFK]?|(?:percent|per cent|million|billion|trillion|thousand|hundred|km²|km2|sq mi|km/h|mph|km|cm|mm|"
    r"kg|lb|lbs|mi|miles?|metres?|meters?|feet|ft|inches|in|m|g|t|tons?|tonnes?|years?|months?|weeks?|days?|"
    r"hours?|minutes?|seconds?|min|s|h|AD|BC|BCE|CE|GB|MB|KB|TB|GHz|MHz|Hz|kW|MW|W|V|USD|EUR|dollars?|euros?|"
    r"pounds?|people|inhabitants|residents|times|points?|goals?|games?|seasons?|episodes?|st|nd|rd|th)\b"
)
# protected spans: kept whole or dropped whole by token pruning
_PROTECTED: dict[str, re.Pattern[str]] = {
    "dates": re.compile(
        rf"\b(?:\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTH}(?:,?\s+\d{{3,4}})?"
        rf"|{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{3,4}})?|{_MONTH}\s+\d{{3,4}})(?!\w)"
    ),
    "numbers": re.compile(
        rf"(?<![\w.]){_NUM}(?:\s*(?:–|—|-|to|and|or)\s*{_NUM})?(?:\s*(?:{_UNIT_WORDS}))?(?:\s*\({_NUM}[^()\n]{{0,12}}\))?"
    ),
    "entities": re.compile(
        r"(?:\b(?:Mr|Mrs|Ms|Dr|Prof|St|Sir|Gen|Col|Capt|Lt|Rev|Sgt|Mt|Ft)\.\s+)?"
        r"(?:\b[A-Z]\.\s*)*"
        r"\b[A-Z][\w'’&+-]*"
        r"(?:(?:\s+(?:of|the|de|da|di|del|der|van|von|la|le|du|and|&|for|on|in|y))*\s+(?:[A-Z]\.\s*)*[A-Z][\w'’&+-]*)*"
        r"(?:,?\s+(?:Jr|Sr|Inc|Ltd|Co|Corp)\.?|\s+[IVX]{1,4}\b)?"
    ),
    "quotes": _PATTERNS["quotes"],
    "code": _PATTERNS["code"],
    "identifiers": _PATTERNS["identifiers"],
}
PROTECTED_KINDS: tuple[str, ...] = tuple(_PROTECTED)

_KEEP_TAG = re.compile(r"<keep>(.*?)</keep>", re.DOTALL)


def strip_keep_tags(text: str) -> tuple[str, list[tuple[int, int]]]:
    """Remove ``<keep>`` tags; return the clean text and the (start, end) of each marked span in it."""
    out: list[str] = []
    spans: list[tuple[int, int]] = []
    pos = 0
    length = 0
    for m in _KEEP_TAG.finditer(text):
        before = text[pos : m.start()]
        out.append(before)
        length += len(before)
        inner = m.group(1)
        spans.append((length, length + len(inner)))
        out.append(inner)
        length += len(inner)
        pos = m.end()
    out.append(text[pos:])
    return "".join(out), spans


def force_spans(text: str, kinds: Collection[str] = FORCE_KINDS, *, keep: Sequence[str] = ()) -> list[tuple[int, int]]:
    """Character spans of ``text`` that must survive pruning (``marked`` spans come from :func:`strip_keep_tags`)."""
    spans: list[tuple[int, int]] = []
    for kind in kinds:
        pat = _PATTERNS.get(kind)
        if pat is not None:
            spans.extend(m.span() for m in pat.finditer(text))
    for s in keep:
        if s:
            spans.extend(m.span() for m in re.finditer(re.escape(s), text))
    return spans


def force_mask(
    n_chars: int,
    spans: Sequence[tuple[int, int]],
    unit_starts: npt.NDArray[np.int64],
    unit_ends: npt.NDArray[np.int64],
) -> npt.NDArray[np.bool_]:
    """Which units (character ranges) overlap any span — vectorized with a prefix sum over characters."""
    if not spans:
        return np.zeros(unit_starts.shape, dtype=bool)
    arr = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    delta = np.zeros(n_chars + 1, dtype=np.int64)
    np.add.at(delta, arr[:, 0], 1)
    np.add.at(delta, arr[:, 1], -1)
    covered = np.cumsum(delta)[:n_chars] > 0
    prefix = np.concatenate(([0], np.cumsum(covered)))
    return np.asarray((prefix[unit_ends] - prefix[unit_starts]) > 0)


def protected_spans(text: str, kinds: Collection[str] = PROTECTED_KINDS) -> list[tuple[int, int]]:
    """Sorted, merged character spans that token pruning keeps whole or drops whole.

    Named entities (capitalised runs with their connectives, initials, titles such as ``Dr.``),
    numbers with their units, ranges and a bracketed conversion (``0 °C (32 °F)``), dates with
    month names (``22 May 2006``), quoted strings, code and code identifiers. Overlapping spans merge.
    """
    raw: list[tuple[int, int]] = []
    for kind in kinds:
        pat = _PROTECTED.get(kind)
        if pat is None:
            continue
        for m in pat.finditer(text):
            a, b = m.span()
            while b > a and text[b - 1] in " \t.,;:":  # trailing punctuation is not part of the span
                if text[b - 1] == "." and re.search(r"\b[A-Z]\.$|\b(?:Jr|Sr|Inc|Ltd|Co|Corp|St|Dr)\.$", text[a:b]):
                    break
                b -= 1
            if b > a:
                raw.append((a, b))
    raw.sort()
    merged: list[tuple[int, int]] = []
    for a, b in raw:
        if merged and a < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def span_groups(
    spans: Sequence[tuple[int, int]], unit_starts: npt.NDArray[np.int64], unit_ends: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """A group id per unit: units that overlap one protected span (or chain of them) share an id; others stand alone.

    ``spans`` must be sorted and non-overlapping (as :func:`protected_spans` returns them).
    """
    n = unit_starts.shape[0]
    gid = np.arange(n, dtype=np.int64)
    if not spans or not n:
        return gid
    arr = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    s_arr, e_arr = arr[:, 0], arr[:, 1]
    lo = np.searchsorted(e_arr, unit_starts, side="right")  # first span ending after the unit starts
    hi = np.searchsorted(s_arr, unit_ends, side="left") - 1  # last span starting before the unit ends
    hit = lo <= hi
    for i in range(1, n):
        if hit[i] and hit[i - 1] and lo[i] <= hi[i - 1]:
            gid[i] = gid[i - 1]
    return gid
