"""What a compression cost: tokens before and after, rate, and retention of facts that must survive.

Retention is measured on normalized text (case-folded, whitespace collapsed):

* **numbers** — every distinct number in the source (``48``, ``3.5``, ``1,200``, ``-7``);
* **entities** — capitalized names that do not start a sentence (a light, dependency-free
  heuristic: ``Natalia``, ``New York``, ``OpenAI``);
* **answers** — gold answer spans, when given (for question answering): ``answer_retention`` is
  the share kept, ``answer_survived`` whether at least one of them (gold aliases) survives;
* **facts** — any other strings the caller says must survive.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

from pydantic import ConfigDict, Field

from ctxkit._model import CtxkitModel
from ctxkit.tokenizers import get_tokenizer

__all__ = ["FidelityReport", "extract_entities", "extract_numbers", "fidelity_report"]

_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:[.,:/]\d+)*%?")
_ENTITY = re.compile(r"(?<![.!?\n]\s)(?<!^)\b[A-Z][a-zA-Z]+(?:\s+[A-Z][a-zA-Z]+)*")
_WS = re.compile(r"\s+")


def _norm(text: str) -> str:
    return _WS.sub(" ", text).strip().casefold()


def extract_numbers(text: str) -> list[str]:
    """Distinct numbers in ``text``, in order of first appearance."""
    return list(dict.fromkeys(m.group(0).rstrip(".,:/") for m in _NUMBER.finditer(text)))


def extract_entities(text: str) -> list[str]:
    """Distinct capitalized names that do not start a sentence (a heuristic, no model)."""
    return list(dict.fromkeys(m.group(0) for m in _ENTITY.finditer(text)))


def _retention(items: Sequence[str], compressed: str) -> tuple[float | None, list[str]]:
    if not items:
        return None, []
    target = _norm(compressed)
    lost = [s for s in items if _norm(s) not in target]
    return 1.0 - len(lost) / len(items), lost


class FidelityReport(CtxkitModel):
    """Tokens, rate and retention of one compression. A retention is ``None`` when there was nothing to retain."""

    model_config = ConfigDict(frozen=True)

    method: str = ""
    tokens_before: int
    tokens_after: int
    requested_rate: float | None = None
    number_retention: float | None = None
    entity_retention: float | None = None
    answer_retention: float | None = None
    answer_survived: bool | None = None
    fact_retention: float | None = None
    lost_numbers: list[str] = Field(default_factory=list)
    lost_entities: list[str] = Field(default_factory=list)
    lost_answers: list[str] = Field(default_factory=list)
    lost_facts: list[str] = Field(default_factory=list)

    @property
    def rate(self) -> float:
        """Achieved rate: tokens after / tokens before."""
        return self.tokens_after / self.tokens_before if self.tokens_before else 1.0

    @property
    def tokens_saved(self) -> int:
        return self.tokens_before - self.tokens_after

    def summary(self) -> str:
        """A one-line human summary."""

        def pct(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.0%}"

        asked = f" (asked {self.requested_rate:.2f})" if self.requested_rate is not None else ""
        survived = (
            "" if self.answer_survived is None else (" (answer kept)" if self.answer_survived else " (answer LOST)")
        )
        return (
            f"{self.method or 'compression'}{survived}: {self.tokens_before} -> {self.tokens_after} tokens, "
            f"rate {self.rate:.2f}{asked}; numbers {pct(self.number_retention)}, "
            f"entities {pct(self.entity_retention)}, answers {pct(self.answer_retention)}, "
            f"facts {pct(self.fact_retention)}"
        )

    def _repr_html_(self) -> str:
        rows = [
            ("tokens", f"{self.tokens_before} → {self.tokens_after} ({self.tokens_saved} saved)"),
            ("rate", f"{self.rate:.3f}" + (f" (asked {self.requested_rate:.3f})" if self.requested_rate else "")),
        ]
        for label, value, lost in (
            ("numbers", self.number_retention, self.lost_numbers),
            ("entities", self.entity_retention, self.lost_entities),
            ("answers", self.answer_retention, self.lost_answers),
            ("facts", self.fact_retention, self.lost_facts),
        ):
            if value is not None:
                extra = f" — lost: {', '.join(lost[:10])}" if lost else ""
                rows.append((label, f"{value:.0%}{extra}"))
        body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
        return f"<table><caption>{html.escape(self.method or 'compression')} fidelity</caption>{body}</table>"


def fidelity_report(
    original: str,
    compressed: str,
    *,
    tokens_before: int | None = None,
    tokens_after: int | None = None,
    tokenizer: str = "gpt-4o",
    requested_rate: float | None = None,
    answers: Sequence[str] | None = None,
    facts: Sequence[str] | None = None,
    method: str = "",
) -> FidelityReport:
    """Measure a compression of ``original`` into ``compressed``.

    Token counts default to ``tokenizer`` (any ctxkit tokenizer spec or model name).
    """
    if tokens_before is None or tokens_after is None:
        tok = get_tokenizer(tokenizer)
        tokens_before = tok.count(original) if tokens_before is None else tokens_before
        tokens_after = tok.count(compressed) if tokens_after is None else tokens_after
    source_numbers = extract_numbers(original)
    kept_numbers = set(extract_numbers(compressed))  # whole numbers: "48" is not kept by "480"
    lost_n = [n for n in source_numbers if n not in kept_numbers]
    nums = 1.0 - len(lost_n) / len(source_numbers) if source_numbers else None
    ents, lost_e = _retention(extract_entities(original), compressed)
    gold = [a for a in answers or [] if a.strip()]
    ans, lost_a = _retention(gold, compressed)
    fac, lost_f = _retention([f for f in facts or [] if f.strip()], compressed)
    return FidelityReport(
        method=method,
        tokens_before=tokens_before,
        tokens_after=tokens_after,
        requested_rate=requested_rate,
        number_retention=nums,
        entity_retention=ents,
        answer_retention=ans,
        answer_survived=None if not gold else len(lost_a) < len(gold),
        fact_retention=fac,
        lost_numbers=lost_n,
        lost_entities=lost_e,
        lost_answers=lost_a,
        lost_facts=lost_f,
    )
