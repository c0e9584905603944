"""Canonical request keys: :class:`ExactKey` (the whole request) and the semantic partition (all but the question).

A request is reduced to canonical JSON (sorted keys, no insignificant whitespace) of:

* ``namespace`` — the cache's own name (e.g. one per application or model family);
* every message: role, content, name, tool calls (id, name, arguments as canonical JSON
  when they parse), tool-call id — so system prompts, history and **tool results** are in the key;
* the tools (name, description, parameters schema, dict order irrelevant);
* sampling: ``max_tokens``, ``temperature``, ``top_p``, ``stop``, ``seed``, ``logprobs``, ``top_logprobs``;
* what changes the route: ``tags`` (as a sorted set) and ``sensitive``;
* ``extra`` without credential-named fields (``api_key``, ``Authorization``, ...): a cache key
  never depends on, nor carries, a secret.

Message text is taken **byte for byte** (no whitespace or case folding): two texts that differ at
all are different exact keys. Near-duplicates (whitespace, case, paraphrase) are the semantic layer's
job, where the guards check them. Not in the key: ``cache`` (prompt-cache breakpoints),
``session_id`` and the assembled ``prompt`` object, which do not change the answer.

The **partition** of a request is the same canonical form with the last user message's text
left out: a semantic hit is only possible between requests whose system prompt, tools, tool
results, history and sampling are identical (equal partition hashes).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import ConfigDict

from ctxkit._model import CtxkitModel
from ctxkit.dispatch.backends.base import Request
from ctxkit.messages import Message
from ctxkit.secrets import is_secret_key

__all__ = ["ExactKey", "canonical_request", "exact_key", "semantic_query"]

KEY_VERSION = 1


def _no_secrets(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _no_secrets(v) for k, v in value.items() if not is_secret_key(str(k))}
    if isinstance(value, list | tuple):
        return [_no_secrets(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((_no_secrets(v) for v in value), key=repr)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)


def _arguments(text: str) -> Any:
    try:
        return {"json": json.loads(text)}
    except ValueError:
        return {"text": text}


def _message(m: Message, *, content: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role}
    if content:
        out["content"] = m.content
    if m.name is not None:
        out["name"] = m.name
    if m.tool_calls:
        out["tool_calls"] = [{"id": c.id, "name": c.name, "arguments": _arguments(c.arguments)} for c in m.tool_calls]
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    return out


def semantic_query(request: Request) -> str | None:
    """The text the semantic layer compares: the last message's content when it is a plain user turn, else None."""
    last = request.messages[-1]
    if last.role != "user" or last.tool_calls or not last.content.strip():
        return None
    return last.content


def canonical_request(request: Request, *, namespace: str = "", partition: bool = False) -> str:
    """Canonical JSON of ``request`` (see the module docstring); ``partition=True`` leaves out the question's text."""
    msgs = list(request.messages)
    body: dict[str, Any] = {
        "v": KEY_VERSION,
        "namespace": namespace,
        "messages": [_message(m, content=not (partition and i == len(msgs) - 1)) for i, m in enumerate(msgs)],
        "tools": [{"name": t.name, "description": t.description, "parameters": t.parameters} for t in request.tools],
        "sampling": {
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "stop": list(request.stop),
            "seed": request.seed,
            "logprobs": request.logprobs,
            "top_logprobs": request.top_logprobs,
        },
        "tags": sorted(request.tags),
        "sensitive": request.sensitive,
        "extra": _no_secrets(dict(request.extra)),
    }
    return json.dumps(_no_secrets(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class ExactKey(CtxkitModel):
    """The keys of one request: ``exact`` (sha256 of the canonical request) and ``partition`` (all but the question)."""

    model_config = ConfigDict(frozen=True)

    exact: str
    partition: str
    query: str | None = None

    @classmethod
    def of(cls, request: Request, *, namespace: str = "") -> ExactKey:
        return cls(
            exact=_sha(canonical_request(request, namespace=namespace)),
            partition=_sha(canonical_request(request, namespace=namespace, partition=True)),
            query=semantic_query(request),
        )

    def __repr_args__(self) -> Any:  # the question text stays out of reprs
        yield "exact", self.exact[:16]
        yield "partition", self.partition[:16]


def exact_key(request: Request, *, namespace: str = "") -> ExactKey:
    """:meth:`ExactKey.of`."""
    return ExactKey.of(request, namespace=namespace)
