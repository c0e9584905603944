"""Kept for compatibility: the scrubber lives in :mod:`ctxkit.secrets` (one scrubber for the whole library)."""

from __future__ import annotations

from ctxkit.secrets import REDACTED, RedactingFilter, add_secret, is_secret_key, redact, redact_text

__all__ = ["REDACTED", "RedactingFilter", "add_secret", "is_secret_key", "redact", "redact_text"]
