"""Tool calling for local chat models whose chat template has no tool support.

Many small GGUF chat models (SmolLM2's template among them) render only ``role`` and
``content``: tools passed to them would silently vanish from the prompt, and the calls
a model makes come back as plain text. ctxkit renders such conversations in the
widespread Hermes/Qwen convention instead:

* the tool signatures go at the end of the system message, inside ``<tools></tools>``,
  with the instruction to answer a call as ``<tool_call>{"name": ..., "arguments": ...}</tool_call>``;
* an assistant message's tool calls become those ``<tool_call>`` blocks in its text;
* a tool result becomes a user message wrapped in ``<tool_response></tool_response>``.

:func:`parse_tool_calls` reads calls back out of generated text (the ``<tool_call>``
blocks, or a reply that is one bare JSON object naming a tool, as Llama 3.1 answers),
and :func:`tool_call_grammar` builds a llama.cpp grammar that forces a call when the
caller requires one (``tool_choice="required"`` or a named function), so even a very
small model produces a call that parses and matches the tool's JSON schema.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ctxkit._optional import require
from ctxkit.errors import InvalidInputError
from ctxkit.messages import ToolCall

__all__ = [
    "inline_tools",
    "parse_tool_calls",
    "required_tool_names",
    "template_supports_tools",
    "tool_call_grammar",
    "tool_system_prompt",
]

_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|\Z)", re.DOTALL)


def template_supports_tools(template: str) -> bool:
    """Whether a Jinja chat template renders tools itself (it reads the ``tools`` variable)."""
    return re.search(r"\btools\b", template) is not None


def tool_system_prompt(tools: Sequence[Mapping[str, Any]]) -> str:
    """The Hermes-style block that lists ``tools`` (OpenAI format) and says how to call them."""
    lines = "\n".join(json.dumps(t, ensure_ascii=False, sort_keys=True) for t in tools)
    return (
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n"
        f"<tools>\n{lines}\n</tools>\n\n"
        "For each function call, return a json object with function name and arguments within "
        "<tool_call></tool_call> XML tags:\n"
        '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
    )


def _call_text(call: Mapping[str, Any]) -> str:
    fn = call.get("function") or {}
    raw = fn.get("arguments") or "{}"
    try:
        args: Any = json.loads(raw)
    except (TypeError, ValueError):
        args = raw
    body = json.dumps({"name": fn.get("name", ""), "arguments": args}, ensure_ascii=False)
    return f"<tool_call>\n{body}\n</tool_call>"


def inline_tools(
    messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None
) -> list[dict[str, Any]]:
    """OpenAI-format ``messages`` rewritten so a template without tool support shows everything.

    The tools' block joins the first system message (or opens one); assistant tool calls
    and tool results become text as the module docstring describes. Without tools and
    tool messages the messages come back unchanged.
    """
    out: list[dict[str, Any]] = []
    for m in messages:
        role = m.get("role")
        content = m.get("content") or ""
        if role == "assistant" and m.get("tool_calls"):
            calls = "\n".join(_call_text(c) for c in m["tool_calls"])
            out.append({"role": "assistant", "content": f"{content}\n{calls}" if content else calls})
        elif role == "tool":
            out.append({"role": "user", "content": f"<tool_response>\n{content}\n</tool_response>"})
        else:
            out.append(dict(m))
    if tools:
        block = tool_system_prompt(tools)
        if out and out[0].get("role") == "system":
            first = out[0].get("content") or ""
            out[0] = {**out[0], "content": f"{first}\n\n{block}" if first else block}
        else:
            out.insert(0, {"role": "system", "content": block})
    return out


def _call_id(index: int, name: str, arguments: str, context: str) -> str:
    digest = hashlib.sha256(f"{context}\0{index}:{name}:{arguments}".encode()).hexdigest()[:24]
    return f"call_{digest}"


def _as_call(obj: Any, names: set[str] | None, index: int, context: str) -> ToolCall | None:
    if not isinstance(obj, dict):
        return None
    name = obj.get("name")
    args = obj.get("arguments", obj.get("parameters", {}))
    if not isinstance(name, str) or (names is not None and name not in names):
        return None
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            return None
    if not isinstance(args, dict):
        return None
    arguments = json.dumps(args, ensure_ascii=False)
    return ToolCall(id=_call_id(index, name, arguments, context), name=name, arguments=arguments)


def parse_tool_calls(
    text: str, tool_names: Sequence[str] | None = None, *, context: str = ""
) -> tuple[str, list[ToolCall]]:
    """Split generated ``text`` into its prose and the tool calls it makes.

    Call ids are deterministic: a digest of ``context`` (pass something unique to the request, such
    as a digest of the prompt), the call's position, name and arguments. The same request parsed
    twice gives the same ids; the same call made in a later turn gets a new one, as providers that
    require unique ids across a conversation expect.

    Calls are ``<tool_call>`` blocks holding ``{"name": ..., "arguments": {...}}`` (an
    unclosed last block counts when its JSON is complete), or a whole reply that is one
    such JSON object. With ``tool_names``, a call naming anything else is not a call. A
    block that does not parse stays in the text, so nothing the model wrote is lost.
    """
    names = set(tool_names) if tool_names is not None else None
    calls: list[ToolCall] = []
    kept: list[str] = []
    pos = 0
    for match in _BLOCK.finditer(text):
        try:
            obj = json.loads(match.group(1))
        except ValueError:
            obj = None
        call = _as_call(obj, names, len(calls), context)
        if call is None:
            continue
        kept.append(text[pos : match.start()])
        pos = match.end()
        calls.append(call)
    kept.append(text[pos:])
    if not calls:
        bare = text.strip()
        if bare.startswith("{") and bare.endswith("}"):
            try:
                call = _as_call(json.loads(bare), names, 0, context)
            except ValueError:
                call = None
            if call is not None:
                return "", [call]
        return text, []
    prose = "".join(kept).rstrip()  # leading text stays as written: it may already have been streamed
    return ("" if not prose.strip() else prose), calls


def required_tool_names(tool_choice: Any, tool_names: Sequence[str]) -> list[str] | None:
    """The tools a call is forced to among ``tool_names``: ``None`` when no call is forced.

    ``tool_choice`` as OpenAI takes it: ``"auto"``/``"none"``/``None`` force nothing,
    ``"required"`` forces one of the tools, ``{"type": "function", "function": {"name": n}}``
    (or just ``n``) forces ``n``.
    """
    if tool_choice in (None, "auto", "none"):
        return None
    if tool_choice == "required":
        return list(tool_names)
    name = None
    if isinstance(tool_choice, Mapping):
        name = (tool_choice.get("function") or {}).get("name") or tool_choice.get("name")
    elif isinstance(tool_choice, str):
        name = tool_choice
    if not isinstance(name, str) or name not in tool_names:
        raise InvalidInputError(
            f"tool_choice {tool_choice!r} names no tool of this request; use 'auto', 'none', 'required' "
            f"or one of {list(tool_names)}"
        )
    return [name]


def tool_call_grammar(tools: Sequence[Mapping[str, Any]], names: Sequence[str]) -> str:
    """A GBNF grammar for exactly one ``<tool_call>`` block calling one of ``names`` with schema-valid arguments."""

    require("llama_cpp", feature="forced tool calls", extra="local", package="llama-cpp-python")
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    variants = []
    for t in tools:
        fn = t.get("function") or {}
        if fn.get("name") not in names:
            continue
        params = fn.get("parameters") or {"type": "object"}
        variants.append(
            {
                "type": "object",
                "properties": {"name": {"const": fn["name"]}, "arguments": params},
                "required": ["name", "arguments"],
            }
        )
    if not variants:
        raise InvalidInputError(f"none of {list(names)} is among the request's tools")
    schema = variants[0] if len(variants) == 1 else {"oneOf": variants}
    body = json_schema_to_gbnf(json.dumps(schema))
    body = re.sub(r"^root ::=", "ctxkit-call ::=", body, flags=re.MULTILINE)
    return 'root ::= "<tool_call>\\n" ctxkit-call "\\n</tool_call>"\n' + body
