"""ctxkit inside LlamaIndex (extra ``llamaindex``): native components over ctxkit's stages.

Adopting ctxkit in an existing query engine takes two changed lines::

    from ctxkit.integrations.llamaindex import CtxkitLLM, CtxkitNodePostprocessor

    llm = CtxkitLLM(model="llamacpp:default", max_tokens=64)                        # was another LLM
    engine = index.as_query_engine(llm=llm, node_postprocessors=[CtxkitNodePostprocessor(budget_tokens=400)])

What is here:

* :func:`node_to_chunk` / :func:`chunk_to_node` — node <-> :class:`ctxkit.Chunk`,
  keeping ids, scores, source document, character spans and metadata;
* :func:`to_ctxkit_message` / :func:`from_ctxkit_message` — ``ChatMessage`` <-> ctxkit
  messages, tool calls included (``ToolCallBlock`` and ``additional_kwargs["tool_calls"]``);
* :class:`CtxkitNodePostprocessor` — packs (and optionally prunes) retrieved nodes to a
  token budget, maximizing their summed score;
* :class:`CtxkitLLM` — a LlamaIndex ``LLM`` over :class:`ctxkit.dispatch.Dispatcher`
  (chat, completion, streaming, async), reporting usage in ``raw["usage"]``;
* :class:`CtxkitChatMemory` — a chat memory (``BaseChatStoreMemory``) whose ``get``
  returns the newest whole turns that fit a token window, as ctxkit counts them, with
  tool outputs optionally shortened; tool calls are never split from their results;
* :class:`CtxkitEmbedding` — a LlamaIndex embedding over a ctxkit embedder (offline
  all-MiniLM-L6-v2 by default), so an index builds with no network.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Generator, Sequence
from typing import Any

from pydantic import ConfigDict, Field, PrivateAttr

from ctxkit.assembly.assembler import group_turns
from ctxkit.compress.history import TokenWindow, TruncateToolOutputs
from ctxkit.dispatch import Dispatcher
from ctxkit.errors import InvalidInputError, MissingDependencyError
from ctxkit.integrations._common import PackReport, pack_texts, result_metadata
from ctxkit.messages import Chunk, Message, ToolCall, canonical_json
from ctxkit.retrieval.embeddings import SentenceTransformerEmbedder
from ctxkit.tokenizers import get_chat_counter, get_tokenizer
from ctxkit.usage import Usage

try:
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.core.base.llms.types import (
        ChatMessage,
        ChatResponse,
        ChatResponseAsyncGen,
        ChatResponseGen,
        CompletionResponse,
        CompletionResponseAsyncGen,
        CompletionResponseGen,
        LLMMetadata,
        MessageRole,
        TextBlock,
        ThinkingBlock,
        ToolCallBlock,
    )
    from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
    from llama_index.core.llms.llm import LLM
    from llama_index.core.memory.types import DEFAULT_CHAT_STORE_KEY, BaseChatStoreMemory
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.schema import (
        BaseNode,
        MetadataMode,
        NodeRelationship,
        NodeWithScore,
        QueryBundle,
        RelatedNodeInfo,
        TextNode,
    )
    from llama_index.core.storage.chat_store import BaseChatStore, SimpleChatStore
except ImportError as exc:
    raise MissingDependencyError("the LlamaIndex integration", "llamaindex", package="llama-index-core") from exc

__all__ = [
    "CtxkitChatMemory",
    "CtxkitEmbedding",
    "CtxkitLLM",
    "CtxkitNodePostprocessor",
    "chunk_to_node",
    "from_ctxkit_message",
    "from_ctxkit_messages",
    "node_to_chunk",
    "to_ctxkit_message",
    "to_ctxkit_messages",
]

_PINNED_KEY = "ctxkit_pinned"


# ---------------------------------------------------------------------- nodes
def node_to_chunk(node: NodeWithScore | BaseNode, *, rank: int = 0) -> Chunk:
    """A node (scored or not) as a :class:`ctxkit.Chunk`.

    The score is the node's score, else ``1 / (1 + rank)``; ``doc_id`` is the source
    document (``ref_doc_id``); the character span and metadata are kept.
    """
    score: float | None = None
    if isinstance(node, NodeWithScore):
        score = node.score
        node = node.node
    text = node.get_content(metadata_mode=MetadataMode.NONE)
    meta = dict(node.metadata)
    start = getattr(node, "start_char_idx", None)
    end = getattr(node, "end_char_idx", None)
    return Chunk(
        text=text,
        score=float(score) if score is not None else 1.0 / (1.0 + rank),
        id=node.node_id,
        doc_id=node.ref_doc_id or "",
        title=str(meta.get("title") or meta.get("file_name") or ""),
        position=int(meta.get("position") or 0),
        start=start,
        end=end,
        metadata=meta,
    )


def chunk_to_node(chunk: Chunk) -> NodeWithScore:
    """A :class:`ctxkit.Chunk` as a scored ``TextNode`` (its ``doc_id`` becomes the SOURCE relationship)."""
    kwargs: dict[str, Any] = {
        "text": chunk.text,
        "metadata": dict(chunk.metadata),
        "start_char_idx": chunk.start,
        "end_char_idx": chunk.end,
    }
    if chunk.id:
        kwargs["id_"] = chunk.id
    if chunk.doc_id:
        kwargs["relationships"] = {NodeRelationship.SOURCE: RelatedNodeInfo(node_id=chunk.doc_id)}
    return NodeWithScore(node=TextNode(**kwargs), score=chunk.score)


class CtxkitNodePostprocessor(BaseNodePostprocessor):
    """Packs retrieved nodes into ``budget_tokens``, maximizing their summed score.

    A node costs the tokens of what the LLM sees (``metadata_mode="llm"``: its text and
    LLM-visible metadata) plus ``per_node_tokens``. With a ``pruner``
    (:class:`ctxkit.compress.TokenPruner` or any ``TextCompressor``), nodes that do not
    fit whole are pruned to ``prune_rate`` (the query is the question) and packed into
    the room left; such nodes get ``metadata["ctxkit_pruned"] = True``. Kept nodes keep
    the retriever's order. ``last_report`` says what was dropped and why.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    budget_tokens: int = Field(
        default=1024,
        ge=0,
        description="token budget of the retrieved section (the nodes packed), not of the whole prompt",
    )
    tokenizer: str = "gpt-4o"
    per_node_tokens: int = Field(default=0, ge=0)
    metadata_mode: MetadataMode = MetadataMode.LLM
    pruner: Any = Field(default=None, exclude=True)
    prune_rate: float = Field(default=0.5, gt=0, le=1)
    last_report: PackReport | None = Field(default=None, exclude=True)

    @classmethod
    def class_name(cls) -> str:
        return "CtxkitNodePostprocessor"

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:

        tok = get_tokenizer(self.tokenizer)
        texts = [n.node.get_content(metadata_mode=MetadataMode.NONE) for n in nodes]
        full = [n.node.get_content(metadata_mode=self.metadata_mode) for n in nodes]
        # what the metadata header adds on top of the text; pruning cannot shrink it
        extras = [max(a - b, 0) for a, b in zip(tok.count_many(full), tok.count_many(texts), strict=True)]
        scores = [n.score if n.score is not None else 1.0 / (1 + i) for i, n in enumerate(nodes)]
        report = pack_texts(
            texts,
            scores,
            self.budget_tokens,
            tokenizer=tok,
            per_item_tokens=self.per_node_tokens,
            extra_costs=extras,
            pruner=self.pruner,
            prune_rate=self.prune_rate,
            question=query_bundle.query_str if query_bundle is not None else None,
        )
        self.last_report = report
        out: list[NodeWithScore] = []
        for item in report.kept:
            n = nodes[item.index]
            if item.pruned:
                node = n.node.model_copy(deep=True)
                if not isinstance(node, TextNode):
                    raise InvalidInputError(f"cannot prune a {type(node).__name__}; only text nodes can be pruned")
                node.set_content(item.text)
                node.metadata["ctxkit_pruned"] = True
                node.metadata["ctxkit_original_tokens"] = item.original_tokens
                node.excluded_llm_metadata_keys = [
                    *node.excluded_llm_metadata_keys,
                    "ctxkit_pruned",
                    "ctxkit_original_tokens",
                ]
                node.excluded_embed_metadata_keys = [
                    *node.excluded_embed_metadata_keys,
                    "ctxkit_pruned",
                    "ctxkit_original_tokens",
                ]
                out.append(NodeWithScore(node=node, score=n.score))
            else:
                out.append(n)
        return out


# ---------------------------------------------------------------------- messages
def _tool_calls_of(message: ChatMessage, index: int) -> list[ToolCall]:
    calls: list[ToolCall] = []
    for n, b in enumerate(message.blocks):
        if isinstance(b, ToolCallBlock):
            args = b.tool_kwargs if isinstance(b.tool_kwargs, str) else canonical_json(b.tool_kwargs)
            calls.append(ToolCall(id=b.tool_call_id or f"call_{index}_{n}", name=b.tool_name, arguments=args))
    if calls:
        return calls
    for n, c in enumerate(message.additional_kwargs.get("tool_calls") or []):
        data = c if isinstance(c, dict) else (c.model_dump() if hasattr(c, "model_dump") else dict(c))
        fn = data.get("function") or {}
        args = fn.get("arguments", "{}")
        calls.append(
            ToolCall(
                id=data.get("id") or f"call_{index}_{n}",
                name=fn.get("name") or data.get("name") or "unknown",
                arguments=args if isinstance(args, str) else canonical_json(args),
            )
        )
    return calls


def to_ctxkit_message(message: ChatMessage, *, index: int = 0) -> Message:
    """A LlamaIndex ``ChatMessage`` as a :class:`ctxkit.Message`; non-text blocks (images, audio) raise."""
    where = f"messages[{index}] ({message.role.value})"
    parts: list[str] = []
    for n, b in enumerate(message.blocks):
        if isinstance(b, TextBlock):
            parts.append(b.text)
        elif isinstance(b, ToolCallBlock | ThinkingBlock):
            continue
        else:
            raise InvalidInputError(
                f"{where} has a {type(b).__name__} (block {n}); ctxkit messages carry text only. "
                "Describe it in text, or send it to a multimodal model directly."
            )
    text = "".join(parts)
    kw = message.additional_kwargs
    pinned = bool(kw.get(_PINNED_KEY, False))
    name = kw.get("name")
    role = message.role
    if role in (MessageRole.SYSTEM, MessageRole.DEVELOPER):
        return Message(role=role.value, content=text, name=name, pinned=pinned)
    if role == MessageRole.USER:
        return Message(role="user", content=text, name=name, pinned=pinned)
    if role in (MessageRole.ASSISTANT, MessageRole.CHATBOT, MessageRole.MODEL):
        calls = _tool_calls_of(message, index)
        return Message(role="assistant", content=text, name=name, tool_calls=tuple(calls), pinned=pinned)
    if role in (MessageRole.TOOL, MessageRole.FUNCTION):
        call_id = kw.get("tool_call_id")
        if not call_id:
            raise InvalidInputError(f"{where} needs additional_kwargs['tool_call_id'] naming the call it answers")
        return Message(role="tool", content=text, tool_call_id=str(call_id), pinned=pinned)
    raise InvalidInputError(f"{where}: role {role!r} has no ctxkit equivalent")


def to_ctxkit_messages(messages: Sequence[ChatMessage]) -> list[Message]:
    """LlamaIndex chat messages as ctxkit messages, in order."""
    return [to_ctxkit_message(m, index=i) for i, m in enumerate(messages)]


def from_ctxkit_message(message: Message) -> ChatMessage:
    """A :class:`ctxkit.Message` as a LlamaIndex ``ChatMessage``.

    Tool calls become ``ToolCallBlock`` blocks and, for integrations that read the
    OpenAI shape, ``additional_kwargs["tool_calls"]``; a tool result carries
    ``additional_kwargs["tool_call_id"]``.
    """
    kw: dict[str, Any] = {}
    if message.pinned:
        kw[_PINNED_KEY] = True
    if message.name:
        kw["name"] = message.name
    blocks: list[Any] = [TextBlock(text=message.content)] if message.content or not message.tool_calls else []
    if message.tool_calls:
        for c in message.tool_calls:
            try:
                args: dict[str, Any] | str = json.loads(c.arguments) if c.arguments.strip() else {}
            except json.JSONDecodeError:
                args = c.arguments
            if not isinstance(args, dict | str):
                args = c.arguments
            blocks.append(ToolCallBlock(tool_call_id=c.id, tool_name=c.name, tool_kwargs=args))
        kw["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
    if message.tool_call_id:
        kw["tool_call_id"] = message.tool_call_id
    return ChatMessage(role=MessageRole(message.role), blocks=blocks, additional_kwargs=kw)


def from_ctxkit_messages(messages: Sequence[Message]) -> list[ChatMessage]:
    """ctxkit messages as LlamaIndex chat messages, in order."""
    return [from_ctxkit_message(m) for m in messages]


def _openai_usage(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cache_read_tokens},
    }


# ---------------------------------------------------------------------- LLM
class CtxkitLLM(LLM):
    """A LlamaIndex LLM that answers through ctxkit's dispatcher (chat, completion, streaming, async).

    ``model`` is a backend spec (``"llamacpp:default"``) or, with ``dispatcher`` given,
    a route name. A completion is sent as one user message through the model's chat
    template. Responses carry usage in OpenAI shape in ``raw["usage"]`` (with
    ``prompt_tokens_details.cached_tokens``), which :mod:`ctxkit.telemetry.llamaindex`
    reads, and ``raw["cost"]`` (a string, ``None`` when unknown).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: str = Field(default="llamacpp:default")
    dispatcher: Any = Field(default=None, exclude=True)
    temperature: float = 0.0
    max_tokens: int = 256
    stop: list[str] | None = None
    context_window: int | None = None
    sensitive: bool = False

    _resolved: Any = PrivateAttr(default=None)

    @classmethod
    def class_name(cls) -> str:
        return "CtxkitLLM"

    @property
    def metadata(self) -> LLMMetadata:
        """Facts LlamaIndex plans with; the context window is the loaded backend's (``n_ctx`` for llama.cpp).

        Without an explicit ``context_window`` this resolves the default backend (loading a
        local model on first use), so prompt packing never plans for more than is loaded.
        """
        window = self.context_window
        if window is None:
            dispatcher = self._dispatcher()
            window = getattr(dispatcher.backends[dispatcher.default], "context_window", None)
        return LLMMetadata(
            context_window=int(window) if window else 4096,
            num_output=self.max_tokens,
            is_chat_model=True,
            model_name=self.model,
        )

    def _dispatcher(self) -> Any:

        if self._resolved is None:
            target = self.dispatcher
            self._resolved = (
                target
                if isinstance(target, Dispatcher)
                else Dispatcher({self.model: target if target is not None else self.model})
            )
        return self._resolved

    def _options(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        opts: dict[str, Any] = {
            "max_tokens": kwargs.pop("max_tokens", self.max_tokens),
            "temperature": kwargs.pop("temperature", self.temperature),
            "stop": tuple(kwargs.pop("stop", None) or self.stop or ()),
            "sensitive": kwargs.pop("sensitive", self.sensitive),
        }
        kwargs.pop("formatted", None)
        opts.update(kwargs)
        return opts

    @staticmethod
    def _raw(result: Any) -> dict[str, Any]:
        return {**result_metadata(result), "usage": _openai_usage(result.usage)}

    def _chat_response(self, result: Any) -> ChatResponse:
        msg = from_ctxkit_message(Message(role="assistant", content=result.text, tool_calls=result.tool_calls))
        msg.additional_kwargs.update(
            {"prompt_tokens": result.usage.input_tokens, "completion_tokens": result.usage.output_tokens}
        )
        return ChatResponse(message=msg, raw=self._raw(result))

    # ---- chat
    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        result = self._dispatcher().run(to_ctxkit_messages(messages), **self._options(kwargs))
        return self._chat_response(result)

    def _chat_delta(self, event: Any, text: str) -> tuple[ChatResponse | None, str]:
        """One stream event as a LlamaIndex chat response (None for events it has no form for), and the text so far."""
        if event.kind == "text":
            text += event.text
            return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=event.text), text
        if event.kind == "done" and event.result is not None:
            final = self._chat_response(event.result)
            return ChatResponse(message=final.message, delta="", raw=final.raw), text
        return None, text

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        events = self._dispatcher().stream(to_ctxkit_messages(messages), **self._options(kwargs))

        def gen() -> Generator[ChatResponse, None, None]:
            text = ""
            for event in events:
                response, text = self._chat_delta(event, text)
                if response is not None:
                    yield response

        return gen()

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        result = await self._dispatcher().arun(to_ctxkit_messages(messages), **self._options(kwargs))
        return self._chat_response(result)

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        # the dispatcher's own async stream: no thread per call, retries back off on the event loop
        events = self._dispatcher().astream(to_ctxkit_messages(messages), **self._options(kwargs))

        async def gen() -> AsyncGenerator[ChatResponse, None]:
            text = ""
            async for event in events:
                response, text = self._chat_delta(event, text)
                if response is not None:
                    yield response

        return gen()

    # ---- completion (through the chat template)
    @staticmethod
    def _completion(chat: ChatResponse) -> CompletionResponse:
        return CompletionResponse(
            text=chat.message.content or "",
            delta=chat.delta,
            raw=chat.raw,
            additional_kwargs=dict(chat.message.additional_kwargs),
        )

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        result = self._dispatcher().run([Message.user(prompt)], **self._options(kwargs))
        return self._completion(self._chat_response(result))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        events = self._dispatcher().stream([Message.user(prompt)], **self._options(kwargs))

        def gen() -> Generator[CompletionResponse, None, None]:
            text = ""
            for event in events:
                response, text = self._chat_delta(event, text)
                if response is not None:
                    yield self._completion(response)

        return gen()

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        result = await self._dispatcher().arun([Message.user(prompt)], **self._options(kwargs))
        return self._completion(self._chat_response(result))

    @llm_completion_callback()
    async def astream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseAsyncGen:
        events = self._dispatcher().astream([Message.user(prompt)], **self._options(kwargs))

        async def gen() -> AsyncGenerator[CompletionResponse, None]:
            text = ""
            async for event in events:
                response, text = self._chat_delta(event, text)
                if response is not None:
                    yield self._completion(response)

        return gen()


# ---------------------------------------------------------------------- memory
class CtxkitChatMemory(BaseChatStoreMemory):
    """A LlamaIndex chat memory that hands the LLM only the newest whole turns that fit ``token_limit``.

    Counting is ctxkit's exact chat counter for ``model`` (template overhead included,
    no network). System and pinned messages always stay; tool calls are never split from
    their results; with ``tool_output_tokens`` long tool results are shortened first,
    with a marker saying what was cut. ``get_all`` still returns everything stored.
    ``last_dropped`` is how many turns the last ``get`` left out.
    """

    token_limit: int = Field(default=3000, gt=0)
    model: str = "gpt-4o"
    tool_output_tokens: int | None = Field(default=None, gt=0)
    last_dropped: int = 0

    @classmethod
    def class_name(cls) -> str:
        return "CtxkitChatMemory"

    @classmethod
    def from_defaults(  # type: ignore[override]
        cls,
        chat_history: list[ChatMessage] | None = None,
        llm: LLM | None = None,
        chat_store: BaseChatStore | None = None,
        chat_store_key: str = DEFAULT_CHAT_STORE_KEY,
        token_limit: int | None = None,
        model: str = "gpt-4o",
        tool_output_tokens: int | None = None,
    ) -> CtxkitChatMemory:
        """A memory over ``chat_store``; ``token_limit`` defaults to 3/4 of ``llm``'s context window (else 3000)."""
        if token_limit is None:
            token_limit = int(llm.metadata.context_window * 0.75) if llm is not None else 3000
        store = chat_store or SimpleChatStore()
        if chat_history is not None:
            store.set_messages(chat_store_key, chat_history)
        return cls(
            token_limit=token_limit,
            model=model,
            tool_output_tokens=tool_output_tokens,
            chat_store=store,
            chat_store_key=chat_store_key,
        )

    def get(self, input: str | None = None, **kwargs: Any) -> list[ChatMessage]:
        """The newest whole turns that fit ``token_limit`` (minus the tokens of ``input`` when given)."""

        stored = self.chat_store.get_messages(self.chat_store_key)
        if not stored:
            self.last_dropped = 0
            return []
        counter = get_chat_counter(self.model)
        limit = self.token_limit
        if input:
            limit -= counter.message_tokens(Message.user(input))
        if limit <= 0:
            raise InvalidInputError(
                f"the input alone needs {self.token_limit - limit} of the memory's {self.token_limit} tokens; "
                "raise token_limit"
            )
        history = to_ctxkit_messages(stored)
        work = history
        if self.tool_output_tokens is not None:
            work = TruncateToolOutputs(self.tool_output_tokens, tokenizer=counter.tokenizer).apply(work)
        kept = TokenWindow(limit, counter=counter).apply(work)
        # map kept messages back to the stored ones (kept is an in-order subsequence)
        out: list[ChatMessage] = []
        j = 0
        for orig, before, m in zip(stored, history, work, strict=True):
            if j < len(kept) and kept[j] == m:
                out.append(orig if m == before else from_ctxkit_message(m))  # shortened tool results are new
                j += 1
        self.last_dropped = len(group_turns(work)) - len(group_turns(kept))
        return out


# ---------------------------------------------------------------------- embeddings
class CtxkitEmbedding(BaseEmbedding):
    """A LlamaIndex embedding over a ctxkit embedder (default: offline all-MiniLM-L6-v2, extra ``retrieval``)."""

    embedder: Any = Field(default=None, exclude=True)

    def __init__(self, embedder: Any = None, **kwargs: Any) -> None:
        if embedder is None:
            embedder = SentenceTransformerEmbedder()
        kwargs.setdefault("model_name", str(embedder.name))
        super().__init__(embedder=embedder, **kwargs)

    @classmethod
    def class_name(cls) -> str:
        return "CtxkitEmbedding"

    def _get_query_embedding(self, query: str) -> list[float]:
        return [float(x) for x in self.embedder.embed_query(query)]

    def _get_text_embedding(self, text: str) -> list[float]:
        return [float(x) for x in self.embedder.embed([text])[0]]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return [[float(x) for x in row] for row in self.embedder.embed(list(texts))]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return await asyncio.to_thread(self._get_text_embedding, text)
