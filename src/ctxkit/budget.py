"""Token budgets: a model's window, an output reserve, and named sections.

Sections, in the order they are rendered (stable first, volatile last):
``system``, ``tools``, ``examples``, ``memory``, ``history``, ``retrieved``, ``query``.
Each section has a priority (higher is served first), an optional floor
(``min_tokens``, reserved before lower-priority sections are served), and an
optional cap (``max_tokens`` and/or ``share`` of the input limit). A ``required``
section must fit whole, or assembly raises :class:`SectionOverBudgetError`; a
non-required ``system`` or ``tools`` section is kept whole or dropped (with an audit
record). ``query`` is always required: a budget that says otherwise is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ConfigDict, Field, model_validator

from ctxkit._model import CtxkitModel
from ctxkit.errors import InvalidInputError
from ctxkit.models import get_model

__all__ = ["SECTION_NAMES", "Budget", "SectionBudget", "as_budget"]

SECTION_NAMES: tuple[str, ...] = ("system", "tools", "examples", "memory", "history", "retrieved", "query")


class SectionBudget(CtxkitModel):
    """How much one section may take and how urgently it is served."""

    model_config = ConfigDict(frozen=True)

    priority: int = 50
    min_tokens: int = Field(default=0, ge=0)
    max_tokens: int | None = Field(default=None, ge=0)
    share: float | None = Field(default=None, gt=0, le=1)
    required: bool = False

    @model_validator(mode="after")
    def _check(self) -> SectionBudget:
        if self.max_tokens is not None and self.min_tokens > self.max_tokens:
            raise ValueError(f"min_tokens ({self.min_tokens}) exceeds max_tokens ({self.max_tokens})")
        return self

    def cap(self, input_limit: int) -> int:
        cap = input_limit
        if self.max_tokens is not None:
            cap = min(cap, self.max_tokens)
        if self.share is not None:
            cap = min(cap, int(self.share * input_limit))
        return cap


_QUERY_REQUIRED = (
    "the 'query' section must be required: the query is the request itself and is never dropped or "
    "truncated. Pass SectionBudget(..., required=True) for 'query' (or leave 'query' out to keep the default); "
    "'system' and 'tools' may be required=False, and are then dropped (with an audit record) when they do not fit"
)


def _default_sections() -> dict[str, SectionBudget]:
    return {
        "system": SectionBudget(priority=100, required=True),
        "tools": SectionBudget(priority=95, required=True),
        "query": SectionBudget(priority=90, required=True),
        "memory": SectionBudget(priority=70, share=0.15),
        "history": SectionBudget(priority=60),
        "retrieved": SectionBudget(priority=50),
        "examples": SectionBudget(priority=30, share=0.2),
    }


class Budget(CtxkitModel):
    """The token budget of one call.

    The input limit is ``context_window - output_reserve``, lowered further by
    ``max_input_tokens`` when set (to spend less than the window allows).
    """

    model_config = ConfigDict(frozen=True)

    context_window: int = Field(gt=0)
    output_reserve: int = Field(default=0, ge=0)
    max_input_tokens: int | None = Field(default=None, gt=0)
    model: str | None = None
    sections: dict[str, SectionBudget] = Field(default_factory=_default_sections)

    @model_validator(mode="after")
    def _check(self) -> Budget:
        if self.output_reserve >= self.context_window:
            raise ValueError(
                f"output_reserve ({self.output_reserve}) leaves no room in a context window of "
                f"{self.context_window}; lower the reserve"
            )
        unknown = set(self.sections) - set(SECTION_NAMES)
        if unknown:
            raise ValueError(f"unknown sections {sorted(unknown)}; sections are {list(SECTION_NAMES)}")
        # A section given here overrides only the settings it names: SectionBudget(priority=100)
        # for "system" keeps the default required=True. Missing sections take the defaults.
        defaults = _default_sections()
        merged = {
            k: SectionBudget(**{**defaults[k].model_dump(), **given.model_dump(include=given.model_fields_set)})
            if (given := self.sections.get(k)) is not None
            else defaults[k]
            for k in SECTION_NAMES
        }
        object.__setattr__(self, "sections", merged)
        if not self.sections["query"].required:
            raise ValueError(_QUERY_REQUIRED)
        floors = sum(s.min_tokens for s in self.sections.values())
        if floors > self.input_limit:
            raise ValueError(f"section floors add up to {floors} tokens, over the input limit {self.input_limit}")
        return self

    @property
    def input_limit(self) -> int:
        limit = self.context_window - self.output_reserve
        if self.max_input_tokens is not None:
            limit = min(limit, self.max_input_tokens)
        return limit

    @classmethod
    def for_model(
        cls,
        model: str,
        *,
        output_reserve: int | None = None,
        max_input_tokens: int | None = None,
        sections: dict[str, SectionBudget | dict[str, Any]] | None = None,
    ) -> Budget:
        """A budget for a registered model; the output reserve defaults to min(max_output, 4096)."""
        if not isinstance(model, str):
            raise InvalidInputError(f"Budget.for_model takes a model name (str), not {type(model).__name__}")
        info = get_model(model)
        reserve = min(info.max_output, 4096) if output_reserve is None else output_reserve
        merged = _default_sections()
        if sections is not None and not isinstance(sections, Mapping):
            raise InvalidInputError(f"sections must map section names to budgets, not {type(sections).__name__}")
        for name, spec in (sections or {}).items():
            if name not in SECTION_NAMES:
                raise InvalidInputError(f"unknown section {name!r}; sections are {list(SECTION_NAMES)}")
            if not isinstance(spec, SectionBudget | Mapping):
                raise InvalidInputError(
                    f"section {name!r} takes a SectionBudget or a dict of its fields, not {type(spec).__name__}"
                )
            # only the settings given override the section's defaults (as in the model validator)
            given = spec.model_dump(include=spec.model_fields_set) if isinstance(spec, SectionBudget) else spec
            merged[name] = SectionBudget(**{**merged[name].model_dump(), **given})
        if not merged["query"].required:
            raise InvalidInputError(_QUERY_REQUIRED)
        return cls(
            context_window=info.context_window,
            output_reserve=reserve,
            max_input_tokens=max_input_tokens,
            model=model,
            sections=merged,
        )


def as_budget(
    budget: Budget | int | None,
    model: str,
    *,
    base: Budget | None = None,
    output_reserve: int | None = None,
) -> Budget:
    """The whole prompt's :class:`Budget` from what a public entry was given (the one coercion every entry uses).

    * a :class:`Budget` is returned as it is;
    * an ``int`` is the input limit in tokens: ``base`` (default ``Budget.for_model(model,
      output_reserve=output_reserve)``) with ``max_input_tokens`` set to it. It must be at least 1 and
      at most what the window leaves for input after the output reserve, so the limit is exactly
      the number given;
    * ``None`` is ``base``, or ``Budget.for_model(model, output_reserve=output_reserve)``.

    Anything else raises :class:`~ctxkit.errors.InvalidInputError` saying what to pass. (Retrieval's
    ``budget_tokens`` is a different thing, the retrieved section's budget, and is a plain ``int``.)
    """
    if isinstance(budget, Budget):
        return budget
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int)):
        raise InvalidInputError(
            "budget must be a ctxkit.Budget (Budget.for_model(model) or Budget(...)) or an int (the prompt's "
            f"input limit in tokens), not {type(budget).__name__}"
        )
    start = base if base is not None else Budget.for_model(model, output_reserve=output_reserve)
    if budget is None:
        return start
    room = start.context_window - start.output_reserve
    if not 1 <= budget <= room:
        raise InvalidInputError(
            f"budget={budget} tokens is not a possible input limit for {start.model or model!r}: pass an int from 1 "
            f"to {room} (its context window of {start.context_window} minus the output reserve of "
            f"{start.output_reserve}), or a Budget"
        )
    return Budget(**{**start.model_dump(), "max_input_tokens": budget})
