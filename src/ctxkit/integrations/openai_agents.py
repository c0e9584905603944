"""ctxkit's context editing for the OpenAI Agents SDK (extra ``agents``).

::

    from agents import Agent, RunConfig, Runner
    from ctxkit.agents import EditPolicy
    from ctxkit.integrations.openai_agents import CtxkitInputFilter

    edit = CtxkitInputFilter(EditPolicy(max_input_tokens=100_000))
    agent = Agent(name="a", tools=[*my_tools, *edit.function_tools()])
    Runner.run_sync(agent, "...", run_config=RunConfig(call_model_input_filter=edit))

:class:`CtxkitInputFilter` is a ``call_model_input_filter``: before each model call the SDK
hands it the input items (Responses-API items); it reads them as ctxkit messages
(``function_call`` items of one turn become one assistant message with parallel calls, their
``function_call_output`` items its tool results), lets an :class:`~ctxkit.agents.AgentContext`
edit them, and returns the items to send. Items it did not edit are passed on as the same
objects; an offloaded ``function_call_output`` keeps its ``call_id`` and gets the stub as its
``output``, so calls and outputs always stay paired. Items ctxkit does not model (reasoning,
hosted-tool items) travel with the message that follows them, untouched and uncounted.
The run's own item list is never changed; :meth:`function_tools` are the ``expand`` and
``search_offloaded`` tools that give offloaded outputs back byte-exact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ctxkit.agents import AgentContext, EditPolicy, EditReport
from ctxkit.agents.store import OffloadStore
from ctxkit.compress.summarize import Summarizer
from ctxkit.errors import InvalidInputError, MissingDependencyError
from ctxkit.integrations._agents import edit_history, offload_functions
from ctxkit.messages import Message, ToolCall
from ctxkit.tokenizers import ChatCounter

try:
    from agents import FunctionTool, function_tool
    from agents.run_config import CallModelData, ModelInputData
except ImportError as exc:
    raise MissingDependencyError("the OpenAI Agents SDK integration", "agents", package="openai-agents") from exc

__all__ = ["CtxkitInputFilter", "items_to_messages"]


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts = []
        for p in content:
            if isinstance(p, Mapping) and isinstance(p.get("text"), str):
                parts.append(p["text"])
            elif isinstance(p, str):
                parts.append(p)
        return "".join(parts)
    return str(content)


def _get(item: Any, key: str) -> Any:
    return item.get(key) if isinstance(item, Mapping) else getattr(item, key, None)


def items_to_messages(items: Sequence[Any]) -> tuple[list[Message], list[list[int]]]:
    """ctxkit messages for Responses-API input items, and for each the indices of the items it stands for."""
    messages: list[Message] = []
    groups: list[list[int]] = []
    pending: list[int] = []  # items ctxkit does not model, attached to the next message
    calls: list[ToolCall] = []
    call_items: list[int] = []

    def flush_calls() -> None:
        nonlocal calls, call_items, pending
        if calls:
            messages.append(Message.assistant("", tool_calls=calls))
            groups.append([*pending, *call_items])
            calls, call_items, pending = [], [], []

    for i, item in enumerate(items):
        kind = _get(item, "type")
        role = _get(item, "role")
        if kind == "function_call":
            calls.append(
                ToolCall(
                    id=str(_get(item, "call_id")),
                    name=str(_get(item, "name")),
                    arguments=_get(item, "arguments") or "{}",
                )
            )
            call_items.append(i)
            continue
        if kind == "function_call_output":
            flush_calls()
            output = _get(item, "output")
            messages.append(Message.tool(_text(output), str(_get(item, "call_id"))))
            groups.append([*pending, i])
            pending = []
            continue
        flush_calls()
        if role in ("user", "system", "developer", "assistant") and kind in (None, "message"):
            messages.append(Message(role=role, content=_text(_get(item, "content"))))
            groups.append([*pending, i])
            pending = []
        else:
            pending.append(i)
    flush_calls()
    if pending:
        if groups:
            groups[-1].extend(pending)
        else:  # nothing ctxkit models: an empty user message carries them (never sent as such)
            raise InvalidInputError("the input holds no message ctxkit can read; pass at least one user message")
    return messages, groups


class CtxkitInputFilter:
    """A ``RunConfig.call_model_input_filter`` applying ctxkit's context editing (see the module docstring).

    ``instructions`` are counted as the leading system message. One filter serves one
    conversation at a time; a different history starts its edits over.
    """

    def __init__(
        self,
        policy: EditPolicy | None = None,
        *,
        store: OffloadStore | None = None,
        counter: ChatCounter | str = "gpt-4o",
        summarizer: Summarizer | None = None,
        pricing_model: str = "claude-sonnet-4-5",
    ) -> None:
        self.context = AgentContext(
            policy, store=store, counter=counter, summarizer=summarizer, pricing_model=pricing_model
        )
        self.reports: list[EditReport] = []

    def __repr__(self) -> str:
        return f"CtxkitInputFilter({self.context!r})"

    def function_tools(self) -> list[FunctionTool]:
        """``expand`` and ``search_offloaded`` as Agents SDK function tools."""
        return [function_tool(f) for f in offload_functions(self.context)]

    def edit(self, items: Sequence[Any], instructions: str | None = None) -> list[Any]:
        """The items to send for ``items`` (the run's list is not changed)."""
        messages, groups = items_to_messages(items)
        lead = [Message.system(instructions)] if instructions else []

        def edited(k: int, m: Message) -> list[Any]:
            if m.role != "tool":  # pragma: no cover - the policy edits only tool outputs here
                raise InvalidInputError(f"ctxkit edited a {m.role} item, which it never should; please report")
            out: list[Any] = []
            for i in groups[k]:
                item = items[i]
                if _get(item, "type") == "function_call_output":
                    base = dict(item) if isinstance(item, Mapping) else item.model_dump(exclude_unset=True)
                    out.append({**base, "output": m.content})
                else:
                    out.append(item)
            return out

        # the instructions are counted, and travel apart; a summary epoch is a user message
        return edit_history(
            self.context,
            [*lead, *messages],
            reports=self.reports,
            lead=len(lead),
            summary=lambda text: {"role": "user", "content": text},
            unchanged=lambda k: [items[i] for i in groups[k]],
            edited=edited,
        )

    def __call__(self, data: CallModelData[Any]) -> ModelInputData:
        model_data = data.model_data
        return ModelInputData(
            input=self.edit(model_data.input, model_data.instructions), instructions=model_data.instructions
        )
