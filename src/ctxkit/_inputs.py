"""Input checks shared by the public API."""

from __future__ import annotations

from ctxkit.errors import InvalidInputError

__all__ = ["reject_bare_string"]


def reject_bare_string(value: object, name: str, fix: str) -> None:
    """Refuse a bare ``str``/``bytes`` where a collection is expected (it would be read one character at a time).

    ``name`` is the parameter as the caller wrote it (``"delete_documents(doc_ids)"``),
    ``fix`` the call that does what they meant (``"delete_documents(['faq-1'])"``). The
    value itself is not quoted: it may be a message or a secret.
    """
    if isinstance(value, str | bytes | bytearray | memoryview):
        raise InvalidInputError(
            f"{name} takes a collection, not a single {type(value).__name__} (which would be read one character "
            f"at a time); wrap the one item in a list: {fix}"
        )
