"""The base of ctxkit's pydantic models: bad input raises :class:`~ctxkit.errors.InvalidInputError`, reprs are scrubbed.

``Message(role="bogus")`` or ``Usage.model_validate({"input_tokens": -1})`` raise
:class:`~ctxkit.errors.InvalidInputError` (also a ``ValueError``) whose message lists each
bad field, what was wrong and what it got (scrubbed of secrets); the structured errors
are on its ``errors`` attribute. The pydantic ``ValidationError`` is not chained, since
its text repeats the raw input, which may hold secrets.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from ctxkit.errors import InvalidInputError
from ctxkit.secrets import is_secret_key, redact_text

__all__ = ["CtxkitModel", "invalid_input"]

_SHOWN = 6


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def invalid_input(what: str, exc: ValidationError) -> InvalidInputError:
    """An :class:`InvalidInputError` describing a pydantic ``ValidationError`` of ``what`` (no raw input kept)."""
    errors = exc.errors(include_url=False, include_context=False, include_input=True)
    lines = []
    for e in errors[:_SHOWN]:
        loc = tuple(e.get("loc", ()))
        msg = str(e.get("msg", "invalid")).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        shown = ""
        if "input" in e and not any(isinstance(p, str) and is_secret_key(p) for p in loc) and loc:
            text = redact_text(repr(e["input"]))  # scrubbed before it is cut, so no secret is left half-shown
            shown = f", got {text if len(text) <= 80 else text[:77] + '...'}"
        lines.append(f"{msg} (field {_loc(loc)}{shown})" if loc else msg)
    more = f"; and {len(errors) - _SHOWN} more" if len(errors) > _SHOWN else ""
    err = InvalidInputError(f"invalid {what}: " + "; ".join(lines) + more + ". Fix the field(s) named here.")
    err.errors = tuple(
        {"loc": tuple(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in errors
    )
    return err


class CtxkitModel(BaseModel):
    """A pydantic model whose validation errors are ctxkit's :class:`InvalidInputError` and whose repr is scrubbed."""

    # a misspelt field (Usage(input_token=5)) is an error, not a silently ignored keyword
    model_config = ConfigDict(extra="forbid")

    _ctxkit_model: ClassVar[bool] = True

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            err = invalid_input(type(self).__name__, exc)
        else:
            return
        raise err  # outside the except block: the ValidationError (raw input) is not kept as __context__

    # pydantic treats this __init__ as its own: nested models keep the fast validation path
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Self:
        try:
            return super().model_validate(obj, *args, **kwargs)
        except ValidationError as exc:
            err = invalid_input(cls.__name__, exc)
        raise err

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, *args: Any, **kwargs: Any) -> Self:
        try:
            return super().model_validate_json(json_data, *args, **kwargs)
        except ValidationError as exc:
            err = invalid_input(cls.__name__, exc)
        raise err

    def __repr__(self) -> str:
        return redact_text(super().__repr__())

    def __str__(self) -> str:
        return redact_text(super().__str__())
