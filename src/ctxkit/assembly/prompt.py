"""The assembled prompt: messages in layout order, tokens per section, and the audit trail."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import ConfigDict, Field

from ctxkit._model import CtxkitModel
from ctxkit.errors import InvalidInputError
from ctxkit.messages import Message, ToolSpec
from ctxkit.tokenizers.chat import get_chat_counter

__all__ = ["AssembledPrompt", "AuditRecord", "SectionReport"]


class AuditRecord(CtxkitModel):
    """One item that assembly dropped or truncated, and why."""

    model_config = ConfigDict(frozen=True)

    section: str
    item: str = Field(description="the item's id or a short label")
    action: Literal["dropped", "truncated"]
    tokens: int = Field(description="the item's tokens before the action")
    kept_tokens: int = 0
    reason: str


class SectionReport(CtxkitModel):
    """What one section asked for, was allotted, and used."""

    model_config = ConfigDict(frozen=True)

    name: str
    requested: int = Field(description="tokens of everything offered for the section")
    used: int
    cap: int
    items_kept: int
    items_dropped: int
    items_truncated: int = 0


class AssembledPrompt(CtxkitModel):
    """A prompt that fits its budget, ready to render for a provider.

    ``messages`` are in layout order (stable first, volatile last); ``section_of``
    gives each message's section. ``total_tokens`` is the exact count of the whole
    request (messages, format overhead and tool schemas) by the model's counter.
    """

    model_config = ConfigDict(frozen=True)

    model: str
    messages: tuple[Message, ...]
    section_of: tuple[str, ...]
    tools: tuple[ToolSpec, ...] = ()
    sections: dict[str, SectionReport]
    audit: tuple[AuditRecord, ...] = ()
    total_tokens: int
    input_limit: int
    tokens_exact: bool = True

    @property
    def headroom(self) -> int:
        return self.input_limit - self.total_tokens

    @property
    def dropped(self) -> list[AuditRecord]:
        return [a for a in self.audit if a.action == "dropped"]

    @property
    def truncated(self) -> list[AuditRecord]:
        return [a for a in self.audit if a.action == "truncated"]

    @classmethod
    def from_messages(cls, model: str, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()) -> AssembledPrompt:
        """Wrap a request built elsewhere (an OpenAI or Anthropic payload, a framework's
        messages) so ctxkit's inspection tools apply to it: leading system messages are the
        ``system`` section, the last user message the ``query``, everything else ``history``.
        Nothing is dropped; ``total_tokens`` is counted with the model's chat counter.
        """

        msgs = tuple(messages)
        if not msgs:
            raise InvalidInputError("from_messages needs at least one message")
        lead = 0
        while lead < len(msgs) and msgs[lead].role in ("system", "developer"):
            lead += 1
        last_user = max((i for i, m in enumerate(msgs) if m.role == "user"), default=-1)
        section_of = tuple("system" if i < lead else "query" if i == last_user else "history" for i in range(len(msgs)))
        counter = get_chat_counter(model)
        total = counter.count_messages(msgs, tools)
        used = dict.fromkeys(("system", "tools", "examples", "memory", "history", "retrieved", "query"), 0)
        kept = dict.fromkeys(used, 0)
        for m, s in zip(msgs, section_of, strict=True):
            used[s] += counter.message_tokens(m)
            kept[s] += 1
        used["tools"] = counter.tools_tokens(tools)
        kept["tools"] = len(tools)
        reports = {
            s: SectionReport(name=s, requested=used[s], used=used[s], cap=total, items_kept=kept[s], items_dropped=0)
            for s in used
        }
        return cls(
            model=model,
            messages=msgs,
            section_of=section_of,
            tools=tuple(tools),
            sections=reports,
            total_tokens=total,
            input_limit=total,
            tokens_exact=counter.tokenizer.exact,
        )

    # ------------------------------------------------------------------ renderers
    def to_openai(self) -> dict[str, Any]:
        """Keyword arguments for OpenAI chat completions: ``messages`` (and ``tools``)."""
        out: dict[str, Any] = {"messages": [m.to_openai() for m in self.messages]}
        if self.tools:
            out["tools"] = [t.to_openai() for t in self.tools]
        return out

    def to_anthropic(self) -> dict[str, Any]:
        """Keyword arguments for Anthropic Messages: ``system`` apart, alternating ``messages``.

        System-role messages (system prompt, memory) join the ``system`` text;
        tool calls become ``tool_use`` blocks and tool results ``tool_result`` blocks
        in a user turn; consecutive turns of one role are merged, as the API requires.
        """
        system_parts: list[str] = []
        turns: list[dict[str, Any]] = []

        def push(role: str, blocks: list[dict[str, Any]]) -> None:
            if turns and turns[-1]["role"] == role:
                turns[-1]["content"].extend(blocks)
            else:
                turns.append({"role": role, "content": list(blocks)})

        for m in self.messages:
            if m.role in ("system", "developer"):
                system_parts.append(m.content)
            elif m.role == "user":
                push("user", [{"type": "text", "text": m.content}])
            elif m.role == "assistant":
                blocks: list[dict[str, Any]] = []
                if m.content:
                    blocks.append({"type": "text", "text": m.content})
                for call in m.tool_calls:
                    try:
                        args = json.loads(call.arguments or "{}")
                    except json.JSONDecodeError:
                        args = {"_raw_arguments": call.arguments}
                    blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": args})
                push("assistant", blocks or [{"type": "text", "text": ""}])
            else:  # tool result
                push("user", [{"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.content}])
        if turns and turns[0]["role"] != "user":
            turns.insert(0, {"role": "user", "content": [{"type": "text", "text": "(earlier conversation omitted)"}]})
        out: dict[str, Any] = {"messages": turns}
        if system_parts:
            out["system"] = "\n\n".join(p for p in system_parts if p)
        if self.tools:
            out["tools"] = [t.to_anthropic() for t in self.tools]
        return out

    # ------------------------------------------------------------------ display
    def section_table(self) -> str:
        """A plain-text table of tokens per section."""
        rows = [("section", "used", "cap", "offered", "kept", "dropped", "truncated")]
        for s in self.sections.values():
            rows.append(
                (
                    s.name,
                    str(s.used),
                    str(s.cap),
                    str(s.requested),
                    str(s.items_kept),
                    str(s.items_dropped),
                    str(s.items_truncated),
                )
            )
        rows.append(("total", str(self.total_tokens), str(self.input_limit), "", "", "", ""))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = [
            "  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(r, widths, strict=True)))
            for r in rows
        ]
        lines.insert(1, "-" * len(lines[0]))
        lines.insert(len(lines) - 1, "-" * len(lines[0]))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.section_table()

    def _repr_html_(self) -> str:
        limit = max(self.input_limit, 1)
        colors = {
            "system": "#4C78A8",
            "tools": "#72B7B2",
            "examples": "#B279A2",
            "memory": "#9D755D",
            "history": "#F58518",
            "retrieved": "#54A24B",
            "query": "#E45756",
        }
        bar = "".join(
            f'<div title="{html.escape(s.name)}: {s.used} tokens" style="width:{100 * s.used / limit:.2f}%;'
            f'background:{colors.get(s.name, "#999")}"></div>'
            for s in self.sections.values()
            if s.used
        )
        rows = "".join(
            f"<tr><td>{html.escape(s.name)}</td><td>{s.used}</td><td>{s.cap}</td><td>{s.requested}</td>"
            f"<td>{s.items_kept}</td><td>{s.items_dropped}</td><td>{s.items_truncated}</td></tr>"
            for s in self.sections.values()
        )
        audit = "".join(
            f"<li><b>{html.escape(a.section)}</b> {html.escape(a.item)}: {a.action} "
            f"({a.tokens}→{a.kept_tokens} tokens) — {html.escape(a.reason)}</li>"
            for a in self.audit
        )
        return (
            f"<div><b>AssembledPrompt</b> for <code>{html.escape(self.model)}</code>: "
            f"{self.total_tokens} / {self.input_limit} tokens ({self.headroom} left)"
            f'<div style="display:flex;height:14px;width:100%;background:#eee;margin:4px 0">{bar}</div>'
            "<table><tr><th>section</th><th>used</th><th>cap</th><th>offered</th><th>kept</th>"
            f"<th>dropped</th><th>truncated</th></tr>{rows}</table>"
            + (
                f"<details><summary>{len(self.audit)} audit records</summary><ul>{audit}</ul></details>"
                if audit
                else ""
            )
            + "</div>"
        )

    # ------------------------------------------------------------------ cache prefix (ctxkit.cache)
    # Delegates to ctxkit.cache.layout; see that module for the stability classes.
    @property
    def stable_prefix_fingerprint(self) -> str:
        """SHA-256 of the stable prefix's wire bytes: equal fingerprints mean a shared cacheable prefix."""
        from ctxkit.cache.layout import stable_prefix_fingerprint  # lazy: ctxkit.cache sits above assembly

        return stable_prefix_fingerprint(self)

    @property
    def stable_prefix_tokens(self) -> int:
        """Tokens in the stable prefix (everything before the first per-turn section), by the model's counter."""
        from ctxkit.cache.layout import stable_prefix_tokens  # lazy: ctxkit.cache sits above assembly

        return stable_prefix_tokens(self)
