"""The one secret scrubber: API keys, tokens and passwords never reach an exception, a repr, a log or a record.

Everything ctxkit prints or stores passes through here: the message of every
:class:`~ctxkit.errors.CtxkitError`, the reprs of ctxkit's models and backends, the
records of the telemetry ledger (and so its JSONL, pandas and OpenTelemetry exports),
and every log record of ctxkit's loggers.

:func:`redact_text` replaces, in free text:

* key shapes: OpenAI (``sk-...``, ``sk-proj-...``), Anthropic (``sk-ant-...``), Azure
  (32 hex digits), JWTs (``eyJ...``), ``Bearer``/``Basic`` credentials, AWS, GitHub,
  GitLab, Slack, Google, Hugging Face, Groq, Stripe and similar prefixed tokens;
* values after a credential-named field, as headers, JSON, Python reprs or URL query
  parameters write them (``Authorization: ...``, ``"x-api-key": "..."``, ``?api_key=...``,
  ``gatewayToken=...``);
* passwords in URLs and DSNs (``postgresql://user:PASSWORD@host``);
* secrets registered with :func:`add_secret` (backends register the keys they are given)
  and the values of environment variables named like ``*API_KEY``, ``*_TOKEN``,
  ``*_SECRET``, ``*_PASSWORD``.

:func:`redact` walks JSON-like values: a mapping key that names a credential
(:func:`is_secret_key`: ``*key*``, ``*token*``, ``*secret*``, ``*password*``, ``auth``,
``passphrase``, camelCase like ``azureOpenAIApiKey``) has its string values replaced.
Numbers are never secrets, so token *counts* (``input_tokens``, ``max_tokens``) are kept.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
from collections.abc import Mapping
from typing import Any

from ctxkit.errors import InvalidInputError

__all__ = [
    "REDACTED",
    "RedactingFilter",
    "add_secret",
    "check_json_like",
    "get_logger",
    "is_secret_key",
    "redact",
    "redact_text",
]

REDACTED = "[REDACTED]"

# ---------------------------------------------------------------------- key names
_SECRET_WORDS = frozenset(
    {
        "auth",
        "oauth",
        "authorization",
        "authentication",
        "apikey",
        "key",
        "token",
        "secret",
        "secrets",
        "password",
        "passwd",
        "pwd",
        "passphrase",
        "cookie",
        "cookies",
        "credential",
        "credentials",
        "bearer",
        "jwt",
        "signature",
        "sig",
        "dsn",
    }
)
_SECRET_PARTS = ("apikey", "secret", "password", "passwd", "passphrase", "credential", "authorization", "privatekey")
_NOT_KEYS = frozenset({"monkey", "turkey", "hockey", "jockey", "donkey", "whiskey", "hotkey", "tiktoken"})
# names that hold counts, tokenizer names or lookup keys, not credentials
_SAFE_NAME = re.compile(
    r"(^|_)(\w*tokens|tokeniz\w*|keywords?|keys?_?(id|ids|name|names|path|field|type|count))(_|$)"
    r"|^(cache|sort|idempotency|route|group|dedup|primary|foreign|partition|shard|lookup|hash|cache_read|prompt_cache)"
    r"_key$",
)


def _words(key: str) -> list[str]:
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key)
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", s)
    return [w for w in re.split(r"[^a-z0-9]+", s.lower()) if w]


def is_secret_key(key: str) -> bool:
    """True if a field or header name names a credential (``Authorization``, ``x-api-key``, ``gatewayToken``...).

    Count fields (``input_tokens``, ``max_tokens``), tokenizer names and lookup keys
    (``cache_key``, ``key_id``) are not credentials.
    """
    words = _words(key)
    if not words:
        return False
    if _SAFE_NAME.search("_".join(words)):
        return False
    if any(w in _SECRET_WORDS for w in words):
        return True
    joined = "".join(words)
    if any(p in joined for p in _SECRET_PARTS):
        return True
    return any(w not in _NOT_KEYS and w.endswith(("token", "key")) and len(w) > 3 for w in words) or any(
        w.startswith("auth") and not w.startswith("author") for w in words
    )


# ---------------------------------------------------------------------- text shapes
_B = r"(?<![A-Za-z0-9])"  # no letter or digit right before
_E = r"(?![A-Za-z0-9])"
_SHAPES = [
    r"(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{10,}",  # Stripe
    r"eyJ[A-Za-z0-9_\-]{6,}\.[A-Za-z0-9_\-]{6,}\.[A-Za-z0-9_\-]*",  # JWT
    r"[0-9a-fA-F]{32}" + _E,  # Azure OpenAI / Cognitive Services keys
    r"(?:AKIA|ASIA)[0-9A-Z]{16}",  # AWS access key id
    r"(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})",  # GitHub
    r"glpat-[A-Za-z0-9_\-]{20,}",  # GitLab
    r"xox[abposr]-[A-Za-z0-9\-]{10,}",  # Slack
    r"AIza[0-9A-Za-z_\-]{35,}",  # Google
    r"hf_[A-Za-z0-9]{30,}",  # Hugging Face
    r"(?:gsk|pplx|r8|npm|nvapi|xai|fw|pk-lf|sk-lf)[-_][A-Za-z0-9_\-]{20,}",  # Groq, Perplexity, Replicate, ...
]
# OpenAI (sk-, sk-proj-, sk-svcacct-), Anthropic (sk-ant-), OpenRouter (sk-or-): removed wherever they start a
# word; glued to a word only when the body looks like a key (a digit or a capital), so that words such as
# "task-summarization-pipeline" survive
_SHAPE = re.compile(
    _B
    + r"sk-[A-Za-z0-9_\-]{16,}|sk-(?=[A-Za-z0-9_\-]*[0-9A-Z])[A-Za-z0-9_\-]{16,}|"
    + _B
    + "(?:"
    + "|".join(_SHAPES)
    + ")"
)
_AUTH_SCHEME = re.compile(r"\b(?:[Bb]earer|BEARER|Basic|Digest|Token|ApiKey)\s+[A-Za-z0-9._~+/=\-]{8,}")
# a credential-named field followed by its value: headers, JSON, Python reprs, keyword args, query strings
_FIELD = re.compile(
    r"(?<![A-Za-z0-9_.\-])(?P<name>[A-Za-z_][A-Za-z0-9_.\-]*)(?P<q1>[\"']?)(?P<sep>\s*[:=]\s*)"
    r"(?P<value>\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'"
    r"|(?:(?i:bearer|basic|digest|token)\s+)?[^\s\"',;&}\])>:=]+)"
)
_USERINFO = re.compile(
    r"(?P<head>(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]*:/{1,2}[^/\s:@'\"]*):(?P<pw>[^@\s/'\"]+)@"
)
_NUMBER = re.compile(r"[\"']?-?\d+(\.\d+)?([eE][-+]?\d+)?[\"']?")
_ENV_SECRET = re.compile(r"(API_?KEY|_TOKEN|_SECRET|_PASSWORD|_PASSPHRASE)$", re.IGNORECASE)

_lock = threading.Lock()
_extra: set[str] = set()


def add_secret(value: str) -> None:
    """Register a secret string (at least 6 characters) to scrub from everything ctxkit prints or stores."""
    if isinstance(value, str) and len(value) >= 6:
        with _lock:
            _extra.add(value)


def _known_secrets() -> list[str]:
    env = [v for k, v in os.environ.items() if _ENV_SECRET.search(k) and len(v) >= 8]
    with _lock:
        extra = list(_extra)
    # longest first, so a secret that contains another is removed whole
    return sorted({*env, *extra}, key=len, reverse=True)


def _scrub_fields(text: str) -> str:
    """Replace the values of credential-named fields; other values are scanned in turn (a URL's query string)."""
    out: list[str] = []
    pos = 0
    while True:
        m = _FIELD.search(text, pos)
        if m is None:
            out.append(text[pos:])
            return "".join(out)
        name, value = m.group("name"), m.group("value")
        if not is_secret_key(name) or _NUMBER.fullmatch(value) or value.strip("'\"") == REDACTED:
            out.append(text[pos : m.start("value")])  # not a credential: go on from the start of its value
            pos = m.start("value")
            continue
        quote = value[0] if value[:1] in ("'", '"') else ""
        out.append(f"{text[pos : m.start('value')]}{quote}{REDACTED}{quote}")
        pos = m.end("value")


def redact_text(text: str) -> str:
    """``text`` with credential-shaped substrings, credential fields and known secrets replaced by ``[REDACTED]``."""
    if not isinstance(text, str):
        text = str(text)
    for secret in _known_secrets():
        if secret in text:
            text = text.replace(secret, REDACTED)
    text = _USERINFO.sub(lambda m: f"{m.group('head')}:{REDACTED}@", text)
    text = _scrub_fields(text)
    text = _AUTH_SCHEME.sub(REDACTED, text)
    return _SHAPE.sub(REDACTED, text)


# ---------------------------------------------------------------------- structures
MAX_DEPTH = 32


def check_json_like(value: Any, *, what: str = "value", max_depth: int = MAX_DEPTH) -> None:
    """Raise :class:`~ctxkit.errors.InvalidInputError` if ``value`` cannot be stored as JSON faithfully:
    a container that holds itself, nesting deeper than ``max_depth``, or a non-finite float."""

    def walk(v: Any, path: str, depth: int, seen: tuple[int, ...]) -> None:
        if isinstance(v, float) and not math.isfinite(v):
            raise InvalidInputError(f"{what}{path} is {v}; JSON cannot store it faithfully: pass a finite number")
        if isinstance(v, Mapping | list | tuple | set | frozenset):
            if id(v) in seen:
                raise InvalidInputError(f"{what}{path} contains itself; pass a tree (copy the shared part)")
            if depth >= max_depth:
                raise InvalidInputError(
                    f"{what} nests deeper than {max_depth} levels (at {what}{path}); flatten it or store it as text"
                )
            items = v.items() if isinstance(v, Mapping) else enumerate(v)
            for k, child in items:
                walk(child, f"{path}[{k!r}]", depth + 1, (*seen, id(v)))

    walk(value, "", 0, ())


def redact(value: Any, *, _secret: bool = False, _depth: int = 0) -> Any:
    """A copy of ``value`` (mappings, sequences, strings, scalars) with secrets removed.

    Strings under a credential-named key become ``[REDACTED]``; numbers, booleans and
    ``None`` are kept everywhere. Objects that are not JSON-like become their redacted
    ``str()``, so the result is always safe to serialize. Structures deeper than
    ``MAX_DEPTH`` (or cyclic) are cut at that depth.
    """
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str | bytes):
        text = value if isinstance(value, str) else repr(value)
        return REDACTED if (_secret and text) else redact_text(text)
    if _depth >= MAX_DEPTH:
        return REDACTED if _secret else redact_text(f"<{type(value).__name__} nested deeper than {MAX_DEPTH}>")
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            key = redact_text(str(k))
            out[key] = redact(v, _secret=_secret or is_secret_key(key), _depth=_depth + 1)
        return out
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(v, _secret=_secret, _depth=_depth + 1) for v in value]
    return REDACTED if _secret else redact_text(str(value))


# ---------------------------------------------------------------------- logging
class RedactingFilter(logging.Filter):
    """A logging filter that scrubs secrets from a record's message, arguments and exception text."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: scrub the raw parts instead
            message = f"{record.msg} {record.args!r}"
        record.msg = redact_text(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


_FILTER = RedactingFilter()


def get_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` with ctxkit's :class:`RedactingFilter` attached (once)."""
    log = logging.getLogger(name)
    if not any(isinstance(f, RedactingFilter) for f in log.filters):
        log.addFilter(_FILTER)
    return log
