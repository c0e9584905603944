"""Split text and markdown into token-sized chunks on natural boundaries.

The text is cut into *units* that tile it exactly (every character belongs to one
unit): markdown headings, fenced code blocks, and sentences inside paragraphs.
Chunks are runs of consecutive units, so a chunk's ``text`` is always
``source[start:end]`` (minus surrounding whitespace) and its span points back
into the document. Rules, in order:

* a chunk never exceeds ``max_tokens`` (measured exactly on its final text);
* a heading starts a new chunk, so it stays with its section (it stands alone only
  when the section's first unit cannot fit beside it);
* a code block stays whole when it fits ``max_tokens``, else it is cut on lines;
* a new section (heading) or paragraph break is preferred as a cut point once a
  chunk has reached half its target;
* consecutive chunks of one section share up to ``overlap_tokens`` of trailing
  sentences (never across a heading).

Every chunk carries ``metadata["tokens"]``, counted once here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ConfigDict, Field

from ctxkit._inputs import reject_bare_string
from ctxkit._model import CtxkitModel
from ctxkit.errors import InvalidInputError
from ctxkit.messages import Chunk
from ctxkit.tokenizers import Tokenizer, get_tokenizer

__all__ = ["Chunker", "Document", "chunk_text"]

_FENCE = re.compile(r"^(```|~~~)[^\n]*\n.*?^\1[ \t]*(?:\n|\Z)", re.M | re.S)
_HEADING = re.compile(r"^#{1,6}[ \t]+[^\n]*(?:\n|\Z)", re.M)
_PARA_BREAK = re.compile(r"\n[ \t]*\n\s*")
# a sentence ends at . ! ? (optionally followed by closing quotes/brackets) and whitespace
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n(?=[ \t]*(?:[-*+]|\d+[.)])[ \t])")


class Document(CtxkitModel):
    """A source document to ingest: its text, a stable id, an optional title and metadata."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(min_length=1)
    text: str
    title: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Unit:
    start: int
    end: int
    kind: str  # "heading" | "code" | "sentence"
    para_start: bool  # first unit after a paragraph break


def _split_units(text: str, markdown: bool) -> list[_Unit]:
    """Tile ``text`` with heading, code and sentence units (each keeps its trailing whitespace)."""
    blocks: list[tuple[int, int, str]] = []  # special blocks: (start, end, kind)
    if markdown:
        for m in _FENCE.finditer(text):
            blocks.append((m.start(), m.end(), "code"))
        for m in _HEADING.finditer(text):
            if not any(s <= m.start() < e for s, e, _ in blocks):
                blocks.append((m.start(), m.end(), "heading"))
        blocks.sort()
    units: list[_Unit] = []
    pos = 0
    for s, e, kind in [*blocks, (len(text), len(text), "end")]:
        if s > pos:
            units.extend(_prose_units(text, pos, s, first_is_para=True))
        if kind != "end":
            # absorb whitespace after the block into it, so units tile the text
            ws = len(text) - len(text[e:].lstrip()) if text[e:].strip() else len(text)
            units.append(_Unit(s, ws, kind, True))
            pos = ws
        else:
            pos = max(pos, e)
    return units


def _prose_units(text: str, start: int, end: int, *, first_is_para: bool) -> Iterator[_Unit]:
    seg = text[start:end]
    para_start = first_is_para
    pos = 0
    for pm in [*_PARA_BREAK.finditer(seg), None]:
        pend = pm.end() if pm is not None else len(seg)
        para = seg[pos:pend]
        spos = 0
        for sm in [*_SENTENCE_END.finditer(para), None]:
            send = sm.end() if sm is not None else len(para)
            if send > spos and (sm is not None or para[spos:send]):
                yield _Unit(start + pos + spos, start + pos + send, "sentence", para_start)
                para_start = False
            spos = send
            if sm is None:
                break
        para_start = True
        pos = pend
        if pm is None:
            break


class Chunker:
    """Token-aware chunker; see the module docstring for the rules.

    ``target_tokens`` is the size aimed for, ``max_tokens`` (default ``target_tokens``)
    the hard ceiling, ``overlap_tokens`` how much trailing context the next chunk of a
    section repeats. Counts come from ``tokenizer`` (a spec such as
    ``"tiktoken:cl100k_base"``, a model name, or a :class:`~ctxkit.tokenizers.Tokenizer`).
    """

    def __init__(
        self,
        target_tokens: int = 256,
        overlap_tokens: int = 32,
        *,
        max_tokens: int | None = None,
        tokenizer: str | Tokenizer = "tiktoken:cl100k_base",
        markdown: bool = True,
    ) -> None:
        if target_tokens < 8:
            raise InvalidInputError(f"target_tokens must be at least 8, got {target_tokens}")
        if not 0 <= overlap_tokens < target_tokens:
            raise InvalidInputError(
                f"overlap_tokens must be >= 0 and below target_tokens ({target_tokens}), got {overlap_tokens}"
            )
        mx = target_tokens if max_tokens is None else max_tokens
        if mx < target_tokens:
            raise InvalidInputError(f"max_tokens ({mx}) must be >= target_tokens ({target_tokens})")
        self.target_tokens = target_tokens
        self.overlap_tokens = overlap_tokens
        self.max_tokens = mx
        self.tokenizer = get_tokenizer(tokenizer)
        self.markdown = markdown

    def __repr__(self) -> str:
        return (
            f"Chunker(target_tokens={self.target_tokens}, overlap_tokens={self.overlap_tokens}, "
            f"max_tokens={self.max_tokens}, tokenizer={self.tokenizer.name!r})"
        )

    # ------------------------------------------------------------------ splitting oversized units
    def _split_long(self, text: str, u: _Unit) -> list[_Unit]:
        """Cut a unit over ``max_tokens`` on lines (code) or words, then tokens."""
        tok = self.tokenizer
        out: list[_Unit] = []
        pieces: list[tuple[int, int]] = []
        sep = re.compile(r"\n" if u.kind == "code" else r"\s+")
        pos = u.start
        for m in sep.finditer(text, u.start, u.end):
            pieces.append((pos, m.end()))
            pos = m.end()
        if pos < u.end:
            pieces.append((pos, u.end))
        cur_s = pieces[0][0]
        cur_e = cur_s
        cur_n = 0
        for ps, pe in pieces:
            n = tok.count(text[ps:pe])
            if n > self.max_tokens:  # a single "word" over the limit: cut by tokens
                if cur_e > cur_s:
                    out.append(_Unit(cur_s, cur_e, u.kind, False))
                pos = ps
                while pos < pe:
                    window = text[pos : min(pe, pos + self.max_tokens * 16)]
                    head = tok.truncate(window, self.max_tokens) or window[:1]
                    out.append(_Unit(pos, pos + len(head), u.kind, False))
                    pos += len(head)
                cur_s = cur_e = pe
                cur_n = 0
                continue
            if cur_n + n > self.max_tokens and cur_e > cur_s:
                out.append(_Unit(cur_s, cur_e, u.kind, False))
                cur_s, cur_n = ps, 0
            cur_e = pe
            cur_n += n
        if cur_e > cur_s:
            out.append(_Unit(cur_s, cur_e, u.kind, False))
        # merged pieces can count more than their parts (tokens merge across a seam): cut those by tokens
        checked: list[_Unit] = []
        for p in out:
            if tok.count(text[p.start : p.end].strip()) <= self.max_tokens:
                checked.append(p)
                continue
            pos = p.start
            while pos < p.end:
                window = text[pos : min(p.end, pos + self.max_tokens * 16)]
                head = tok.truncate(window, self.max_tokens) or window[:1]
                checked.append(_Unit(pos, pos + len(head), p.kind, False))
                pos += len(head)
        if checked:
            checked[0] = _Unit(checked[0].start, checked[0].end, checked[0].kind, u.para_start)
        return checked

    def _split_long_counted(self, text: str, u: _Unit) -> tuple[list[_Unit], list[int]]:
        parts = self._split_long(text, u)
        return parts, self.tokenizer.count_many([text[p.start : p.end] for p in parts])

    # ------------------------------------------------------------------ public
    def split(
        self, text: str, *, doc_id: str = "", title: str = "", metadata: dict[str, Any] | None = None
    ) -> list[Chunk]:
        """Chunks of one text, in order; ``position`` numbers them from 0."""
        if not isinstance(text, str):
            raise InvalidInputError(f"chunking needs a str, got {type(text).__name__}")
        tok = self.tokenizer
        units = _split_units(text, self.markdown)
        counts = tok.count_many([text[u.start : u.end] for u in units])
        flat: list[_Unit] = []
        flat_n: list[int] = []
        for u, n in zip(units, counts, strict=True):
            parts, ns = ([u], [n]) if n <= self.max_tokens else self._split_long_counted(text, u)
            for p, pn in zip(parts, ns, strict=True):
                if flat and not text[p.start : p.end].strip():  # whitespace alone joins the unit before it
                    q = flat[-1]
                    flat[-1] = _Unit(q.start, p.end, q.kind, q.para_start)
                    flat_n[-1] += pn
                else:
                    flat.append(p)
                    flat_n.append(pn)
        spans = self._group(text, flat, flat_n)
        out: list[Chunk] = []
        meta = dict(metadata or {})
        for i0, i1 in spans:
            s, e = flat[i0].start, flat[i1 - 1].end
            raw = text[s:e]
            lead = len(raw) - len(raw.lstrip())
            body = raw.strip()
            if not body:
                continue
            s += lead
            e = s + len(body)
            n = tok.count(body)
            pos = len(out)
            cid = f"{doc_id}#{pos}" if doc_id else f"#{pos}"
            out.append(
                Chunk(
                    text=body,
                    id=cid,
                    doc_id=doc_id,
                    title=title,
                    position=pos,
                    start=s,
                    end=e,
                    metadata={**meta, "tokens": n},
                )
            )
        return out

    def _group(self, text: str, units: Sequence[_Unit], counts: Sequence[int]) -> list[tuple[int, int]]:
        """Greedy grouping of unit indices into [start, end) runs."""
        target, half = self.target_tokens, self.target_tokens // 2
        count = self.tokenizer.count
        spans: list[tuple[int, int]] = []
        i, n, prev_end = 0, len(units), 0
        while i < n:
            j, used = i, 0
            while j < n:
                u, c = units[j], counts[j]
                if j > i:
                    if u.kind == "heading":
                        break  # a heading opens a new chunk
                    if used + c > target:
                        break
                    if used >= half and u.para_start and self._section_ends_soon(units, counts, j, target - used):
                        break
                used += c
                j += 1
            # never end a chunk on a heading (keep it with its section) unless it is all there is
            while j - i > 1 and units[j - 1].kind == "heading":
                j -= 1
            # exact count of the final text: token merges at unit seams can add a token; shed units
            while j - i > 1 and count(text[units[i].start : units[j - 1].end].strip()) > self.max_tokens:
                j -= 1
            if j <= prev_end and i < prev_end:  # the overlap left no room for new text: drop it
                i = prev_end
                continue
            spans.append((i, j))
            prev_end = j
            if j >= n:
                break
            # overlap: step back over trailing sentences of this chunk, within the same section
            nxt = j
            if self.overlap_tokens and units[j].kind != "heading":
                back, k = 0, j
                while k - 1 > i and units[k - 1].kind == "sentence" and back + counts[k - 1] <= self.overlap_tokens:
                    k -= 1
                    back += counts[k]
                while k < j and back + counts[j] > target:  # the overlap must leave room for new text
                    back -= counts[k]
                    k += 1
                nxt = k
            i = nxt if nxt > i else j
        return spans

    @staticmethod
    def _section_ends_soon(units: Sequence[_Unit], counts: Sequence[int], j: int, room: int) -> bool:
        """Prefer a paragraph break as a cut when the next paragraph would not fit in ``room``."""
        need = counts[j]
        k = j + 1
        while k < len(units) and not units[k].para_start:
            need += counts[k]
            k += 1
        return need > room

    def split_documents(self, documents: Iterable[Document]) -> list[Chunk]:
        """Chunks of many documents (ids ``<doc id>#<position>``)."""
        reject_bare_string(documents, "split_documents(documents)", "split_documents([Document(id=..., text=...)])")
        out: list[Chunk] = []
        for d in documents:
            out.extend(self.split(d.text, doc_id=d.id, title=d.title, metadata=d.metadata))
        return out


def chunk_text(
    text: str,
    *,
    target_tokens: int = 256,
    overlap_tokens: int = 32,
    tokenizer: str | Tokenizer = "tiktoken:cl100k_base",
    doc_id: str = "",
    title: str = "",
    markdown: bool = True,
) -> list[Chunk]:
    """One-shot :meth:`Chunker.split`."""
    return Chunker(target_tokens, overlap_tokens, tokenizer=tokenizer, markdown=markdown).split(
        text, doc_id=doc_id, title=title
    )
