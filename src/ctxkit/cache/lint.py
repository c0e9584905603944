"""Lint a request for content that breaks its cacheable prefix.

A prefix is served from the cache only if it is byte-identical to a recent request's.
Content that is regenerated on every call — the current date or time, request ids,
UUIDs, tokens, counters, a tool list in a different order — inside a *stable* section
moves the first divergence up to that point, and every token after it is billed at
full price. :func:`lint` finds such content and names the section, the field, the
character span and the token position of each finding::

    report = lint(prompt)
    for f in report.findings:
        print(f.severity, f.kind, f.section, f.field, f.token_position, f.text)

Severity: ``error`` for content that is almost surely volatile in a static section;
``warning`` for content that is probably volatile (a bare ISO date, a long hex id), or
any pattern hit in a per-session section (fine if written once and never re-rendered);
``info`` for a tool list that is not in canonical order (fine if the order never changes).
Given the ``previous`` request, a reordered tool list or a schema serialized with its keys
in another order is an ``error``.
Per-turn sections are not linted: they are expected to change.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from pydantic import ConfigDict, Field

from ctxkit._model import CtxkitModel
from ctxkit.cache.layout import Segment, Stability, StabilityMap, chat_counter, segments, wire_json
from ctxkit.tokenizers.chat import ChatCounter

if TYPE_CHECKING:
    from ctxkit.assembly.prompt import AssembledPrompt

__all__ = ["LintFinding", "LintReport", "lint", "scan_text"]

Severity = Literal["error", "warning", "info"]

_MON = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?"
    r"|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"
)
_WD = r"(?:Mon|Tues?|Wed(?:nes)?|Thu(?:rs)?|Fri|Sat(?:ur)?|Sun)(?:day)?"
_ANY_DATE = (
    r"(?:" + _WD + r",?\s+)?(?:" + _MON + r"\.?\s+\d{1,2}(?:st|nd|rd|th)?,?\s+(?:19|20)\d{2}"
    r"|\d{1,2}\s+" + _MON + r"\.?,?\s+(?:19|20)\d{2}|(?:19|20)\d{2}[-/.]\d{1,2}[-/.]\d{1,2}"
    r"|\d{1,2}/\d{1,2}/\d{2,4}|" + _WD + r"|\d{1,2}:\d{2})"
)

# (kind, severity in a static section, pattern, advice); earlier rules win overlapping spans
_RULES: list[tuple[str, Severity, re.Pattern[str], str]] = [
    (
        "jwt",
        "error",
        re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}"),
        "a JWT (a per-session or per-request credential); never put tokens in a prompt",
    ),
    (
        "uuid",
        "error",
        re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"),
        "a UUID, usually a per-request or per-session id; move it to the per-turn part or drop it",
    ),
    (
        "timestamp",
        "error",
        re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?"),
        "an ISO timestamp; it changes every call — put the time in the final user message instead",
    ),
    (
        "timestamp",
        "error",
        re.compile(r"\b" + _WD + r",? \d{1,2} " + _MON + r" \d{4} \d{2}:\d{2}"),
        "an RFC 2822 timestamp; it changes every call — put the time in the final user message instead",
    ),
    (
        "current_date",
        "error",
        re.compile(
            r"(?i)\b(?:today(?:'s date)?(?: is)?|current (?:date|time|datetime|timestamp)(?: is)?"
            r"|the (?:current )?(?:date|time) is|now is|date|time|timestamp|generated (?:at|on)|as of)"
            r"\s*[:=]?\s*" + _ANY_DATE
        ),
        "the current date or time; it changes daily (or every call) — put it in the final user message",
    ),
    (
        "relative_time",
        "error",
        re.compile(r"(?i)\b\d+\s+(?:seconds?|secs?|minutes?|mins?|hours?|hrs?)\s+ago\b|\bjust now\b"),
        "a relative time ('5 minutes ago') that is re-rendered on every call; use absolute times written once",
    ),
    (
        "epoch",
        "error",
        re.compile(r"\b1[5-9]\d{8}(?:\d{3})?\b"),
        "a Unix timestamp; it changes every call — put it in the per-turn part",
    ),
    (
        "date",
        "warning",
        re.compile(r"\b(?:19|20)\d{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])\b"),
        "an ISO date; if it is today's date it changes daily and breaks the cache from then on",
    ),
    (
        "clock_time",
        "error",
        re.compile(
            r"\b(?:[01]?\d|2[0-3]):[0-5]\d:[0-5]\d\b|\b(?:[01]?\d|2[0-3]):[0-5]\d\s?(?:[AaPp]\.?[Mm]\.?|UTC|GMT|Z)\b"
        ),
        "a clock time; it changes every call — put it in the final user message",
    ),
    (
        "hex_id",
        "warning",
        re.compile(
            r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{16,}\b|\b(?=[0-9A-F]*[A-F])(?=[0-9A-F]*\d)[0-9A-F]{16,}\b"
        ),
        "a long hex id (request id, hash, nonce); if it is generated per call it breaks the cache",
    ),
    (
        "random_id",
        "error",
        re.compile(
            r"\b(?:req|sess|session|msg|run|trace|span|call|chatcmpl|toolu|evt|txn|conv|user|uid|id|nonce)[_-]"
            r"(?=[A-Za-z0-9]*\d)[A-Za-z0-9]{8,}\b"
        ),
        "a generated id (request, session, trace...); keep ids out of stable sections",
    ),
    (
        "random_id",
        "warning",
        re.compile(
            r"(?<![A-Za-z0-9_/.-])(?=[A-Za-z0-9_-]*[A-Z])(?=[A-Za-z0-9_-]*[a-z])(?=[A-Za-z0-9_-]*\d)"
            r"[A-Za-z0-9_-]{20,}(?![A-Za-z0-9_-])"
        ),
        "a random-looking token (base62/base64); if it is generated per call it breaks the cache",
    ),
    (
        "counter",
        "error",
        re.compile(
            r"(?i)\b(?:turn|message|request|call|attempt|iteration|step|round|query|visit)\s*(?:#|no\.?|number)?"
            r"\s*\d+\s*(?:of|/)\s*\d+\b"
        ),
        "a counter ('turn 3 of 10') that changes every call; move it to the final user message",
    ),
    (
        "counter",
        "error",
        re.compile(
            r"(?i)\b(?:turn|message|request|attempt|iteration|round|call|visit|query)\s*"
            r"(?:#|no\.|number|count|counter|index|id)\s*[:=]?\s*\d+"
        ),
        "a counter ('message #12') that changes every call; move it to the final user message",
    ),
    (
        "counter",
        "error",
        re.compile(
            r"(?i)\b\d+\s+(?:messages?|requests?|turns?|calls?|tokens?|credits?|queries|attempts?)\s+"
            r"(?:left|remaining|so far|used)\b"
        ),
        "a running count ('3 messages left') that changes every call; move it to the final user message",
    ),
    (
        "counter",
        "error",
        re.compile(r"(?i)\b(?:count|counter|seq(?:uence)?(?: number)?|n_calls|nonce)\s*[:=]\s*\d+"),
        "a counter value that changes every call; move it to the final user message",
    ),
]


class LintFinding(CtxkitModel):
    """One piece of probably-volatile content inside a stable section."""

    model_config = ConfigDict(frozen=True)

    kind: str = Field(
        description="jwt, uuid, timestamp, current_date, date, clock_time, epoch, relative_time, "
        "hex_id, random_id, counter, tool_order, tools_changed, json_key_order"
    )
    severity: Severity
    section: str
    stability: Stability
    field: str = Field(description="where: 'messages[0].content', 'tools[2].description', 'tools'")
    start: int = Field(description="character offset of the match inside the field's text (-1: whole field)")
    end: int
    token_position: int = Field(description="approximate token index of the match from the start of the request")
    text: str = Field(description="the matched text (cut to 80 characters)")
    advice: str

    def __str__(self) -> str:
        where = f"{self.field}[{self.start}:{self.end}]" if self.start >= 0 else self.field
        return (
            f"{self.severity}: {self.kind} in {self.section} at {where} (token ~{self.token_position}): "
            f"{self.text!r} — {self.advice}"
        )


class LintReport(CtxkitModel):
    """All findings of one lint run."""

    model_config = ConfigDict(frozen=True)

    findings: tuple[LintFinding, ...] = ()

    @property
    def errors(self) -> list[LintFinding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[LintFinding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        """True when there is no error-level finding."""
        return not self.errors

    def __len__(self) -> int:
        return len(self.findings)

    def __str__(self) -> str:
        if not self.findings:
            return "cache lint: no findings"
        return "\n".join(str(f) for f in self.findings)

    def _repr_html_(self) -> str:
        if not self.findings:
            return "<div><b>cache lint</b>: no findings</div>"
        colors = {"error": "#E45756", "warning": "#F58518", "info": "#4C78A8"}
        rows = "".join(
            f"<tr><td style='color:{colors[f.severity]}'>{f.severity}</td><td>{html.escape(f.kind)}</td>"
            f"<td>{html.escape(f.section)}</td><td><code>{html.escape(f.field)}</code></td><td>{f.token_position}</td>"
            f"<td><code>{html.escape(f.text)}</code></td><td>{html.escape(f.advice)}</td></tr>"
            for f in self.findings
        )
        return (
            f"<div><b>cache lint</b>: {len(self.errors)} errors, {len(self.warnings)} warnings"
            "<table><tr><th>severity</th><th>kind</th><th>section</th><th>field</th><th>token</th>"
            f"<th>text</th><th>advice</th></tr>{rows}</table></div>"
        )


def scan_text(text: str) -> list[tuple[str, Severity, int, int, str, str]]:
    """Pattern hits in ``text``: ``(kind, severity, start, end, matched, advice)``, non-overlapping, in order."""
    taken: list[tuple[int, int]] = []
    hits: list[tuple[str, Severity, int, int, str, str]] = []
    for kind, severity, pattern, advice in _RULES:
        for m in pattern.finditer(text):
            a, b = m.span()
            if any(a < y and x < b for x, y in taken):
                continue
            taken.append((a, b))
            hits.append((kind, severity, a, b, m.group(), advice))
    hits.sort(key=lambda h: h[2])
    return hits


def _texts(prompt: AssembledPrompt, seg: Segment, counter: ChatCounter) -> list[tuple[str, str, int]]:
    """(field, text, tokens before the text inside the segment) for the lintable texts of a segment."""
    if seg.kind == "tool":
        tool = prompt.tools[seg.source_index]
        return [
            (f"tools[{seg.source_index}].description", tool.description, 0),
            (f"tools[{seg.source_index}].parameters", repr(tool.parameters), 0),
        ]
    m = prompt.messages[seg.source_index]
    lead = counter.message_tokens(m.model_copy(update={"content": "", "name": None, "tool_calls": ()}))
    out = [(f"messages[{seg.source_index}].content", m.content, max(lead - 1, 0))]
    if m.name:
        out.append((f"messages[{seg.source_index}].name", m.name, 0))
    return out


def lint(
    prompt: AssembledPrompt,
    *,
    previous: AssembledPrompt | None = None,
    stability: StabilityMap | None = None,
    counter: ChatCounter | None = None,
    provider: str | None = None,
) -> LintReport:
    """Find volatile content in the stable sections of ``prompt``.

    With ``previous`` (the request sent before this one), a tool list that holds the
    same tools in another order, or a changed tool set, is reported as an error.
    """
    counter = counter or chat_counter(prompt.model)
    tok = counter.tokenizer
    segs = segments(prompt, provider=provider, counter=counter, stability=stability)
    findings: list[LintFinding] = []
    for seg in segs:
        if seg.stability == Stability.TURN:
            continue
        for field, text, lead in _texts(prompt, seg, counter):
            if not text:
                continue
            for kind, severity, a, b, matched, advice in scan_text(text):
                sev: Severity = severity if seg.stability == Stability.STATIC else "warning"
                if seg.stability == Stability.SESSION:
                    advice += (
                        " (in a per-session section this is fine if the text is written once and never re-rendered)"
                    )
                findings.append(
                    LintFinding(
                        kind=kind,
                        severity=sev,
                        section=seg.section,
                        stability=seg.stability,
                        field=field,
                        start=a,
                        end=b,
                        token_position=seg.start + lead + tok.count(text[:a]),
                        text=matched[:80],
                        advice=advice,
                    )
                )
    findings.extend(_tool_findings(prompt, previous, segs, stability))
    findings.sort(key=lambda f: (f.token_position, f.start))
    return LintReport(findings=tuple(findings))


def _tool_findings(
    prompt: AssembledPrompt,
    previous: AssembledPrompt | None,
    segs: Sequence[Segment],
    stability: StabilityMap | None,
) -> list[LintFinding]:
    from ctxkit.cache.layout import resolve_stability

    out: list[LintFinding] = []
    if not prompt.tools:
        return out
    cls = resolve_stability(stability).get("tools", Stability.STATIC)
    if cls == Stability.TURN:
        return out

    def finding(
        *, kind: str, severity: Severity, field: str, token_position: int, text: str, advice: str
    ) -> LintFinding:
        """A finding on a whole field of the tools section (no character span; ``text`` cut to 80 characters)."""
        return LintFinding(
            kind=kind,
            severity=severity,
            section="tools",
            stability=cls,
            field=field,
            start=-1,
            end=-1,
            token_position=token_position,
            text=text[:80],
            advice=advice,
        )

    tool_start = {s.source_index: s.start for s in segs if s.kind == "tool"}
    names = [t.name for t in prompt.tools]
    if previous is not None and previous.tools:
        before = [t.name for t in previous.tools]
        if sorted(before) == sorted(names) and before != names:
            first = next(i for i, (x, y) in enumerate(zip(before, names, strict=True)) if x != y)
            out.append(
                finding(
                    kind="tool_order",
                    severity="error",
                    field=f"tools[{first}]",
                    token_position=tool_start.get(first, 0),
                    text=f"{before} -> {names}",
                    advice="the same tools in a different order: every token from here on is a cache miss; "
                    "pass tools through ctxkit.cache.canonical_tools() to fix the order",
                )
            )
        elif sorted(before) != sorted(names):
            changed = sorted(set(before) ^ set(names))
            first = next(
                (i for i, (x, y) in enumerate(zip(before, names, strict=False)) if x != y), min(len(before), len(names))
            )
            out.append(
                finding(
                    kind="tools_changed",
                    severity="warning",
                    field=f"tools[{first}]",
                    token_position=tool_start.get(first, 0),
                    text=f"added/removed: {changed}",
                    advice="the tool set changed since the previous call; the whole prefix after it is re-processed. "
                    "Keep one stable tool set per session (disable tools in the prompt instead of removing them)",
                )
            )
    elif names != sorted(names):
        out.append(
            finding(
                kind="tool_order",
                severity="info",
                field="tools",
                token_position=0,
                text=str(names),
                advice="tools are not in a canonical order; if the application builds the list from plugins, "
                "dicts or sets the order can change between calls — use ctxkit.cache.canonical_tools()",
            )
        )
    if previous is not None:  # same schema, different key order: equal as data, different as bytes
        old = {t.name: t for t in previous.tools}
        for i, t in enumerate(prompt.tools):
            o = old.get(t.name)
            if o is not None and o.parameters == t.parameters and wire_json(o.parameters) != wire_json(t.parameters):
                out.append(
                    finding(
                        kind="json_key_order",
                        severity="error",
                        field=f"tools[{i}].parameters",
                        token_position=tool_start.get(i, 0),
                        text=t.name,
                        advice="the same JSON schema serialized with its keys in another order than in the previous "
                        "call: a cache miss from here on — use ctxkit.cache.canonical_tools()",
                    )
                )
    return out
