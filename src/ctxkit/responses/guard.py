"""Guards against false semantic hits: a question that embeds close to a cached one but asks something else.

Embedding similarity alone answers the opposite question: "Which city is **not** ..." lands next to
"Which city is ...", "... in 1998" next to "... in 2008" (GPTCache #694, LiteLLM #12234). Every
candidate above the similarity threshold must also agree with the new question on:

* **numbers** — :func:`ctxkit.compress.fidelity.extract_numbers`, thousands separators dropped,
  number words and ordinals up to twenty mapped to digits (``"three"`` = ``"3"``, ``"first"`` = ``"1"``);
* **dates** — month and weekday names (years are numbers);
* **units** — a fixed lexicon mapped to canonical units (``"kilometres"`` = ``"km"``, ``"%"`` = ``"percent"``);
* **negation** — the count of negation cues (``not``, ``n't``, ``never``, ``no``, ``without``, ...);
* **polarity** — comparatives, superlatives and directions with an opposite (``first``/``last``,
  ``oldest``/``youngest``, ``before``/``after``, ``north``/``south``; synonyms share a class);
* **named entities** — capitalized runs (:func:`~ctxkit.compress.fidelity.extract_entities`, sentence
  starts included, question words stripped); each entity of either question must occur as whole
  words in the other (case-insensitive), so moving a name to the start of a sentence is fine but
  swapping it for another is not.

The first five are reduced to one 63-bit signature per question, compared for the whole candidate
set at once (NumPy); the entity check runs on the few candidates left. Any mismatch vetoes the hit.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ctxkit.compress.fidelity import extract_entities, extract_numbers

__all__ = ["QueryFeatures", "SemanticGuard"]

_NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
            "twenty",
        ]
    )
}
_NUMBER_WORDS.update({"thirty": "30", "forty": "40", "fifty": "50", "sixty": "60", "seventy": "70"})
_NUMBER_WORDS.update({"eighty": "80", "ninety": "90", "hundred": "100", "thousand": "1000", "million": "1000000"})
_NUMBER_WORDS.update({"billion": "1000000000", "dozen": "12", "twice": "2", "once": "1", "thrice": "3"})
_ORDINALS = [
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
    "eleventh",
    "twelfth",
    "thirteenth",
    "fourteenth",
    "fifteenth",
    "sixteenth",
    "seventeenth",
    "eighteenth",
    "nineteenth",
    "twentieth",
]
_NUMBER_WORDS.update({w: str(i + 1) for i, w in enumerate(_ORDINALS)})
# "first"/"last" are also polar; "first" counts as the number 1 and "last" as its opposite below

_MONTHS = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
]
_VERBS = frozenset({"may", "march"})
_MAY_MARCH = re.compile(r"(?<!^)\b(?:May|March)\b")  # the months, capitalized and not starting the text
_MONTH_ABBR = {m[:3]: m for m in _MONTHS[:12] if m not in _VERBS} | {"sept": "september"}


def _by_word(groups: dict[str, str]) -> dict[str, str]:
    """Each word of a group's space-separated words, mapped to the group's canonical name."""
    return {w: canon for canon, words in groups.items() for w in words.split()}


_UNITS = _by_word(
    {
        "km": "km kilometer kilometers kilometre kilometres",
        "mi": "mi mile miles",
        "m": "meter meters metre metres",
        "cm": "cm centimeter centimeters centimetre centimetres",
        "mm": "mm millimeter millimeters millimetre millimetres",
        "ft": "ft foot feet",
        "in": "inch inches",
        "yd": "yd yard yards",
        "kg": "kg kilogram kilograms kilo kilos",
        "g": "gram grams",
        "lb": "lb lbs pound pounds",
        "oz": "oz ounce ounces",
        "t": "ton tons tonne tonnes",
        "l": "liter liters litre litres",
        "gal": "gallon gallons",
        "c": "celsius centigrade °c",
        "f": "fahrenheit °f",
        "percent": "percent percentage % pct",
        "usd": "dollar dollars usd $",
        "eur": "euro euros eur €",
        "gbp": "sterling gbp £",
        "jpy": "yen jpy ¥",
        "h": "hour hours hr hrs",
        "min": "minute minutes mins",
        "s": "seconds sec secs",
        "day": "day days",
        "week": "week weeks",
        "month": "month months",
        "year": "year years yr yrs",
        "decade": "decade decades",
        "century": "century centuries",
        "acre": "acre acres",
        "ha": "hectare hectares",
        "mph": "mph",
        "kmh": "kph kmh",
        "w": "watt watts",
        "kw": "kilowatt kilowatts kw",
        "v": "volt volts",
        "byte": "byte bytes",
        "kb": "kb kilobyte kilobytes",
        "mb": "mb megabyte megabytes",
        "gb": "gb gigabyte gigabytes",
        "tb": "tb terabyte terabytes",
    }
)

_NEGATIONS = frozenset(
    [
        "not",
        "no",
        "never",
        "none",
        "nobody",
        "nothing",
        "neither",
        "nor",
        "without",
        "cannot",
        "nowhere",
        "isnt",
        "arent",
        "wasnt",
        "werent",
        "dont",
        "doesnt",
        "didnt",
        "cant",
        "couldnt",
        "wont",
        "wouldnt",
        "shouldnt",
        "hasnt",
        "havent",
        "hadnt",
    ]
)

_POLAR = _by_word(
    {
        "first": "first earliest initial",
        "last": "last latest final",
        "old+": "older elder",
        "old++": "oldest eldest",
        "young+": "younger newer",
        "young++": "youngest newest",
        "large+": "larger bigger greater",
        "large++": "largest biggest greatest",
        "small+": "smaller lesser",
        "small++": "smallest",
        "more": "more",
        "most": "most",
        "less": "less fewer",
        "least": "least fewest",
        "high+": "higher taller",
        "high++": "highest tallest",
        "low+": "lower shorter",
        "low++": "lowest shortest",
        "long+": "longer",
        "long++": "longest",
        "early+": "earlier sooner",
        "late+": "later",
        "before": "before prior preceding",
        "after": "after following",
        "north": "north northern",
        "south": "south southern",
        "east": "east eastern",
        "west": "west western",
        "above": "above over",
        "below": "below under beneath",
        "max": "maximum max",
        "min": "minimum",
        "best": "best",
        "worst": "worst",
        "better": "better",
        "worse": "worse",
        "same": "same",
        "different": "different",
        "up": "up",
        "down": "down",
        "in": "inside",
        "out": "outside",
    }
)

# auxiliary verbs: a yes/no question starts with one (_STARTERS), a negation contracts onto one (_AUX)
_AUX_VERBS = (
    "is",
    "are",
    "was",
    "were",
    "do",
    "does",
    "did",
    "could",
    "would",
    "should",
    "has",
    "have",
    "had",
    "must",
    "might",
)

# capitalized words that start questions and requests, and discourse words: not names
_STARTERS = frozenset(
    [
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "when",
        "where",
        "why",
        "how",
        *_AUX_VERBS,
        "can",
        "will",
        "shall",
        "may",
        "tell",
        "please",
        "name",
        "give",
        "list",
        "the",
        "a",
        "an",
        "in",
        "on",
        "at",
        "of",
        "for",
        "to",
        "from",
        "by",
        "with",
        "i",
        "you",
        "we",
        "they",
        "he",
        "she",
        "it",
        "this",
        "that",
        "these",
        "those",
        "and",
        "or",
        "but",
        "if",
        "as",
        "so",
        "there",
        "here",
        "explain",
        "describe",
        "find",
        "identify",
        "quick",
        "question",
        "hey",
        "hi",
        "hello",
        "ok",
        "okay",
        "well",
        "also",
        "btw",
        "just",
        "now",
        "actually",
        "sorry",
        "thanks",
        "thank",
        "yes",
        "no",
    ]
)
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?|[%$€£¥]|°[cf]", re.IGNORECASE)
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")


def _words(text: str) -> list[str]:
    return [w.replace("'", "") for w in _WORD.findall(text.casefold())]


_TOKEN = re.compile(r"[^\W_]+")


def _tokens(text: str) -> list[str]:
    """Word tokens for entity matching: apostrophes and hyphens split words (``Newman's`` -> ``newman s``)."""
    return _TOKEN.findall(text.casefold())


def _phrase(text: str) -> str:
    return " " + " ".join(_tokens(text)) + " "


@dataclass(frozen=True, slots=True)
class QueryFeatures:
    """What a question asserts beyond its topic (see the module docstring). ``signature`` folds all but entities."""

    numbers: frozenset[str]
    dates: frozenset[str]
    units: frozenset[str]
    negations: int
    polarity: frozenset[str]
    entities: tuple[str, ...]
    phrase: str
    signature: int

    def mismatch(self, other: QueryFeatures) -> str | None:
        """The first kind of disagreement with ``other`` (``"numbers"``, ..., ``"entities"``), or None."""
        for name in ("numbers", "dates", "units", "negations", "polarity"):
            if getattr(self, name) != getattr(other, name):
                return name
        for a, b in ((self, other), (other, self)):
            if any(f" {e} " not in b.phrase for e in a.entities):
                return "entities"
        return None


def _digest(parts: tuple[object, ...]) -> int:
    h = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & 0x7FFF_FFFF_FFFF_FFFF


_WORD_TAIL = re.compile(r"\w*")


def _entities(text: str) -> tuple[str, ...]:
    out: list[str] = []
    start = 0
    for run in extract_entities(" " + text):
        # extract_entities matches ASCII letters: extend a run cut at a non-ASCII letter ("Koltès", "Unión")
        at = text.find(run, start)
        if at >= 0:
            end = at + len(run)
            tail = _WORD_TAIL.match(text, end)
            end += len(tail.group(0)) if tail else 0
            run = text[at:end]
            start = end
        words = run.split()
        while words and words[0].casefold() in _STARTERS:
            words.pop(0)
        if words:
            phrase = " ".join(_tokens(" ".join(words)))
            if phrase and phrase not in out:
                out.append(phrase)
    return tuple(out)


class SemanticGuard:
    """Vetoes semantic hits whose question differs in numbers, dates, units, negation, polarity or entities.

    Each check can be switched off (``numbers=False``, ...) to measure what it contributes.
    """

    def __init__(
        self,
        *,
        numbers: bool = True,
        dates: bool = True,
        units: bool = True,
        negation: bool = True,
        polarity: bool = True,
        entities: bool = True,
    ) -> None:
        self.numbers = numbers
        self.dates = dates
        self.units = units
        self.negation = negation
        self.polarity = polarity
        self.entities = entities

    def __repr__(self) -> str:
        on = [n for n in ("numbers", "dates", "units", "negation", "polarity", "entities") if getattr(self, n)]
        return f"SemanticGuard({', '.join(on)})"

    def features(self, text: str) -> QueryFeatures:
        """The features of one question."""
        words = _words(text)
        numbers = {_THOUSANDS.sub("", n).lstrip("+") for n in extract_numbers(text)} if self.numbers else set()
        if self.numbers:
            numbers.update(_NUMBER_WORDS[w] for w in words if w in _NUMBER_WORDS)
        dates: frozenset[str] = frozenset()
        if self.dates:
            found = {_MONTH_ABBR.get(w, w) for w in words if (w in _MONTHS or w in _MONTH_ABBR) and w not in _VERBS}
            found.update(m.group(0).casefold() for m in _MAY_MARCH.finditer(text.strip()))
            dates = frozenset(found)
        units = frozenset(_UNITS[w] for w in words if w in _UNITS) if self.units else frozenset()
        if self.units:
            units |= {_UNITS[c] for c in "%$€£¥" if c in text}
        negs = sum(1 for w in words if w in _NEGATIONS or (w.endswith("nt") and w[:-2] in _AUX)) if self.negation else 0
        polar = frozenset(_POLAR[w] for w in words if w in _POLAR) if self.polarity else frozenset()
        ents = _entities(text) if self.entities else ()
        nums = frozenset(numbers)
        sig = _digest((sorted(nums), sorted(dates), sorted(units), negs, sorted(polar)))
        return QueryFeatures(nums, dates, units, negs, polar, ents, _phrase(text), sig)

    def signatures(self, features: list[QueryFeatures]) -> npt.NDArray[np.int64]:
        return np.fromiter((f.signature for f in features), dtype=np.int64, count=len(features))

    def allowed(
        self, query: QueryFeatures, candidates: list[QueryFeatures], signatures: npt.NDArray[np.int64] | None = None
    ) -> npt.NDArray[np.bool_]:
        """A boolean mask over ``candidates``: True where no guard vetoes (signatures compared vectorized)."""
        sigs = self.signatures(candidates) if signatures is None else signatures
        mask: npt.NDArray[np.bool_] = sigs == np.int64(query.signature)
        if self.entities:
            for i in np.flatnonzero(mask):
                if query.mismatch(candidates[int(i)]) is not None:
                    mask[i] = False
        return mask

    def veto(self, a: str, b: str) -> str | None:
        """Why ``a`` and ``b`` must not share an answer (the first mismatch), or None when the guards allow it."""
        return self.features(a).mismatch(self.features(b))


_AUX = frozenset([*_AUX_VERBS, "ca", "wo", "need"])  # and the stems before a negation's 'nt'
