"""CtxkitAgentMiddleware inside real LangChain v1 ``create_agent`` loops."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field

pytest.importorskip("langchain.agents")

from langchain.agents import create_agent
from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool

from ctxkit.agents import STUB_PREFIX, EditPolicy, MemoryOffloadStore
from ctxkit.assembly import group_turns
from ctxkit.datasets import essays
from ctxkit.integrations.langchain import to_ctxkit_messages
from ctxkit.integrations.langchain_agents import CtxkitAgentMiddleware

STUB_ID = re.compile(r"id=([0-9a-f]{12})")


class Scripted(BaseChatModel):
    """A chat model that replays a fixed list of replies and keeps every request it got (for unit tests)."""

    replies: list[AIMessage]
    seen: list[list[BaseMessage]] = Field(default_factory=list)
    settings: list[dict[str, Any]] = Field(default_factory=list)
    kind: str = "scripted"

    @property
    def _llm_type(self) -> str:
        return self.kind

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        return self.bind(**kwargs)

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        self.seen.append(list(messages))
        self.settings.append(dict(kw))
        return ChatResult(generations=[ChatGeneration(message=self.replies[len(self.seen) - 1])])


def _files(tmp: Path, low: int = 2000, high: int = 9000) -> dict[str, str]:
    texts = {k: v for k, v in sorted(essays().items()) if low < len(v) < high}
    for k, v in texts.items():
        (tmp / f"{k}.txt").write_text(v, encoding="utf-8")
    return texts


def _tools(root: Path) -> list[Any]:
    @tool
    def list_files() -> str:
        """List the essay files."""
        return "\n".join(sorted(p.name for p in root.glob("*.txt")))

    @tool
    def read_file(name: str) -> str:
        """Return the whole text of one essay file (the closest file name when the name is not exact)."""
        names = sorted(p.name for p in root.glob("*.txt"))
        wanted = Path(name).name
        if wanted not in names:  # a forgiving tool, as agents' file tools often are: the closest name
            wanted = (difflib.get_close_matches(wanted, names, n=1, cutoff=0.0) or names[:1])[0]
        return (root / wanted).read_text(encoding="utf-8")

    @tool
    def grep(pattern: str) -> str:
        """Return the whole text of every essay file that contains the pattern (case-insensitive)."""
        hits = [p for p in sorted(root.glob("*.txt")) if pattern.lower() in p.read_text(encoding="utf-8").lower()]
        return "\n\n".join(f"== {p.name} ==\n{p.read_text(encoding='utf-8')}" for p in hits[:1]) or "no match"

    return [list_files, read_file, grep]


def _call(i: int, tool_name: str, **args: Any) -> dict[str, Any]:
    return {"name": tool_name, "args": args, "id": f"call_{i}", "type": "tool_call"}


def test_middleware_edits_requests_not_state_and_expands_exactly(tmp_path: Path) -> None:
    texts = _files(tmp_path)
    names = list(texts)[:8]
    replies = [AIMessage("", tool_calls=[_call(0, "list_files"), _call(1, "read_file", name=f"{names[0]}.txt")])]
    replies += [AIMessage("", tool_calls=[_call(i + 2, "read_file", name=f"{n}.txt")]) for i, n in enumerate(names[1:])]
    replies.append(AIMessage("done"))
    model = Scripted(replies=replies, seen=[], settings=[], kind="anthropic-chat")
    mw = CtxkitAgentMiddleware(
        EditPolicy(clear_trigger_tokens=3000, keep_tool_uses=1, price_edits=False), store=MemoryOffloadStore()
    )
    agent = create_agent(model, tools=_tools(tmp_path), middleware=[mw], system_prompt="Read the files.")
    out = agent.invoke({"messages": [{"role": "user", "content": "Read every file."}]})
    state = out["messages"]
    # the agent state keeps every tool result whole: the edit is on the request only
    results = [m for m in state if isinstance(m, ToolMessage)]
    assert len(results) == 9 and not any(str(m.content).startswith(STUB_PREFIX) for m in results)
    assert any(r.cleared for r in mw.reports)
    last = model.seen[-1]
    group_turns(to_ctxkit_messages(last))  # structurally valid: no orphan, no unanswered call
    stubs = [m for m in last if isinstance(m, ToolMessage) and str(m.content).startswith(STUB_PREFIX)]
    assert len(stubs) >= 7
    by_id = {m.tool_call_id: m.content for m in results}
    expand = next(t for t in mw.tools if t.name == "expand")
    for s in stubs:  # the registered expand tool gives back the exact original
        assert expand.invoke({"id": STUB_ID.search(str(s.content)).group(1)}) == by_id[s.tool_call_id]  # type: ignore[union-attr]
    assert str(last[-1].content) == by_id[last[-1].tool_call_id]  # type: ignore[union-attr]  # newest kept verbatim
    # prompt-cache marks for Anthropic models
    assert model.settings[-1]["cache_control"] == {"type": "ephemeral", "ttl": "5m"}
    assert {t.name for t in mw.tools} == {"expand", "search_offloaded"}


def test_thinking_blocks_are_cleared_from_older_ai_messages() -> None:
    from langchain_core.messages import HumanMessage

    think = [{"type": "thinking", "thinking": "long thoughts " * 200, "signature": "s"}]
    msgs: list[Any] = [HumanMessage("q")]
    for i in range(3):
        msgs.append(
            AIMessage([*think, {"type": "text", "text": f"step {i}"}], tool_calls=[_call(i, "grep", pattern="x")])
        )
        msgs.append(ToolMessage("r" * 50, tool_call_id=f"call_{i}"))
    model = Scripted(replies=[], seen=[], settings=[])
    mw = CtxkitAgentMiddleware(EditPolicy(clear_trigger_tokens=100, keep_thinking=1, price_edits=False), tools=False)
    request = ModelRequest(model=model, messages=msgs, tools=[])
    edited = mw.edit(request)
    kinds = [[b["type"] for b in m.content] for m in edited.messages if isinstance(m, AIMessage)]
    assert kinds == [["text"], ["text"], ["thinking", "text"]]
    assert edited.messages[-1] is msgs[-1] and edited.messages[-2] is msgs[-2]  # untouched objects pass through
    assert mw.reports[-1].thinking_cleared == 2
    assert "cache_control" not in edited.model_settings  # not an Anthropic model


class ForceTools(AgentMiddleware):  # type: ignore[type-arg]
    """Makes the model call a tool on its first ``n`` calls, then answer; keeps what each request held."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        self.requests: list[ModelRequest[Any]] = []

    def wrap_model_call(self, request: ModelRequest[Any], handler: Any) -> ModelResponse[Any]:
        self.requests.append(request)
        # forced calls for n steps, then none: the small model would otherwise keep calling tools. Each step
        # names the tool (list_files, then read_file / grep in turn): left to choose, SmolLM2 only lists files
        step = len(self.requests)
        if step <= self.n:
            name = "list_files" if step == 1 else ("grep" if step % 4 == 0 else "read_file")
            request = request.override(tool_choice=name)
        else:
            request = request.override(tool_choice="none")
        return handler(request)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def local_chat() -> Any:
    pytest.importorskip("llama_cpp")
    from ctxkit.dispatch import Dispatcher, LlamaCppBackend
    from ctxkit.integrations.langchain import ChatCtxkit

    backend = LlamaCppBackend.from_path(None, n_ctx=WINDOW)
    return ChatCtxkit(model="local", dispatcher=Dispatcher({"local": backend}), max_tokens=REPLY)


WINDOW = 4096
REPLY = 40


@pytest.mark.model
@pytest.mark.slow
def test_real_local_agent_loop_30_steps(tmp_path: Path, local_chat: Any) -> None:
    """SmolLM2 calls list_files / read_file / grep over real essays for 30+ steps through create_agent."""
    from ctxkit.tokenizers import get_chat_counter

    texts = _files(tmp_path, 1000, 3000)
    counter = get_chat_counter("gguf:default")
    policy = EditPolicy(
        clear_trigger_tokens=1500, keep_tool_uses=1, max_input_tokens=WINDOW - REPLY - 128, remaining_calls=30
    )
    mw = CtxkitAgentMiddleware(policy, counter=counter)
    force = ForceTools(30)
    agent = create_agent(
        local_chat,
        tools=_tools(tmp_path),
        middleware=[mw, force],
        system_prompt="You answer questions about essays. Use the tools to list, grep and read the files.",
    )
    out = agent.invoke(
        {"messages": [{"role": "user", "content": "Read the essays one by one and say which one is about Lisp."}]},
        {"recursion_limit": 200},
    )
    state = out["messages"]
    assert len(force.requests) >= 31  # 30 forced tool steps and the answer
    # (the local backend's call ids hash position and arguments, so a repeated call repeats its id: count messages)
    assert sum(isinstance(m, ToolMessage) for m in state) >= 30
    tool_results = {m.tool_call_id: str(m.content) for m in state if isinstance(m, ToolMessage)}
    assert any(t in texts.values() for t in tool_results.values())  # whole real files came back
    assert any(r.cleared for r in mw.reports)
    expand = next(t for t in mw.tools if t.name == "expand")
    stubs_seen = 0
    for request, report in zip(force.requests, mw.reports, strict=True):
        sent = to_ctxkit_messages([*([request.system_message] if request.system_message else []), *request.messages])
        group_turns(sent)  # never structurally invalid
        assert report.tokens_out <= policy.max_input_tokens  # type: ignore[operator]
        assert counter.count_messages(sent, report_tools(request)) == report.tokens_out  # what was sent, counted
        for m in request.messages:
            if isinstance(m, ToolMessage) and str(m.content).startswith(STUB_PREFIX):
                stubs_seen += 1
                key = STUB_ID.search(str(m.content)).group(1)  # type: ignore[union-attr]
                assert expand.invoke({"id": key}) == tool_results[m.tool_call_id]
    assert stubs_seen > 0
    assert isinstance(state[-1], AIMessage) and not state[-1].tool_calls


def report_tools(request: ModelRequest[Any]) -> list[Any]:
    from ctxkit.integrations.langchain import _tool_spec

    return [_tool_spec(t) for t in request.tools]
