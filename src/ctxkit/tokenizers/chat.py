"""Count chat messages with their format overhead.

* :class:`OpenAIChatCounter` — OpenAI chat format: 3 tokens per message, 1 per
  ``name``, 3 to prime the reply (exact for text messages, as in OpenAI's
  token-counting guide); tool schemas follow the guide's per-function and
  per-property constants (OpenAI documents these as an estimate).
* :class:`TemplateChatCounter` — a local GGUF model: the messages are rendered
  through the model's own chat template and tokenized by its own vocabulary,
  exactly as llama.cpp builds the prompt, so the count equals the prompt tokens
  llama.cpp reports.
* :class:`EstimateChatCounter` — models with no public tokenizer (Claude): the
  estimator's conservative counts plus a per-message allowance.

Every counter has the same face: ``message_tokens`` (the additive cost of one
message, used while packing), ``tools_tokens``, ``base_tokens`` (fixed overhead)
and ``count_messages`` (the exact total of a whole list, used to verify).

The fixed overhead can depend on the first message: SmolLM2's template (like Qwen's)
inserts a default system prompt when the list does not start with a system message.
``base_tokens`` is the larger of the two (safe when the first message is unknown);
:func:`base_tokens_for` gives the overhead of a list that starts with a known role, so a
caller that supplies its own system prompt is not charged for the default one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from ctxkit._inputs import reject_bare_string
from ctxkit.errors import InvalidInputError
from ctxkit.messages import Message, ToolSpec
from ctxkit.tokenizers.base import TokenCountCache, Tokenizer

__all__ = [
    "ChatCounter",
    "EstimateChatCounter",
    "OpenAIChatCounter",
    "TemplateChatCounter",
    "base_tokens_for",
    "get_chat_counter",
]


@runtime_checkable
class ChatCounter(Protocol):
    tokenizer: Tokenizer

    @property
    def base_tokens(self) -> int: ...

    def message_tokens(self, message: Message) -> int: ...

    def tools_tokens(self, tools: Sequence[ToolSpec]) -> int: ...

    def count_messages(self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()) -> int: ...


#: per-counter memo of message costs (by message object); cleared whole when full
_MESSAGE_MEMO_SIZE = 65_536


class OpenAIChatCounter:
    """OpenAI chat-completions accounting over an exact tiktoken tokenizer."""

    tokens_per_message = 3
    tokens_per_name = 1
    reply_priming = 3

    def __init__(self, tokenizer: Tokenizer, *, legacy_functions: bool = False) -> None:
        self.tokenizer = tokenizer
        self._memo: dict[int, tuple[Message, int]] = {}
        cache = getattr(tokenizer, "cache", None)
        self._count_cache = cache if isinstance(cache, TokenCountCache) else None
        self._memo_generation = self._count_cache.generation if self._count_cache is not None else 0
        # gpt-3.5/gpt-4 (cl100k) vs gpt-4o family (o200k) constants from OpenAI's guide
        self._func_init = 10 if legacy_functions else 7
        self._prop_init, self._prop_key, self._enum_init, self._enum_item, self._func_end = 3, 3, -3, 3, 12

    @property
    def base_tokens(self) -> int:
        return self.reply_priming

    def message_tokens(self, message: Message) -> int:
        # messages are frozen: a message object seen before costs what it cost then (one dict probe);
        # the memo holds the message itself, so its id cannot be reused while the entry lives
        memo = self._memo
        cache = self._count_cache
        if cache is not None and cache.generation != self._memo_generation:  # the counts were cleared: cold again
            memo.clear()
            self._memo_generation = cache.generation
        hit = memo.get(id(message))
        if hit is not None and hit[0] is message:
            return hit[1]
        n = self._message_tokens(message)
        if len(memo) >= _MESSAGE_MEMO_SIZE:
            memo.clear()
        memo[id(message)] = (message, n)
        return n

    def _message_tokens(self, message: Message) -> int:
        count = self.tokenizer.count
        n = self.tokens_per_message + count(message.role) + count(message.content)
        if message.name:
            n += self.tokens_per_name + count(message.name)
        for call in message.tool_calls:
            n += self.tokens_per_message + count(call.name) + count(call.arguments) + count(call.id)
        if message.tool_call_id:
            n += count(message.tool_call_id)
        return n

    def tools_tokens(self, tools: Sequence[ToolSpec]) -> int:
        if not tools:
            return 0
        count = self.tokenizer.count
        total = 0
        for tool in tools:
            total += self._func_init
            desc = tool.description[:-1] if tool.description.endswith(".") else tool.description
            total += count(f"{tool.name}:{desc}")
            props: dict[str, Any] = tool.parameters.get("properties") or {}
            if props:
                total += self._prop_init
                for key, prop in props.items():
                    total += self._prop_key
                    if not isinstance(prop, dict):
                        prop = {}
                    for item in prop.get("enum") or ():
                        total += self._enum_item + count(str(item))
                    if prop.get("enum"):
                        total += self._enum_init
                    p_type = prop.get("type", "")
                    if not isinstance(p_type, str):
                        p_type = json.dumps(p_type)
                    p_desc = str(prop.get("description", ""))
                    p_desc = p_desc[:-1] if p_desc.endswith(".") else p_desc
                    total += count(f"{key}:{p_type}:{p_desc}")
        return total + self._func_end

    def count_messages(self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()) -> int:
        _check_messages(messages, tools)
        return self.base_tokens + sum(self.message_tokens(m) for m in messages) + self.tools_tokens(tools)


class EstimateChatCounter:
    """Per-message allowance over an estimating tokenizer (Anthropic's format is not public)."""

    per_message = 4
    per_tool_call = 12
    base = 8

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer

    @property
    def base_tokens(self) -> int:
        return self.base

    def message_tokens(self, message: Message) -> int:
        count = self.tokenizer.count
        n = self.per_message + count(message.content)
        for call in message.tool_calls:
            n += self.per_tool_call + count(call.name) + count(call.arguments) + count(call.id)
        if message.tool_call_id:
            n += self.per_tool_call + count(message.tool_call_id)
        return n

    def tools_tokens(self, tools: Sequence[ToolSpec]) -> int:
        if not tools:
            return 0
        from ctxkit.messages import canonical_json

        # Anthropic adds a tool-use system prompt (a few hundred tokens) when tools are present.
        return 350 + sum(self.tokenizer.count(canonical_json(t.to_anthropic())) for t in tools)

    def count_messages(self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()) -> int:
        _check_messages(messages, tools)
        return self.base_tokens + sum(self.message_tokens(m) for m in messages) + self.tools_tokens(tools)


class TemplateChatCounter:
    """Exact prompt-token counts for a GGUF model: its chat template, its vocabulary."""

    def __init__(self, tokenizer: Any) -> None:
        from ctxkit.tokenizers._gguf import GGUFTokenizer

        if not isinstance(tokenizer, GGUFTokenizer):
            from ctxkit.errors import InvalidInputError

            raise InvalidInputError("TemplateChatCounter needs a GGUFTokenizer (spec 'gguf:<path>')")
        self.gguf: GGUFTokenizer = tokenizer
        self.tokenizer: Tokenizer = tokenizer
        self._formatter = _template_formatter(tokenizer.llama)
        self._probe = Message.system("x")
        self._cache: dict[Message, int] = {}
        self._base_by_role: dict[str, int] = {}
        # Some templates (SmolLM2's) insert a default system prompt when the list does not
        # start with a system message; with the first role unknown, the fixed overhead is the
        # larger of the two so packing stays conservative (see base_tokens_for).
        self._base = max(self.base_tokens_for("system"), self.base_tokens_for("user"))

    def _count_raw(self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()) -> int:
        result = self._formatter(
            messages=[m.to_openai() for m in messages],
            tools=[t.to_openai() for t in tools] or None,
        )
        return len(self.gguf.encode_special(result.prompt, add_bos=not result.added_special))

    @property
    def base_tokens(self) -> int:
        return self._base

    def base_tokens_for(self, first_role: str | None) -> int:
        """The fixed overhead of a list whose first message has ``first_role`` (None: not known)."""
        if first_role not in ("system", "developer", "user", "assistant"):
            return self._base
        cached = self._base_by_role.get(first_role)
        if cached is None:
            first = Message(role=first_role, content="x")
            cached = self._count_raw([first]) - self.message_tokens(first)
            self._base_by_role[first_role] = cached
        return cached

    def message_tokens(self, message: Message) -> int:
        cached = self._cache.get(message)
        if cached is None:
            cached = self._count_raw([self._probe, message]) - self._count_raw([self._probe])
            self._cache[message] = cached
        return cached

    def tools_tokens(self, tools: Sequence[ToolSpec]) -> int:
        if not tools:
            return 0
        return self._count_raw([self._probe], tools) - self._count_raw([self._probe])

    def count_messages(self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()) -> int:
        _check_messages(messages, tools)
        return self._count_raw(list(messages), tools)


def _template_formatter(llama: Any) -> Any:
    """llama.cpp's own Jinja2 formatter for the model's embedded chat template."""
    from llama_cpp import llama_chat_format

    meta = llama.metadata
    template = meta.get("tokenizer.chat_template")
    if not template:
        from ctxkit.errors import ResourceError

        raise ResourceError("this GGUF file carries no chat template ('tokenizer.chat_template')")
    eos_id = llama.token_eos()
    bos_id = llama.token_bos()
    eos = llama._model.token_get_text(eos_id) if eos_id != -1 else ""
    bos = llama._model.token_get_text(bos_id) if bos_id != -1 else ""
    formatter = llama_chat_format.Jinja2ChatFormatter(
        template=template, eos_token=eos, bos_token=bos, stop_token_ids=[eos_id]
    )
    from ctxkit.toolcalls import template_supports_tools

    return formatter if template_supports_tools(template) else _InlineToolsFormatter(formatter)


class _InlineToolsFormatter:
    """A template without tool support, given tools and tool messages as text (see :mod:`ctxkit.toolcalls`)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, *, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> Any:
        from ctxkit.toolcalls import inline_tools

        return self.inner(messages=inline_tools(messages, tools))


def _check_messages(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> None:
    reject_bare_string(messages, "count_messages(messages)", "count_messages([Message.user(...)])")
    reject_bare_string(tools, "count_messages(tools=...)", "tools=[ToolSpec(...)]")
    for n, m in enumerate(messages):
        if not isinstance(m, Message):
            raise InvalidInputError(
                f"messages[{n}] is a {type(m).__name__}, not a ctxkit Message; build it with Message(...)"
            )


def base_tokens_for(counter: ChatCounter, first_role: str | None) -> int:
    """``counter``'s fixed overhead for a message list whose first message has ``first_role``.

    Counters whose overhead does not depend on the first message (OpenAI's, the estimator,
    or a custom counter without a ``base_tokens_for`` method) return ``base_tokens``.
    """
    method = getattr(counter, "base_tokens_for", None)
    if method is None:
        return counter.base_tokens
    return int(method(first_role))


def get_chat_counter(model_or_spec: str) -> ChatCounter:
    """The chat counter for a model name (or a tokenizer spec, counted in OpenAI format)."""
    from ctxkit.errors import UnknownNameError
    from ctxkit.models import get_model
    from ctxkit.tokenizers.registry import get_tokenizer

    try:
        info = get_model(model_or_spec)
    except UnknownNameError:
        tok = get_tokenizer(model_or_spec)
        if tok.name.startswith("gguf"):
            return TemplateChatCounter(tok)
        return OpenAIChatCounter(tok) if tok.exact else EstimateChatCounter(tok)
    tok = get_tokenizer(info.tokenizer)
    if info.chat_format == "template":
        return TemplateChatCounter(tok)
    if info.chat_format == "anthropic" or not tok.exact:
        return EstimateChatCounter(tok)
    return OpenAIChatCounter(tok, legacy_functions=tok.name == "cl100k_base")
