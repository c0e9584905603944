"""Stability classes, the rendered segments of a request, and its stable-prefix fingerprint.

A provider caches a *prefix* of the request: the bytes up to some point, if they are
identical to a recent request's. ctxkit therefore sees a request as an ordered list of
:class:`Segment` objects — one per tool definition and one per message, in the order
the provider renders them (Anthropic: tools, then system blocks, then messages; OpenAI:
tools, then messages) — each with the section it came from, that section's
:class:`Stability` class, its exact wire bytes and its token count.

Stability classes (overridable per call with ``stability={"memory": "static", ...}``):

=========  ================================  =======================================
class      default sections                  changes
=========  ================================  =======================================
static     system, tools, examples           never within a deployment
session    memory, history                   grows append-only within a conversation
turn       retrieved, query                  every call
=========  ================================  =======================================

The **stable prefix** is the leading run of segments that are not per-turn: what a
provider can serve from its cache on the *next* call. Its fingerprint is a SHA-256 of the
segments' wire bytes, so two requests share a stable prefix exactly when their
fingerprints are equal.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ConfigDict, Field

from ctxkit._model import CtxkitModel
from ctxkit.cache.provider import cache_provider, provider_name
from ctxkit.errors import InvalidInputError
from ctxkit.messages import ToolSpec
from ctxkit.tokenizers.chat import ChatCounter, get_chat_counter

if TYPE_CHECKING:
    from ctxkit.assembly.prompt import AssembledPrompt

__all__ = [
    "DEFAULT_STABILITY",
    "PrefixInfo",
    "Segment",
    "Stability",
    "StabilityMap",
    "canonical_tools",
    "prefix_info",
    "resolve_stability",
    "segments",
    "stable_prefix_fingerprint",
    "stable_prefix_tokens",
    "wire_json",
]

_FINGERPRINT_DOMAIN = b"ctxkit-prefix-v1\n"


class Stability(StrEnum):
    """How often a section's bytes change."""

    STATIC = "static"
    SESSION = "session"
    TURN = "turn"


DEFAULT_STABILITY: dict[str, Stability] = {
    "system": Stability.STATIC,
    "tools": Stability.STATIC,
    "examples": Stability.STATIC,
    "memory": Stability.SESSION,
    "history": Stability.SESSION,
    "retrieved": Stability.TURN,
    "query": Stability.TURN,
    "retrieved+query": Stability.TURN,
}

_ALIASES = {
    "static": Stability.STATIC,
    "session": Stability.SESSION,
    "per-session": Stability.SESSION,
    "per_session": Stability.SESSION,
    "turn": Stability.TURN,
    "per-turn": Stability.TURN,
    "per_turn": Stability.TURN,
    "volatile": Stability.TURN,
}

StabilityMap = Mapping[str, "Stability | str"]


def resolve_stability(overrides: StabilityMap | None = None) -> dict[str, Stability]:
    """The default section → stability map with ``overrides`` applied (strings accepted)."""
    out = dict(DEFAULT_STABILITY)
    for section, value in (overrides or {}).items():
        if isinstance(value, Stability):
            out[section] = value
            continue
        cls = _ALIASES.get(str(value).lower())
        if cls is None:
            raise InvalidInputError(
                f"stability of section {section!r} must be 'static', 'session' or 'turn', not {value!r}"
            )
        out[section] = cls
    return out


def wire_json(value: Any) -> str:
    """Compact JSON in the value's own key order, as an HTTP client sends it (not key-sorted)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class Segment(CtxkitModel):
    """One rendered piece of a request (a tool definition or a message) in provider order."""

    model_config = ConfigDict(frozen=True)

    index: int = Field(description="position in provider order")
    kind: Literal["tool", "message"]
    source_index: int = Field(description="index into prompt.tools or prompt.messages")
    section: str
    stability: Stability
    role: str = Field(description="the message role, or 'tool-definition'")
    data: str = Field(description="the segment's wire JSON, byte-for-byte what is sent")
    tokens: int = Field(ge=0)
    start: int = Field(ge=0, description="tokens of the request before this segment")

    @property
    def end(self) -> int:
        return self.start + self.tokens

    @property
    def field(self) -> str:
        """Where the segment lives in the prompt: ``tools[2]`` or ``messages[5]``."""
        return f"{'tools' if self.kind == 'tool' else 'messages'}[{self.source_index}]"


class PrefixInfo(CtxkitModel):
    """The stable (cacheable-next-call) prefix of one request, and its static part."""

    model_config = ConfigDict(frozen=True)

    provider: str
    fingerprint: str = Field(description="SHA-256 of the stable prefix's wire bytes")
    tokens: int = Field(description="tokens in the stable prefix")
    segments: int = Field(description="segments in the stable prefix")
    static_fingerprint: str = Field(description="SHA-256 of the leading static segments")
    static_tokens: int
    static_segments: int
    total_tokens: int = Field(description="tokens of the whole request, format overhead included")
    exact: bool = Field(description="False when counts come from an estimating tokenizer")


@functools.lru_cache(maxsize=32)
def chat_counter(model: str) -> ChatCounter:
    """The model's chat counter, built once per model name (template counters compile a template)."""
    return get_chat_counter(model)


def segments(
    prompt: AssembledPrompt,
    *,
    provider: str | None = None,
    counter: ChatCounter | None = None,
    stability: StabilityMap | None = None,
) -> tuple[Segment, ...]:
    """The request's segments in the provider's render order, with tokens and stability.

    ``provider`` (a registered :class:`~ctxkit.cache.provider.CacheProvider` name) defaults to
    the model's; it decides the render order (``anthropic`` puts system-role messages before
    all others, as its API renders ``system`` apart) and the tools' wire form. ``counter``
    defaults to ``get_chat_counter(prompt.model)``.
    """
    render = cache_provider(provider or provider_name(prompt.model))
    if len(prompt.section_of) != len(prompt.messages):
        raise InvalidInputError(
            f"prompt.section_of has {len(prompt.section_of)} entries for {len(prompt.messages)} messages"
        )
    counter = counter or chat_counter(prompt.model)
    classes = resolve_stability(stability)
    out: list[Segment] = []
    pos = 0
    prev_tools = 0
    for i, tool in enumerate(prompt.tools):
        cum = counter.tools_tokens(prompt.tools[: i + 1])
        tokens = cum - prev_tools
        prev_tools = cum
        out.append(
            Segment(
                index=len(out),
                kind="tool",
                source_index=i,
                section="tools",
                stability=classes.get("tools", Stability.STATIC),
                role="tool-definition",
                data=wire_json(render.tool_wire(tool)),
                tokens=max(tokens, 0),
                start=pos,
            )
        )
        pos += max(tokens, 0)
    for k in render.message_order(prompt):
        m = prompt.messages[k]
        section = prompt.section_of[k]
        tokens = counter.message_tokens(m)
        out.append(
            Segment(
                index=len(out),
                kind="message",
                source_index=k,
                section=section,
                stability=classes.get(section, Stability.TURN),
                role=m.role,
                data=wire_json(m.to_openai()),
                tokens=tokens,
                start=pos,
            )
        )
        pos += tokens
    return tuple(out)


def _fingerprint(segs: Sequence[Segment]) -> str:
    h = hashlib.sha256(_FINGERPRINT_DOMAIN)
    for s in segs:
        h.update(s.data.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def _leading(segs: Sequence[Segment], allowed: set[Stability]) -> list[Segment]:
    out: list[Segment] = []
    for s in segs:
        if s.stability not in allowed:
            break
        out.append(s)
    return out


def prefix_info(
    prompt: AssembledPrompt,
    *,
    provider: str | None = None,
    counter: ChatCounter | None = None,
    stability: StabilityMap | None = None,
) -> PrefixInfo:
    """Fingerprint and token count of the request's stable prefix (and of its static part)."""
    provider = provider or provider_name(prompt.model)
    counter = counter or chat_counter(prompt.model)
    segs = segments(prompt, provider=provider, counter=counter, stability=stability)
    stable = _leading(segs, {Stability.STATIC, Stability.SESSION})
    static = _leading(segs, {Stability.STATIC})
    total = sum(s.tokens for s in segs) + counter.base_tokens
    return PrefixInfo(
        provider=provider,
        fingerprint=_fingerprint(stable),
        tokens=sum(s.tokens for s in stable),
        segments=len(stable),
        static_fingerprint=_fingerprint(static),
        static_tokens=sum(s.tokens for s in static),
        static_segments=len(static),
        total_tokens=total,
        exact=counter.tokenizer.exact,
    )


def stable_prefix_fingerprint(prompt: AssembledPrompt, *, stability: StabilityMap | None = None) -> str:
    """SHA-256 (hex) of the stable prefix's wire bytes; equal fingerprints mean a shared cacheable prefix."""
    return prefix_info(prompt, stability=stability).fingerprint


def stable_prefix_tokens(
    prompt: AssembledPrompt, *, counter: ChatCounter | None = None, stability: StabilityMap | None = None
) -> int:
    """Tokens in the stable prefix, counted by ``counter`` (default: the model's chat counter)."""
    return prefix_info(prompt, counter=counter, stability=stability).tokens


def _sorted_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted_json(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted_json(v) for v in value]
    return value


def canonical_tools(tools: Sequence[ToolSpec]) -> tuple[ToolSpec, ...]:
    """Tools in a canonical form: sorted by name, JSON-schema keys sorted at every level.

    The same set of tools then always renders to the same bytes, however the application
    collected them (plugins, dicts, sets).
    """
    names = [t.name for t in tools]
    if len(set(names)) != len(names):
        raise InvalidInputError(f"tool names must be unique, got {names}")
    return tuple(
        ToolSpec(name=t.name, description=t.description, parameters=_sorted_json(t.parameters))
        for t in sorted(tools, key=lambda t: t.name)
    )
