"""The ctxkit error tree.

Every error ctxkit raises derives from :class:`CtxkitError`. Errors that mean
"the code calling ctxkit is wrong" (developer misuse) are kept apart from errors
that happen at run time on valid code (a budget that cannot fit, a backend down)::

    CtxkitError
    ├── UsageError                      developer misuse: fix the call
    │   ├── MissingDependencyError      an optional extra is not installed
    │   ├── UnknownNameError            a registry has no such model/tokenizer/backend
    │   └── InvalidInputError           malformed input (bad message, bad budget, ...)
    ├── ResourceError                   a shipped data file / model is missing or corrupt
    │   └── StoreFormatError            a saved store (Retriever.save) is missing, corrupt or unreadable
    ├── BudgetError                     the content does not fit the budget
    │   ├── SectionOverBudgetError      a mandatory section cannot fit (section, need, room)
    │   └── BudgetExceededError         a rendered prompt came out over budget (a bug guard)
    └── BackendError                    a model backend failed (status_code, retryable)

Every message says what to do next. Third-party exceptions are mapped onto this
tree at the boundary that calls the third party, and chained with ``from``.
Every message is scrubbed of secrets (:func:`ctxkit.secrets.redact_text`) when the
error is made, so API keys never reach a traceback or a log through ctxkit's errors.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BudgetError",
    "BudgetExceededError",
    "CtxkitError",
    "InvalidInputError",
    "MissingDependencyError",
    "ResourceError",
    "SectionOverBudgetError",
    "StoreFormatError",
    "UnknownNameError",
    "UsageError",
]


class CtxkitError(Exception):
    """Root of every error raised by ctxkit; its text arguments are scrubbed of secrets."""

    def __init__(self, *args: object) -> None:
        # lazy: breaks a cycle (ctxkit.secrets raises these errors)
        from ctxkit.secrets import redact_text

        super().__init__(*(redact_text(a) if isinstance(a, str) else a for a in args))


class UsageError(CtxkitError):
    """ctxkit was called in a way that cannot work; the calling code must change."""


class MissingDependencyError(UsageError, ImportError):
    """A feature needs an optional extra that is not installed."""

    def __init__(self, feature: str, extra: str, *, package: str | None = None) -> None:
        self.feature = feature
        self.extra = extra
        self.package = package
        what = f" (package {package!r})" if package else ""
        super().__init__(
            f"{feature} needs the optional dependency{what} of ctxkit's {extra!r} extra. "
            f"Install it with: pip install 'ctxkit[{extra}]'"
        )


class UnknownNameError(UsageError, KeyError):
    """A registry lookup failed; the message lists the names that exist."""

    def __init__(self, kind: str, name: str, known: list[str], hint: str = "") -> None:
        self.kind = kind
        self.name = name
        self.known = sorted(known)
        shown = ", ".join(self.known[:40]) + (" ..." if len(self.known) > 40 else "")
        msg = f"unknown {kind} {name!r}. Known: {shown}."
        if hint:
            msg += " " + hint
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would repr() the message otherwise
        return str(self.args[0])


class InvalidInputError(UsageError, ValueError):
    """An input value is malformed; the message names the field and the fix.

    ``errors`` lists the failed checks (``loc``, ``msg``, ``type``) when the input was a pydantic model's.
    """

    errors: tuple[dict[str, object], ...] = ()


class ResourceError(CtxkitError):
    """A data file or model that ctxkit ships or loads is missing or corrupt."""


class StoreFormatError(ResourceError):
    """A store written by ctxkit (:meth:`~ctxkit.retrieval.Retriever.save`) is missing, corrupt, of a newer
    format, or has a malformed manifest; the message says whether to save again or upgrade ctxkit."""


class BudgetError(CtxkitError):
    """The content does not fit the token budget."""


class SectionOverBudgetError(BudgetError):
    """A mandatory section needs more tokens than the budget leaves for it."""

    def __init__(self, section: str, needed: int, room: int, hint: str = "") -> None:
        self.section = section
        self.needed = needed
        self.room = room
        msg = f"section {section!r} is mandatory and needs {needed} tokens, but only {room} tokens are left for it. "
        msg += hint or (
            "Shorten it, raise the budget's context window or lower its output reserve, "
            f"or mark {section!r} as not required so it may be truncated or dropped."
        )
        super().__init__(msg)


class BudgetExceededError(BudgetError):
    """A rendered prompt measured over its budget; ctxkit refuses to return it."""

    def __init__(self, total: int, limit: int) -> None:
        self.total = total
        self.limit = limit
        super().__init__(
            f"the rendered prompt has {total} tokens, over the limit of {limit}. "
            "This is a ctxkit bug: please report it with the inputs."
        )


class BackendError(CtxkitError):
    """A model backend failed. ``retryable`` says whether trying again may help."""

    def __init__(
        self,
        message: str,
        *,
        backend: str = "",
        status_code: int | None = None,
        retryable: bool = False,
    ) -> None:
        self.backend = backend
        self.status_code = status_code
        self.retryable = retryable
        prefix = f"[{backend}] " if backend else ""
        code = f" (HTTP {status_code})" if status_code is not None else ""
        super().__init__(f"{prefix}{message}{code}")
