"""Structure-safe trimming of chat histories.

A policy takes a history and returns a shorter one. Every policy keeps three promises:

* **tool structure** — an assistant message with ``tool_calls`` and the tool messages
  answering it are kept or dropped together, so no call is left unanswered and no
  result is orphaned (providers reject such histories);
* **system and pinned messages** — ``system``/``developer`` messages and messages with
  ``pinned=True`` are never dropped or altered (a turn holding one is kept whole);
* **order** — what is kept stays in its original order; nothing is reordered.

Policies compose: :class:`TrimPipeline` runs several in order and is itself a policy::

    policy = TrimPipeline([TruncateToolOutputs(300), KeepLastTurns(8), TokenWindow(4000)])
    history = policy.apply(history)

The unit that is dropped is a *turn* as :func:`ctxkit.assembly.group_turns` splits it
(a user message and everything up to the next user/system message), which also
validates the tool-call structure of the input.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from pydantic import ConfigDict

from ctxkit._lru import LRUCache
from ctxkit._model import CtxkitModel
from ctxkit.assembly import group_turns
from ctxkit.compress.base import check_rate
from ctxkit.errors import InvalidInputError, SectionOverBudgetError
from ctxkit.messages import Message
from ctxkit.tokenizers import ChatCounter, Tokenizer, get_chat_counter, get_tokenizer
from ctxkit.tokenizers.chat import base_tokens_for

if TYPE_CHECKING:
    from ctxkit.compress.base import TextCompressor

__all__ = [
    "BaseHistoryPolicy",
    "CompressOlderTurns",
    "HistoryPolicy",
    "KeepLastTurns",
    "TokenWindow",
    "TrimPipeline",
    "TrimReport",
    "TruncateToolOutputs",
    "is_mandatory_turn",
]

DEFAULT_MARKER = "[ctxkit: cut {cut} of {total} tokens from this tool output{where}]"


@runtime_checkable
class HistoryPolicy(Protocol):
    """Anything that shortens a history while keeping its structure valid."""

    def apply(self, history: Sequence[Message]) -> list[Message]: ...


class TrimReport(CtxkitModel):
    """What a policy did: messages and tokens before and after, what it dropped and cut."""

    model_config = ConfigDict(frozen=True)

    messages_before: int
    messages_after: int
    tokens_before: int
    tokens_after: int
    turns_dropped: int
    messages_truncated: int

    @property
    def tokens_saved(self) -> int:
        return self.tokens_before - self.tokens_after


def is_mandatory_turn(turn: Sequence[Message]) -> bool:
    """A turn that no policy may drop: it holds a system/developer message or a pinned one."""
    return any(m.pinned or m.role in ("system", "developer") for m in turn)


def _history(history: object) -> list[Message]:
    if isinstance(history, str | bytes | Mapping) or not isinstance(history, Iterable):
        raise InvalidInputError(f"a history is a list of ctxkit Message objects, not a {type(history).__name__}")
    return list(history)


def _counter(counter: object) -> ChatCounter:
    if isinstance(counter, str):
        return get_chat_counter(counter)
    if not isinstance(counter, ChatCounter):
        raise InvalidInputError(f"counter must be a model name or a ChatCounter, not {type(counter).__name__}")
    return counter


def _int(value: object, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidInputError(f"{name} needs an int >= {low}, got {value!r}")
    return value


class BaseHistoryPolicy(ABC):
    """Base class: implement :meth:`_apply_turns`; ``apply`` validates and flattens."""

    def apply(self, history: Sequence[Message]) -> list[Message]:
        """The trimmed history (a new list; the input is not changed)."""
        turns = group_turns(_history(history))
        out = self._apply_turns(turns)
        return [m for t in out for m in t]

    def apply_with_report(
        self, history: Sequence[Message], *, counter: ChatCounter | str = "gpt-4o"
    ) -> tuple[list[Message], TrimReport]:
        """The trimmed history and a :class:`TrimReport` measured with ``counter``."""
        c = _counter(counter)
        history = _history(history)
        turns = group_turns(history)
        out_turns = self._apply_turns(turns)
        out = [m for t in out_turns for m in t]
        before_ids = {id(m) for m in history}
        truncated = sum(1 for m in out if id(m) not in before_ids)
        dropped = len(turns) - len(out_turns)
        report = TrimReport(
            messages_before=len(history),
            messages_after=len(out),
            tokens_before=c.count_messages(list(history)),
            tokens_after=c.count_messages(out),
            turns_dropped=dropped,
            messages_truncated=truncated,
        )
        return out, report

    @abstractmethod
    def _apply_turns(self, turns: list[list[Message]]) -> list[list[Message]]:
        """Return the turns to keep (possibly with messages replaced by shortened copies)."""

    def __or__(self, other: HistoryPolicy) -> TrimPipeline:
        return TrimPipeline([self, other])


class KeepLastTurns(BaseHistoryPolicy):
    """Keep the newest ``n`` turns verbatim, plus every system/pinned turn wherever it is."""

    def __init__(self, n: int) -> None:
        self.n = _int(n, "KeepLastTurns(n)", 0)

    def __repr__(self) -> str:
        return f"KeepLastTurns({self.n})"

    def _apply_turns(self, turns: list[list[Message]]) -> list[list[Message]]:
        droppable = [i for i, t in enumerate(turns) if not is_mandatory_turn(t)]
        keep = set(droppable[max(0, len(droppable) - self.n) :]) if self.n else set()
        return [t for i, t in enumerate(turns) if i in keep or is_mandatory_turn(t)]


class TokenWindow(BaseHistoryPolicy):
    """Fit the history into ``max_tokens`` (as the chat counter counts the whole request).

    System and pinned turns are always kept; then the newest turns are kept while they
    fit, stopping at the first that does not, so the kept history has no gaps. When the
    mandatory turns alone exceed the window, :class:`~ctxkit.errors.SectionOverBudgetError`
    is raised rather than silently breaking a promise.
    """

    def __init__(self, max_tokens: int, *, counter: ChatCounter | str = "gpt-4o") -> None:
        self.max_tokens = _int(max_tokens, "TokenWindow(max_tokens)", 1)
        self.counter: ChatCounter = _counter(counter)

    def __repr__(self) -> str:
        return f"TokenWindow({self.max_tokens})"

    def _apply_turns(self, turns: list[list[Message]]) -> list[list[Message]]:
        cost = self.counter.message_tokens
        costs = [sum(cost(m) for m in t) for t in turns]
        # a leading system turn is always kept, so a template's default system prompt is not charged then
        first_role = "system" if turns and turns[0] and turns[0][0].role == "system" else None
        room = self.max_tokens - base_tokens_for(self.counter, first_role)
        mandatory = [is_mandatory_turn(t) for t in turns]
        need = sum(c for c, m in zip(costs, mandatory, strict=True) if m)
        if need > room:
            raise SectionOverBudgetError(
                "history (system and pinned messages)",
                need,
                max(room, 0),
                hint="Unpin some messages, shorten the system prompt, or raise the window.",
            )
        room -= need
        keep = list(mandatory)
        for i in range(len(turns) - 1, -1, -1):
            if mandatory[i]:
                continue
            if costs[i] > room:
                break
            keep[i] = True
            room -= costs[i]
        out = [t for t, k in zip(turns, keep, strict=True) if k]
        # Per-message counts are additive for the counters ctxkit ships; verify the whole.
        while self.counter.count_messages([m for t in out for m in t]) > self.max_tokens:
            idx = next((i for i, t in enumerate(out) if not is_mandatory_turn(t)), None)
            if idx is None:
                raise SectionOverBudgetError("history (system and pinned messages)", need, self.max_tokens)
            del out[idx]
        return out


class TruncateToolOutputs(BaseHistoryPolicy):
    """Shorten tool results longer than ``max_tokens``, with a marker saying what was cut.

    ``keep="head"`` keeps the beginning; ``"head_tail"`` keeps the beginning and the end
    (often where an error or a total is). The marker text (``marker``, with ``{cut}``,
    ``{total}`` and ``{where}`` fields) is added on top of the kept tokens. Pinned tool
    messages are left alone. Tool messages are replaced, never dropped, so the call
    structure is untouched.
    """

    def __init__(
        self,
        max_tokens: int,
        *,
        keep: Literal["head", "head_tail"] = "head_tail",
        tokenizer: Tokenizer | str = "gpt-4o",
        marker: str = DEFAULT_MARKER,
    ) -> None:

        _int(max_tokens, "TruncateToolOutputs(max_tokens)", 1)
        if keep not in ("head", "head_tail"):
            raise InvalidInputError(f"keep must be 'head' or 'head_tail', not {keep!r}")
        if not isinstance(marker, str):
            raise InvalidInputError(f"marker must be a str, not {type(marker).__name__}")
        try:  # checked now, not when the first long tool output is cut
            marker.format(cut=1, total=2, where="")
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            raise InvalidInputError(
                f"marker {marker!r} is not a valid template ({type(exc).__name__}: {exc}); it may use only "
                "{cut}, {total} and {where}, and literal braces must be doubled ({{ and }})"
            ) from None
        if not isinstance(tokenizer, str | Tokenizer):
            raise InvalidInputError(f"tokenizer must be a name or a Tokenizer, not {type(tokenizer).__name__}")
        self.max_tokens = max_tokens
        self.keep = keep
        self.tokenizer = get_tokenizer(tokenizer)
        self.marker = marker

    def __repr__(self) -> str:
        return f"TruncateToolOutputs({self.max_tokens}, keep={self.keep!r})"

    def truncate_text(self, text: str) -> str:
        """``text`` itself when short enough, else its kept part(s) joined by the marker."""
        tok = self.tokenizer
        if tok.count(text) <= self.max_tokens:
            return text
        ids = tok.encode(text)
        total = len(ids)
        cut = total - self.max_tokens
        if self.keep == "head":
            head = tok.decode(ids[: self.max_tokens])
            note = self.marker.format(cut=cut, total=total, where=" at the end")
            return f"{head}\n{note}"
        n_head = (self.max_tokens + 1) // 2
        n_tail = self.max_tokens - n_head
        head = tok.decode(ids[:n_head])
        tail = tok.decode(ids[total - n_tail :]) if n_tail else ""
        note = self.marker.format(cut=cut, total=total, where=" in the middle")
        return f"{head}\n{note}\n{tail}" if tail else f"{head}\n{note}"

    def _apply_turns(self, turns: list[list[Message]]) -> list[list[Message]]:
        out: list[list[Message]] = []
        for t in turns:
            new_t: list[Message] = []
            for m in t:
                if m.role == "tool" and not m.pinned:
                    text = self.truncate_text(m.content)
                    if text != m.content:
                        m = m.model_copy(update={"content": text})
                new_t.append(m)
            out.append(new_t)
        return out


class CompressOlderTurns(BaseHistoryPolicy):
    """Compress the text of older messages with any compressor; the newest turns stay verbatim.

    ``compressor`` is a :class:`~ctxkit.compress.TextCompressor` — the built-in
    :class:`~ctxkit.compress.TokenPruner` (LLMLingua-style token pruning), the
    :class:`~ctxkit.compress.LLMLinguaCompressor` adapter, a sentence filter. Messages of
    ``roles`` in all but the newest ``keep_last`` turns whose text is at least ``min_chars``
    long are compressed to about ``rate``. Only ``content`` changes: roles, names, tool calls
    and ``tool_call_id`` stay, so the tool-call structure remains valid; system/developer and
    pinned messages are never altered.

    Each message is compressed on its own and the result is remembered (``memo_size``
    messages), so a message's compressed form never changes once made: the compressed
    older history is a stable, cacheable prefix that only grows as turns age, and applying
    the policy on every call costs one compression per newly aged message.
    """

    def __init__(
        self,
        compressor: TextCompressor,
        *,
        rate: float = 0.5,
        keep_last: int = 4,
        roles: Collection[str] = ("user", "assistant", "tool"),
        min_chars: int = 200,
        memo_size: int = 4096,
    ) -> None:

        if not callable(getattr(compressor, "compress", None)):
            raise InvalidInputError(f"{compressor!r} is not a compressor (it needs a compress(text, rate=) method)")
        _int(keep_last, "keep_last", 0)
        _int(min_chars, "min_chars", 0)
        _int(memo_size, "memo_size", 0)
        if isinstance(roles, str):
            roles = (roles,)
        if not isinstance(roles, Iterable) or not all(isinstance(r, str) for r in roles):
            raise InvalidInputError("roles must be a list of role names (user, assistant, tool)")
        unknown = set(roles) - {"user", "assistant", "tool"}
        if unknown:
            raise InvalidInputError(
                f"roles {sorted(unknown)} cannot be compressed; choose from user, assistant, tool "
                "(system and developer messages are never altered)"
            )
        self.compressor = compressor
        self.rate = check_rate(rate)
        self.keep_last = keep_last
        self.roles = frozenset(roles)
        self.min_chars = min_chars
        self._memo: LRUCache[tuple[str, str], str] = LRUCache(memo_size)

    def __repr__(self) -> str:
        return f"CompressOlderTurns({self.compressor!r}, rate={self.rate}, keep_last={self.keep_last})"

    def compress_text(self, role: str, text: str) -> str:
        """The compressed form of one message's text (remembered, so always the same)."""
        key = (role, text)
        hit = self._memo.get(key)
        if hit is None:
            hit = self.compressor.compress(text, rate=self.rate).text
            self._memo.put(key, hit)
        return hit

    def _apply_turns(self, turns: list[list[Message]]) -> list[list[Message]]:
        older = len(turns) - self.keep_last
        out: list[list[Message]] = []
        for i, t in enumerate(turns):
            if i >= older:
                out.append(t)
                continue
            new_t: list[Message] = []
            for m in t:
                if (
                    m.role in self.roles
                    and not m.pinned
                    and len(m.content) >= max(self.min_chars, 1)
                    and m.content.strip()
                ):
                    text = self.compress_text(m.role, m.content)
                    if text != m.content:
                        m = m.model_copy(update={"content": text})
                new_t.append(m)
            out.append(new_t)
        return out


class TrimPipeline(BaseHistoryPolicy):
    """Several policies in order; itself a policy."""

    def __init__(self, policies: Sequence[HistoryPolicy]) -> None:
        if isinstance(policies, str | bytes | Mapping) or not isinstance(policies, Iterable):
            raise InvalidInputError(f"TrimPipeline takes a list of history policies, not {type(policies).__name__}")
        flat: list[HistoryPolicy] = []
        for p in policies:  # nested pipelines are flattened
            if not isinstance(p, HistoryPolicy):
                raise InvalidInputError(f"{p!r} is not a history policy (it needs an apply(history) method)")
            flat.extend(p.policies if isinstance(p, TrimPipeline) else [p])
        self.policies: list[HistoryPolicy] = flat

    def __repr__(self) -> str:
        return f"TrimPipeline({self.policies!r})"

    def _apply_turns(self, turns: list[list[Message]]) -> list[list[Message]]:
        history = [m for t in turns for m in t]
        for p in self.policies:
            history = p.apply(history)
        return group_turns(history)
