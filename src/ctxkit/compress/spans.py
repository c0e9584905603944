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

__all__ = ["FORCE_KINDS", "ForceKind", "force_mask", "force_spans", "strip_keep_tags"]

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
