"""Compact: fold older turns of a conversation into summary epochs, cache-aware.

:class:`CompactingHistory` keeps a conversation as three parts::

    [leading system/developer messages] [summary epoch 1] ... [summary epoch k] [live turns]

New messages are appended to the live turns. When the :class:`CompactionTrigger`
fires (tokens, share of the context window, or number of turns), the oldest live
turns — except the newest ``keep_last_turns`` and any pinned or system turn — are
summarized (by any :class:`~ctxkit.compress.summarize.Summarizer`) into a *new* epoch
that is appended after the earlier ones. Earlier epochs are never rewritten, so the
rendered prompt's prefix stays byte-identical between compactions and up to the last
epoch across them: a provider's prompt cache keeps hitting instead of missing on every
turn. Whether a compaction pays for the cache write it causes is priced by
:func:`ctxkit.cache.decide_compaction`.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field, model_validator

from ctxkit._model import CtxkitModel
from ctxkit.assembly import group_turns
from ctxkit.compress.history import is_mandatory_turn
from ctxkit.compress.summarize import Summarizer
from ctxkit.errors import InvalidInputError
from ctxkit.messages import Message
from ctxkit.tokenizers import ChatCounter, get_chat_counter

__all__ = ["CompactingHistory", "CompactionTrigger", "SummaryEpoch"]


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
