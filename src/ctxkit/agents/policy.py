"""Context editing for tool-heavy agent loops.

An agent loop resends its whole history on every model call, and tool results (whole
files, web pages, query results) soon dominate it. :class:`AgentContext` edits what is
sent, the way Anthropic's server-side context editing does, but provider-neutrally and
reversibly:

* **offload and clear stale tool results** — once the request passes
  ``EditPolicy.clear_trigger_tokens``, every tool result but those of the newest
  ``keep_tool_uses`` calls (and of tools listed in ``never_clear``) is written to a
  content-addressed :class:`~ctxkit.agents.OffloadStore` and replaced by a stub naming
  its id, tool, token count, head and tail. The model gets the exact text back with the
  ``expand`` tool (:meth:`AgentContext.expand`) or finds lines with ``search_offloaded``;
* **clear old thinking** — ``<think>...</think>`` blocks of all but the newest
  ``keep_thinking`` assistant messages go in the same batch;
* **batches on a priced cadence** — an edit rewrites the request from the first edited
  message on, so the provider's cached prefix breaks there. A batch happens only when it
  saves at least ``clear_at_least`` tokens and, priced with the cache planner
  (:func:`ctxkit.cache.decide_compaction`: a cache write of the rewritten tail against the
  tokens saved over the ``remaining_calls`` expected), pays for the re-write. Between
  batches the request only grows at its end, so the prefix stays byte-stable;
* **compaction** — past ``compact_trigger_tokens`` and with a summarizer, the oldest
  turns become an appended summary epoch of :class:`~ctxkit.compress.CompactingHistory`;
* **the window** — with ``max_input_tokens`` the request never passes it: edits are
  forced (cost aside), then compaction, and if it still cannot fit
  :class:`~ctxkit.errors.SectionOverBudgetError` is raised. Nothing is sent over budget.

Edits are **sticky**: the context remembers each one and applies it again on the next
call, so frameworks that pass their full, unedited history every time (LangChain,
the OpenAI Agents SDK) still send a stable prefix. Edits only replace message contents
or drop whole turns, so a tool call is never separated from its result and the results
of one parallel call are always edited together.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ConfigDict, Field, model_validator

from ctxkit._model import CtxkitModel
from ctxkit.agents.store import FileOffloadStore, OffloadStore, content_id, search_offloaded
from ctxkit.assembly import group_turns
from ctxkit.cache.compaction import decide_compaction
from ctxkit.cache.prices import CachePrices, prices_for
from ctxkit.cache.rules import CacheRules, rules_for
from ctxkit.compress.compaction import CompactingHistory, CompactionTrigger
from ctxkit.compress.summarize import Summarizer
from ctxkit.errors import InvalidInputError, SectionOverBudgetError
from ctxkit.messages import Message, ToolSpec, canonical_json
from ctxkit.tokenizers import ChatCounter, Tokenizer, get_chat_counter, get_tokenizer

__all__ = [
    "EXPAND_TOOL",
    "SEARCH_TOOL",
    "STUB_PREFIX",
    "AgentContext",
    "EditPolicy",
    "EditReport",
    "PreparedContext",
    "strip_thinking",
]

STUB_PREFIX = "[ctxkit offloaded tool result"
_THINK = re.compile(r"<think>.*?</think>\s*", re.DOTALL)

EXPAND_TOOL = ToolSpec(
    name="expand",
    description=(
        "Get back the exact full text of an offloaded tool result. Pass the id shown in a "
        "'[ctxkit offloaded tool result ...]' stub."
    ),
    parameters={
        "type": "object",
        "properties": {"id": {"type": "string", "description": "the id from the stub"}},
        "required": ["id"],
    },
)
SEARCH_TOOL = ToolSpec(
    name="search_offloaded",
    description="Find lines in offloaded tool results that contain every word of the query; returns id, line, text.",
    parameters={
        "type": "object",
        "properties": {"query": {"type": "string", "description": "words to look for"}},
        "required": ["query"],
    },
)


def strip_thinking(text: str) -> str:
    """``text`` without its ``<think>...</think>`` blocks."""
    return _THINK.sub("", text)


class EditPolicy(CtxkitModel):
    """What :class:`AgentContext` edits and when. All token figures are input tokens of the whole request."""

    model_config = ConfigDict(frozen=True)

    clear_trigger_tokens: int = Field(default=20_000, ge=0, description="clear stale tool results above this")
    keep_tool_uses: int = Field(default=3, ge=0, description="newest tool results always kept verbatim")
    clear_at_least: int = Field(default=0, ge=0, description="a batch must save at least this many tokens")
    never_clear: tuple[str, ...] = Field(default=(), description="tools whose results are never cleared")
    min_result_tokens: int = Field(default=100, ge=1, description="smaller results are not worth a stub")
    stub_head_tokens: int = Field(default=48, ge=0)
    stub_tail_tokens: int = Field(default=24, ge=0)
    keep_thinking: int = Field(default=1, ge=0, description="assistant messages (newest) that keep <think> blocks")
    compact_trigger_tokens: int | None = Field(
        default=None, gt=0, description="compact above this (needs a summarizer)"
    )
    keep_last_turns: int = Field(default=1, ge=0, description="turns compaction never summarizes")
    summary_tokens: int = Field(default=200, gt=0)
    max_input_tokens: int | None = Field(default=None, gt=0, description="hard ceiling: the window minus the reply")
    remaining_calls: int = Field(default=20, ge=0, description="calls expected after this one, to price a batch")
    price_edits: bool = Field(default=True, description="gate each batch on the cache planner's price")

    @model_validator(mode="before")
    @classmethod
    def _default_trigger(cls, data: Any) -> Any:
        # without an explicit trigger, a ceiling lowers the default to 3/4 of it
        if isinstance(data, dict) and data.get("clear_trigger_tokens") is None:
            ceiling = data.get("max_input_tokens")
            data = {k: v for k, v in data.items() if k != "clear_trigger_tokens"}
            if isinstance(ceiling, int) and not isinstance(ceiling, bool) and ceiling > 0:
                data["clear_trigger_tokens"] = min(20_000, ceiling * 3 // 4)
        return data

    @model_validator(mode="after")
    def _check(self) -> EditPolicy:
        if self.max_input_tokens is not None and self.clear_trigger_tokens > self.max_input_tokens:
            raise ValueError("clear_trigger_tokens must not exceed max_input_tokens (the hard ceiling)")
        return self


class EditReport(CtxkitModel):
    """What one :meth:`AgentContext.prepare` call did."""

    model_config = ConfigDict(frozen=True)

    tokens_in: int = Field(description="the unedited history as the framework passed it")
    tokens_out: int = Field(description="the edited request")
    cleared: int = Field(default=0, description="tool results offloaded by this call")
    thinking_cleared: int = 0
    compacted: bool = False
    forced: bool = Field(default=False, description="edits forced by max_input_tokens, price aside")
    first_changed: int | None = Field(default=None, description="index of the first message this call rewrote")
    reason: str = ""


class PreparedContext(CtxkitModel):
    """The request to send: ``messages``, and for each the index of the input message it stands for."""

    model_config = ConfigDict(frozen=True)

    messages: tuple[Message, ...]
    origin: tuple[int | None, ...] = Field(description="input index per message; None for a summary epoch")
    report: EditReport


def _fingerprint(m: Message) -> str:
    return hashlib.sha256(canonical_json(m.model_dump(mode="json")).encode("utf-8")).hexdigest()


class AgentContext:
    """Stateful, sticky context editing for one agent conversation (see the module docstring).

    Call :meth:`prepare` with the full history before every model call and send what it
    returns. ``store`` keeps offloaded results (default: a :class:`FileOffloadStore` in a new
    temporary directory); ``counter`` counts tokens (a model name or a ChatCounter);
    ``pricing_model`` names the model whose cache prices and rules price a batch;
    ``summarizer`` enables compaction.
    """

    def __init__(
        self,
        policy: EditPolicy | None = None,
        *,
        store: OffloadStore | None = None,
        counter: ChatCounter | str = "gpt-4o",
        tokenizer: Tokenizer | str | None = None,
        summarizer: Summarizer | None = None,
        pricing_model: str = "claude-sonnet-4-5",
        prices: CachePrices | None = None,
        rules: CacheRules | None = None,
    ) -> None:
        self.policy = policy if policy is not None else EditPolicy()
        if not isinstance(self.policy, EditPolicy):
            raise InvalidInputError(f"policy must be an EditPolicy, not {type(policy).__name__}")
        if store is not None and not isinstance(store, OffloadStore):
            raise InvalidInputError(f"{store!r} is not an offload store (it needs put, get and ids)")
        if summarizer is not None and not isinstance(summarizer, Summarizer):
            raise InvalidInputError(f"{summarizer!r} is not a summarizer (it needs summarize and asummarize)")
        self.store: OffloadStore = store if store is not None else FileOffloadStore()
        self.counter: ChatCounter = get_chat_counter(counter) if isinstance(counter, str) else counter
        self.tokenizer: Tokenizer = get_tokenizer(tokenizer) if tokenizer is not None else self.counter.tokenizer
        self.summarizer = summarizer
        self.prices = prices or prices_for(pricing_model)
        self.rules = rules or rules_for(pricing_model)
        self._tok_memo: dict[str, int] = {}
        self.reset()

    def __repr__(self) -> str:
        return (
            f"AgentContext(calls={self.calls}, edits={len(self._edits)}, epochs={len(self._history.epochs)}, "
            f"store={self.store!r})"
        )

    def reset(self) -> None:
        """Forget every edit (the store keeps its results)."""
        self._fps: list[str] = []
        self._edits: dict[int, Message] = {}
        self._summarized: set[int] = set()
        trigger = CompactionTrigger(max_tokens=self.policy.compact_trigger_tokens or 10**12)
        self._history = CompactingHistory(
            self.summarizer or _NoSummarizer(),
            trigger,
            keep_last_turns=self.policy.keep_last_turns,
            summary_tokens=self.policy.summary_tokens,
            counter=self.counter,
        )
        self._last_sent: list[str] = []
        self.calls = 0
        self._first_tokens: int | None = None

    # ------------------------------------------------------------------ tools
    @property
    def tools(self) -> tuple[ToolSpec, ToolSpec]:
        """The ``expand`` and ``search_offloaded`` tools to offer the model."""
        return (EXPAND_TOOL, SEARCH_TOOL)

    def expand(self, id: str) -> str:
        """The exact text of an offloaded tool result (full id or unique prefix)."""
        return self.store.get(id)

    def search(self, query: str, *, max_hits: int = 20) -> str:
        """Matching lines of offloaded results, one ``id:line: text`` per line."""
        hits = search_offloaded(self.store, query, max_hits=max_hits)
        if not hits:
            return f"no offloaded result has a line with all of: {query}"
        return "\n".join(f"{h.id[:12]}:{h.line}: {h.text}" for h in hits)

    def call_tool(self, name: str, arguments: Mapping[str, Any]) -> str:
        """Run ``expand`` or ``search_offloaded`` from a model's tool call."""
        if name == EXPAND_TOOL.name:
            return self.expand(str(arguments.get("id", "")))
        if name == SEARCH_TOOL.name:
            return self.search(str(arguments.get("query", "")))
        raise InvalidInputError(f"{name!r} is not a ctxkit agent tool; these are 'expand' and 'search_offloaded'")

    # ------------------------------------------------------------------ counting
    def _tokens(self, m: Message) -> int:
        key = _fingerprint(m)
        n = self._tok_memo.get(key)
        if n is None:
            n = self.counter.message_tokens(m)
            if len(self._tok_memo) > 100_000:
                self._tok_memo.clear()
            self._tok_memo[key] = n
        return n

    def _total(self, msgs: Sequence[Message], tools: Sequence[ToolSpec]) -> int:
        return self.counter.count_messages(list(msgs), tools)

    # ------------------------------------------------------------------ stubs
    def stub(self, key: str, tool: str, text: str, *, head_tail: bool = True) -> str:
        """The text left in place of an offloaded result (``head_tail=False``: id, tool and size only)."""
        tok = self.tokenizer
        ids = tok.encode(text)
        head_n, tail_n = (self.policy.stub_head_tokens, self.policy.stub_tail_tokens) if head_tail else (0, 0)
        head = tok.decode(ids[:head_n]) if head_n else ""
        tail = tok.decode(ids[max(head_n, len(ids) - tail_n) :]) if tail_n and len(ids) > head_n else ""
        lines = [
            f'{STUB_PREFIX}: id={key[:12]} tool={tool} tokens={len(ids)}. Call expand(id="{key[:12]}") for the exact '
            "full text.]"
        ]
        if head:
            lines.append(f"head: {head}")
        if tail:
            lines.append(f"... tail: {tail}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ main
    def _view(self, history: list[Message]) -> tuple[list[Message], list[int]]:
        """The edited, not yet summarized messages with their input indices."""
        msgs: list[Message] = []
        origin: list[int] = []
        for i, m in enumerate(history):
            if i in self._summarized:
                continue
            msgs.append(self._edits.get(i, m))
            origin.append(i)
        return msgs, origin

    def _render(self, history: list[Message]) -> tuple[list[Message], list[int | None]]:
        view, origin = self._view(history)
        n_head = 0
        while n_head < len(view) and view[n_head].role in ("system", "developer") and origin[n_head] == n_head:
            n_head += 1
        epochs = self._history.summary_messages()
        msgs = [*view[:n_head], *epochs, *view[n_head:]]
        orig: list[int | None] = [*origin[:n_head], *([None] * len(epochs)), *origin[n_head:]]
        return msgs, orig

    def _candidates(self, history: list[Message], keep: int) -> list[list[int]]:
        """Groups (one per assistant step) of input indices of tool results that may be cleared."""
        names: dict[str, str] = {}
        steps: list[list[int]] = []
        current: list[int] | None = None
        for i, m in enumerate(history):
            if m.role == "assistant" and m.tool_calls:
                for c in m.tool_calls:
                    names[c.id] = c.name
                current = []
                steps.append(current)
            elif m.role == "tool" and current is not None and i not in self._summarized:
                current.append(i)
            elif m.role != "tool":
                current = None
        # protect the steps holding the newest `keep` tool results: a parallel batch is kept or cleared whole
        protected: set[int] = set()
        seen = 0
        for step in reversed(steps):
            if seen >= keep:
                break
            protected.update(step)
            seen += len(step)
        out: list[list[int]] = []
        for step in steps:
            if not step or any(i in protected for i in step):
                continue
            group = []
            for i in step:
                m = history[i]
                tool = names.get(m.tool_call_id or "", "")
                if (
                    i in self._edits
                    or m.pinned
                    or tool in self.policy.never_clear
                    or self._tokens(m) < self.policy.min_result_tokens
                ):
                    continue
                group.append(i)
            if group:
                out.append(group)
        return out

    def _stub_message(self, history: list[Message], i: int) -> Message:
        m = history[i]
        return m.model_copy(
            update={"content": self.stub(content_id(m.content), self._tool_name(history, i), m.content)}
        )

    def _offload(self, text: str) -> None:
        key = self.store.put(text)
        if key != content_id(text):
            raise InvalidInputError(f"{self.store!r} returned id {key!r}, not the sha256 of the text it stored")

    def _tool_name(self, history: list[Message], i: int) -> str:
        call_id = history[i].tool_call_id
        for m in reversed(history[:i]):
            for c in m.tool_calls:
                if c.id == call_id:
                    return c.name
        return "tool"

    def _thinking_candidates(self, view: list[Message], origin: list[int]) -> list[int]:
        assistants = [k for k, m in enumerate(view) if m.role == "assistant"]
        keep = set(assistants[len(assistants) - self.policy.keep_thinking :]) if self.policy.keep_thinking else set()
        return [origin[k] for k in assistants if k not in keep and "<think>" in view[k].content]

    def _price_ok(self, history: list[Message], tools: Sequence[ToolSpec], first: int, saved: int) -> tuple[bool, str]:
        msgs, orig = self._render(history)
        pos = next((k for k, o in enumerate(orig) if o is not None and o >= first), len(msgs))
        kept = self._total(msgs[:pos], tools)
        total = self._total(msgs, tools)
        growth = 0
        if self._first_tokens is not None and self.calls:
            growth = max(0, (total - self._first_tokens) // max(self.calls, 1))
        decision = decide_compaction(
            kept_tokens=kept,
            history_tokens=max(total - kept, 0),
            compacted_tokens=max(total - kept - saved, 0),
            remaining_turns=self.policy.remaining_calls,
            tokens_per_turn=growth,
            prices=self.prices,
            rules=self.rules,
        )
        return decision.compact, decision.reason

    def prepare(self, history: Sequence[Message], tools: Sequence[ToolSpec] = ()) -> PreparedContext:
        """The edited request for this model call (see the module docstring)."""
        if isinstance(history, str | bytes | Mapping):
            raise InvalidInputError("prepare() takes the list of ctxkit Messages of the conversation")
        hist = list(history)
        group_turns(hist)  # validates the tool structure; raises on an orphan or an unanswered call
        fps = [_fingerprint(m) for m in hist]
        if fps[: len(self._fps)] != self._fps:
            self.reset()  # the framework rewrote history (a new thread, or its own summary): start over
        self._fps = fps
        pol = self.policy
        tokens_in = self._total(hist, tools)
        msgs, orig = self._render(hist)
        tokens = self._total(msgs, tools)
        if self._first_tokens is None:
            self._first_tokens = tokens
        cleared = thinking = 0
        compacted = forced = False
        first_changed: int | None = None
        reason = "under the trigger: nothing edited"
        over = pol.max_input_tokens is not None and tokens > pol.max_input_tokens

        if tokens > pol.clear_trigger_tokens or over:
            groups = self._candidates(hist, pol.keep_tool_uses)
            view, vorig = self._view(hist)
            think = self._thinking_candidates(view, vorig)
            todo = [i for g in groups for i in g]
            stubs = {i: self._stub_message(hist, i) for i in todo}
            slim = {i: self._edits.get(i, hist[i]) for i in think}
            slim = {i: m.model_copy(update={"content": strip_thinking(m.content)}) for i, m in slim.items()}
            saved = sum(self._tokens(hist[i]) - self._tokens(stubs[i]) for i in todo)
            saved += sum(self._tokens(self._edits.get(i, hist[i])) - self._tokens(m) for i, m in slim.items())
            if todo or think:
                first = min([*todo, *think])
                ok, reason = (True, "over max_input_tokens: edits forced") if over else (True, "")
                if not over:
                    if saved < pol.clear_at_least:
                        ok, reason = False, f"a batch would save {saved} < clear_at_least={pol.clear_at_least} tokens"
                    elif pol.price_edits:
                        ok, reason = self._price_ok(hist, tools, first, saved)
                if ok:
                    forced = over
                    for i in todo:
                        self._offload(hist[i].content)
                        self._edits[i] = stubs[i]
                    self._edits.update(slim)
                    cleared, thinking = len(todo), len(think)
                    first_changed = first
            msgs, orig = self._render(hist)
            tokens = self._total(msgs, tools)
            over = pol.max_input_tokens is not None and tokens > pol.max_input_tokens
            if over:  # still over: clear everything but the newest step
                groups = self._candidates(hist, 1)
                todo = [i for g in groups for i in g]
                for i in todo:
                    self._offload(hist[i].content)
                    self._edits[i] = self._stub_message(hist, i)
                if todo:
                    cleared += len(todo)
                    forced = True
                    first_changed = min([first_changed, *todo] if first_changed is not None else todo)
                msgs, orig = self._render(hist)
                tokens = self._total(msgs, tools)
            if pol.max_input_tokens is not None and tokens > pol.max_input_tokens:
                # stubs pile up in a long single-turn loop: shrink them to id, tool and size (still expandable)
                short = [i for i, m in self._edits.items() if m.role == "tool" and "\nhead: " in m.content]
                for i in short:
                    key = content_id(hist[i].content)
                    self._edits[i] = hist[i].model_copy(
                        update={"content": self.stub(key, self._tool_name(hist, i), hist[i].content, head_tail=False)}
                    )
                if short:
                    forced = True
                    first_changed = min([first_changed, *short] if first_changed is not None else short)
                    msgs, orig = self._render(hist)
                    tokens = self._total(msgs, tools)

        want_compact = self.summarizer is not None and pol.compact_trigger_tokens is not None
        over = pol.max_input_tokens is not None and tokens > pol.max_input_tokens
        wanted = (want_compact and tokens > (pol.compact_trigger_tokens or 0)) or (over and self.summarizer is not None)
        if wanted and self._compact(hist, force=over):
            compacted = True
            forced = forced or over
            msgs, orig = self._render(hist)
            tokens = self._total(msgs, tools)
            reason = (reason + "; " if reason else "") + "compacted older turns into a summary epoch"

        if pol.max_input_tokens is not None and tokens > pol.max_input_tokens:
            raise SectionOverBudgetError(
                "agent context",
                tokens,
                pol.max_input_tokens,
                hint=(
                    "The newest step alone does not fit: lower keep_tool_uses, give AgentContext a summarizer "
                    "(compaction), or raise max_input_tokens."
                ),
            )
        self.calls += 1
        report = EditReport(
            tokens_in=tokens_in,
            tokens_out=tokens,
            cleared=cleared,
            thinking_cleared=thinking,
            compacted=compacted,
            forced=forced,
            first_changed=first_changed,
            reason=reason,
        )
        return PreparedContext(messages=tuple(msgs), origin=tuple(orig), report=report)

    def _compact(self, hist: list[Message], *, force: bool) -> bool:
        view, origin = self._view(hist)
        n_head = 0
        while n_head < len(view) and view[n_head].role in ("system", "developer") and origin[n_head] == n_head:
            n_head += 1
        ch = self._history
        ch.head = view[:n_head]
        ch.live = view[n_head:]
        ids = {id(m): o for m, o in zip(view[n_head:], origin[n_head:], strict=True)}
        epoch = ch.compact() if force else ch.maybe_compact()
        if epoch is None:
            return False
        kept = {ids[id(m)] for m in ch.live}
        self._summarized.update(o for o in origin[n_head:] if o not in kept)
        return True


class _NoSummarizer:
    """Placeholder when compaction is off (never called)."""

    def summarize(self, messages: Sequence[Message], *, previous: str = "", max_tokens: int = 256) -> str:
        raise InvalidInputError("compaction needs a summarizer: pass AgentContext(summarizer=...)")

    async def asummarize(self, messages: Sequence[Message], *, previous: str = "", max_tokens: int = 256) -> str:
        return self.summarize(messages, previous=previous, max_tokens=max_tokens)
