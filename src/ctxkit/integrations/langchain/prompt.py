"""``CtxkitPrompt``: budgeted, cache-friendly prompt assembly (:class:`ctxkit.Assembler`) as an LCEL Runnable."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from langchain_core.documents import Document
from langchain_core.messages import BaseMessage
from langchain_core.prompt_values import ChatPromptValue
from langchain_core.runnables import Runnable, RunnableConfig
from pydantic import Field

from ctxkit.assembly.assembler import Assembler
from ctxkit.assembly.prompt import AssembledPrompt
from ctxkit.budget import Budget, as_budget
from ctxkit.errors import InvalidInputError
from ctxkit.integrations._common import DEFAULT_SCORE_KEYS
from ctxkit.integrations.langchain.convert import document_to_chunk, from_ctxkit_messages, to_ctxkit_message
from ctxkit.messages import Chunk, Message

__all__ = ["AssembledPromptValue", "ContextLike", "CtxkitPrompt"]


class AssembledPromptValue(ChatPromptValue):
    """A ``ChatPromptValue`` that also carries the :class:`ctxkit.AssembledPrompt` it was rendered from."""

    assembled: Any = Field(default=None, exclude=True, repr=False)


ContextLike = str | Document | Chunk


class CtxkitPrompt(Runnable[dict[str, Any], Any]):
    """Assemble a budgeted, cache-friendly prompt from the chain's input dict.

    Reads ``query_key`` (the question), ``context_key`` (documents: LangChain
    ``Document``, ctxkit ``Chunk`` or strings; scores from metadata), ``history_key``
    (LangChain or ctxkit messages), ``memory_key`` and ``system_key`` when present. A
    context already joined into one string (``format_docs``) is split back into chunks at
    ``context_separator`` when one is given (earlier pieces rank higher). The
    system prompt and history come first and the volatile context and question last, so
    the prefix stays byte-stable across turns. ``output``: ``"prompt_value"`` (an
    :class:`AssembledPromptValue`, which every chat model accepts), ``"messages"``
    (LangChain messages) or ``"assembled"`` (the :class:`ctxkit.AssembledPrompt`).
    ``budget`` is the whole prompt's: a :class:`~ctxkit.budget.Budget`, or an ``int``, the input limit
    in tokens under ``output_reserve`` (:func:`~ctxkit.budget.as_budget`); default the assembler's.
    """

    def __init__(
        self,
        model: str = "gpt-4o",
        budget: Budget | int | None = None,
        *,
        system: str | None = None,
        assembler: Assembler | None = None,
        query_key: str = "question",
        context_key: str = "context",
        history_key: str = "history",
        memory_key: str = "memory",
        system_key: str = "system",
        output: Literal["prompt_value", "messages", "assembled"] = "prompt_value",
        score_keys: Sequence[str] = DEFAULT_SCORE_KEYS,
        output_reserve: int = 256,
        context_separator: str | None = None,
    ) -> None:
        if output not in ("prompt_value", "messages", "assembled"):
            raise InvalidInputError(f"output must be 'prompt_value', 'messages' or 'assembled', not {output!r}")
        # an int is the input limit in tokens, under this prompt's output reserve
        chosen = None if budget is None else as_budget(budget, model, output_reserve=output_reserve)
        self.assembler = assembler or Assembler(model, chosen)
        self.budget = chosen if chosen is not None else self.assembler.budget
        self.system = system
        self.query_key = query_key
        self.context_key = context_key
        self.history_key = history_key
        self.memory_key = memory_key
        self.system_key = system_key
        self.output = output
        self.score_keys = tuple(score_keys)
        self.context_separator = context_separator
        self.last: AssembledPrompt | None = None

    def __repr__(self) -> str:
        limit = self.budget.input_limit
        return f"CtxkitPrompt(model={self.assembler.model!r}, input_limit={limit}, output={self.output!r})"

    def _chunks(self, value: Any) -> list[Chunk]:
        if value is None:
            return []
        if isinstance(value, str) and self.context_separator:
            value = [p for p in value.split(self.context_separator) if p.strip()]
        if isinstance(value, str | Document | Chunk):
            value = [value]
        out: list[Chunk] = []
        for i, item in enumerate(value):
            if isinstance(item, Chunk):
                out.append(item)
            elif isinstance(item, Document):
                out.append(document_to_chunk(item, rank=i, score_keys=self.score_keys))
            elif isinstance(item, str):
                out.append(Chunk(text=item, score=1.0 / (1 + i)))
            else:
                raise InvalidInputError(
                    f"{self.context_key}[{i}] is a {type(item).__name__}; pass Documents, ctxkit Chunks or strings"
                )
        return out

    @staticmethod
    def _history(value: Any) -> list[Message]:
        if not value:
            return []
        out: list[Message] = []
        for i, m in enumerate(value):
            if isinstance(m, Message):
                out.append(m)
            elif isinstance(m, BaseMessage):
                out.append(to_ctxkit_message(m, index=i))
            else:
                raise InvalidInputError(f"history[{i}] is a {type(m).__name__}; pass LangChain or ctxkit messages")
        return out

    def assemble(self, input: Mapping[str, Any] | str) -> AssembledPrompt:
        """The :class:`ctxkit.AssembledPrompt` for one input (a dict, or the question as a string)."""
        data: Mapping[str, Any] = {self.query_key: input} if isinstance(input, str) else input
        if not isinstance(data, Mapping):
            raise InvalidInputError(f"CtxkitPrompt takes a dict (or the question string), got {type(input).__name__}")
        if self.query_key not in data:
            raise InvalidInputError(f"the input has no {self.query_key!r} key; it has {sorted(data)}")
        query = data[self.query_key]
        if not isinstance(query, str):
            raise InvalidInputError(f"input[{self.query_key!r}] must be a string, got {type(query).__name__}")
        system = data.get(self.system_key, self.system)
        prompt = self.assembler.assemble(
            query=query,
            system=system,
            memory=data.get(self.memory_key),
            history=self._history(data.get(self.history_key)),
            chunks=self._chunks(data.get(self.context_key)),
            budget=self.budget,
        )
        self.last = prompt
        return prompt

    def _render(self, prompt: AssembledPrompt) -> Any:
        if self.output == "assembled":
            return prompt
        messages = from_ctxkit_messages(prompt.messages)
        if self.output == "messages":
            return messages
        return AssembledPromptValue(messages=messages, assembled=prompt)

    def invoke(self, input: dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self._call_with_config(lambda x: self._render(self.assemble(x)), input, config, run_type="prompt")
