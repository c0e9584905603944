"""Keep secrets out of telemetry: API keys and authorization headers never reach records, logs or exports.

:func:`redact` walks any JSON-like value. A mapping key that names a credential
(``Authorization``, ``x-api-key``, ``api_key``, ``password``, ``cookie``...) has its
value replaced by ``"[REDACTED]"``; any string is scrubbed of text shaped like a
credential (``sk-...``, ``sk-ant-...``, ``Bearer ...``, AWS/GitHub/Google/Hugging Face
keys), of secrets registered with :func:`add_secret`, and of the values of
environment variables whose names end in ``API_KEY``, ``_TOKEN``, ``_SECRET`` or
``_PASSWORD``. Token *counts* (``input_tokens``, ``max_tokens``) are not secrets
and are left alone.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Mapping
from typing import Any

__all__ = ["REDACTED", "RedactingFilter", "add_secret", "is_secret_key", "redact", "redact_text"]

REDACTED = "[REDACTED]"

_SECRET_KEY = re.compile(
    r"(^|[-_.\s])("
    r"authorization|proxy-authorization|api[-_]?key|apikey|x-api-key|api[-_]?token|auth[-_]?token|"
    r"access[-_]?token|refresh[-_]?token|id[-_]?token|session[-_]?token|bearer|secret|client[-_]?secret|"
    r"password|passwd|pwd|cookie|set-cookie|credentials?|private[-_]?key|access[-_]?key|secret[-_]?key|"
    r"token|key"
    r")($|[-_.\s])",
    re.IGNORECASE,
)
# keys that look sensitive to the pattern above but hold counts or names, not secrets
_SAFE_KEY = re.compile(
    r"tokens$|_tokens?_|^key_?(id|name)$|^(cache|sort|idempotency|route|group|dedup)[-_]?key$", re.IGNORECASE
)

_SECRET_TEXT = re.compile(
    r"(sk-(ant-)?[A-Za-z0-9_\-]{16,}"  # OpenAI / Anthropic keys
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/=\-]{8,}"  # authorization header values
    r"|(?i:basic)\s+[A-Za-z0-9+/=]{12,}"
    r"|AKIA[0-9A-Z]{16}"  # AWS access key id
    r"|gh[pousr]_[A-Za-z0-9]{30,}"  # GitHub
    r"|xox[abprs]-[A-Za-z0-9\-]{10,}"  # Slack
    r"|AIza[0-9A-Za-z_\-]{35}"  # Google
    r"|hf_[A-Za-z0-9]{30,})"  # Hugging Face
)
_ENV_SECRET = re.compile(r"(API_KEY|APIKEY|_TOKEN|_SECRET|_PASSWORD)$", re.IGNORECASE)

_lock = threading.Lock()
_extra: set[str] = set()


def add_secret(value: str) -> None:
    """Register a secret string (at least 6 characters) to scrub from every telemetry output."""
    if len(value) >= 6:
        with _lock:
            _extra.add(value)


def _known_secrets() -> list[str]:
    env = [v for k, v in os.environ.items() if _ENV_SECRET.search(k) and len(v) >= 8]
    with _lock:
        extra = list(_extra)
    # longest first, so a secret that contains another is removed whole
    return sorted({*env, *extra}, key=len, reverse=True)


def is_secret_key(key: str) -> bool:
    """True if a mapping key names a credential (``Authorization``, ``x-api-key``...)."""
    return bool(_SECRET_KEY.search(key)) and not _SAFE_KEY.search(key)


def redact_text(text: str) -> str:
    """``text`` with credential-shaped substrings and known secrets replaced by ``[REDACTED]``."""
    for secret in _known_secrets():
        if secret in text:
            text = text.replace(secret, REDACTED)
    return _SECRET_TEXT.sub(REDACTED, text)


def redact(value: Any) -> Any:
    """A copy of ``value`` (mappings, sequences, strings, scalars) with secrets removed.

    Objects that are not JSON-like become their redacted ``str()``, so the result is
    always safe to serialize.
    """
    if isinstance(value, str):
        return redact_text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            key = redact_text(str(k))
            out[key] = REDACTED if is_secret_key(key) and v not in (None, "") else redact(v)
        return out
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(v) for v in value]
    return redact_text(str(value))


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs secrets from a record's message and arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it to logging's own error path
            return True
        record.msg = redact_text(message)
        record.args = None
        return True
