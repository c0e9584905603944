"""Answer scorers: SQuAD-normalized exact match and token F1, contains-gold, numeric match, an LLM judge.

Normalization follows the official SQuAD v1.1/v2.0 evaluation script: lower-case, drop
punctuation, drop the articles *a*, *an*, *the*, collapse whitespace. Every scorer takes the
prediction and the gold answers and returns a score in [0, 1] (the best over the golds);
:attr:`Scorer.passed` turns it into success or failure.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol, runtime_checkable

from ctxkit.errors import InvalidInputError

__all__ = [
    "ContainsGold",
    "ExactMatch",
    "Judge",
    "NumericMatch",
    "Scorer",
    "TokenF1",
    "contains_gold",
    "exact_match",
    "get_scorer",
    "normalize_answer",
    "numeric_match",
    "token_f1",
]

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def normalize_answer(text: str) -> str:
    """SQuAD normalization: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _golds(golds: Sequence[str] | str) -> list[str]:
    out = [golds] if isinstance(golds, str) else list(golds)
    if not out:
        raise InvalidInputError("a scorer needs at least one gold answer")
    return out


def exact_match(prediction: str, golds: Sequence[str] | str) -> float:
    """1.0 when the normalized prediction equals a normalized gold answer."""
    p = normalize_answer(prediction)
    return float(any(p == normalize_answer(g) for g in _golds(golds)))


def _f1(prediction: str, gold: str) -> float:
    p, g = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not p or not g:  # the official script: both empty -> 1, one empty -> 0
        return float(p == g)
    common = Counter(p) & Counter(g)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, golds: Sequence[str] | str) -> float:
    """The best SQuAD token F1 of the prediction against any gold answer."""
    return max(_f1(prediction, g) for g in _golds(golds))


def contains_gold(prediction: str, golds: Sequence[str] | str) -> float:
    """1.0 when a normalized gold answer occurs in the normalized prediction as whole words."""
    p = f" {normalize_answer(prediction)} "
    return float(any((n := normalize_answer(g)) and f" {n} " in p for g in _golds(golds)))


def _as_number(text: str) -> Decimal | None:
    try:
        return Decimal(text.replace(",", "").rstrip("."))
    except InvalidOperation:
        return None


def numeric_match(prediction: str, golds: Sequence[str] | str) -> float:
    """GSM8K-style: the prediction's final number (after ``####`` when present) equals a gold number."""
    tail = prediction.rsplit("####", 1)[-1]
    found = _NUMBER.findall(tail)
    if not found:
        return 0.0
    got = _as_number(found[-1])
    if got is None:
        return 0.0
    for g in _golds(golds):
        nums = _NUMBER.findall(g.rsplit("####", 1)[-1])
        want = _as_number(nums[-1]) if nums else None
        if want is not None and want == got:
            return 1.0
    return 0.0


@runtime_checkable
class Scorer(Protocol):
    """Scores a prediction against gold answers; ``passed`` says whether the score is a success."""

    name: str

    def score(self, prediction: str, golds: Sequence[str], question: str = "") -> float: ...

    def passed(self, score: float) -> bool: ...


class _Base:
    name = ""

    def score(self, prediction: str, golds: Sequence[str], question: str = "") -> float:  # pragma: no cover
        raise NotImplementedError

    def passed(self, score: float) -> bool:
        return score >= 1.0

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ExactMatch(_Base):
    """SQuAD exact match after normalization."""

    name = "exact_match"

    def score(self, prediction: str, golds: Sequence[str], question: str = "") -> float:
        return exact_match(prediction, golds)


class TokenF1(_Base):
    """SQuAD token F1; a success is F1 >= ``threshold`` (default 0.5)."""

    name = "token_f1"

    def __init__(self, threshold: float = 0.5) -> None:
        if not 0 < threshold <= 1:
            raise InvalidInputError(f"threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold

    def score(self, prediction: str, golds: Sequence[str], question: str = "") -> float:
        return token_f1(prediction, golds)

    def passed(self, score: float) -> bool:
        return score >= self.threshold


class ContainsGold(_Base):
    """A normalized gold answer appears in the normalized prediction, as whole words."""

    name = "contains_gold"

    def score(self, prediction: str, golds: Sequence[str], question: str = "") -> float:
        return contains_gold(prediction, golds)


class NumericMatch(_Base):
    """GSM8K: the final number of the prediction equals the gold number."""

    name = "numeric_match"

    def score(self, prediction: str, golds: Sequence[str], question: str = "") -> float:
        return numeric_match(prediction, golds)


_JUDGE_PROMPT = (
    "You grade answers. Question: {question}\nGold answer(s): {golds}\nCandidate answer: {prediction}\n"
    "Does the candidate answer mean the same as a gold answer? Reply with exactly one word: yes or no."
)


class Judge:
    """An LLM judge through any ctxkit backend (or dispatcher): 1.0 when it replies *yes*."""

    name = "judge"

    def __init__(self, backend: Any, *, prompt: str = _JUDGE_PROMPT, max_tokens: int = 4) -> None:
        if not hasattr(backend, "generate") and not hasattr(backend, "run"):
            raise InvalidInputError("a Judge needs a ctxkit backend or dispatcher (with generate() or run())")
        self.backend = backend
        self.prompt = prompt
        self.max_tokens = max_tokens

    def __repr__(self) -> str:
        return f"Judge(backend={getattr(self.backend, 'name', type(self.backend).__name__)!r})"

    def score(self, prediction: str, golds: Sequence[str], question: str = "") -> float:
        text = self.prompt.format(question=question, golds=" | ".join(_golds(golds)), prediction=prediction)
        call = self.backend.run if hasattr(self.backend, "run") else self.backend.generate
        reply = call(text, max_tokens=self.max_tokens, temperature=0.0)
        return float(normalize_answer(reply.text).startswith("yes"))

    def passed(self, score: float) -> bool:
        return score >= 1.0


_BY_NAME: dict[str, Callable[[], Scorer]] = {
    "exact_match": ExactMatch,
    "em": ExactMatch,
    "token_f1": TokenF1,
    "f1": TokenF1,
    "contains_gold": ContainsGold,
    "contains": ContainsGold,
    "numeric_match": NumericMatch,
    "numeric": NumericMatch,
}


def get_scorer(name: str | Scorer) -> Scorer:
    """A scorer by name (``exact_match``, ``token_f1``, ``contains_gold``, ``numeric_match``) or as given."""
    if not isinstance(name, str):
        return name
    try:
        return _BY_NAME[name]()
    except KeyError:
        raise InvalidInputError(
            f"unknown scorer {name!r}; choose one of {sorted(set(_BY_NAME))} or pass a Scorer"
        ) from None
