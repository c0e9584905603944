"""The ``ctxkit`` command line (extra ``cli``).

ctxkit count FILE... [--model gpt-4o]         tokens of files (or stdin with '-')
ctxkit inspect REQUEST.json [--model gpt-4o]  tokens per message/role of an OpenAI or Anthropic request
ctxkit eval SUITE|TASKS.jsonl [--pipelines naive,ctxkit-384] [--model default] [--out run.jsonl]
                                              pipelines on tasks: accuracy, tokens, latency, list-price cost
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ctxkit._optional import require
from ctxkit.errors import CtxkitError, InvalidInputError
from ctxkit.messages import Message, ToolSpec

__all__ = ["main", "messages_from_request"]


def messages_from_request(data: dict[str, Any]) -> tuple[list[Message], list[ToolSpec]]:
    """Messages and tools of a request body in OpenAI chat or Anthropic Messages format."""
    if not isinstance(data, dict) or "messages" not in data:
        raise InvalidInputError("the request JSON needs a 'messages' list (OpenAI chat or Anthropic Messages format)")
    try:
        return _parse_request(data)
    except CtxkitError:
        raise
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise InvalidInputError(
            f"the request JSON is not an OpenAI chat or Anthropic Messages body ({type(exc).__name__}: {exc}); "
            "check its 'messages', 'system' and 'tools' against the provider's format"
        ) from exc


def _parse_request(data: dict[str, Any]) -> tuple[list[Message], list[ToolSpec]]:
    messages: list[Message] = []
    tools: list[ToolSpec] = []
    system = data.get("system")
    if system:
        text = system if isinstance(system, str) else "".join(_text(b) for b in _blocks(system, "system"))
        messages.append(Message.system(text))
    for raw in _blocks(data["messages"], "messages"):
        content = raw.get("content")
        if isinstance(content, list) and any(
            isinstance(b, dict) and b.get("type") in ("tool_use", "tool_result") for b in content
        ):
            messages.extend(_anthropic_blocks(raw.get("role", ""), _blocks(content, "content")))
        else:
            messages.append(Message.from_openai(raw))
    for t in _blocks(data.get("tools") or [], "tools"):
        if "function" in t:
            f = t["function"]
            tools.append(
                ToolSpec(name=f["name"], description=f.get("description", ""), parameters=f.get("parameters") or {})
            )
        else:
            tools.append(
                ToolSpec(name=t["name"], description=t.get("description", ""), parameters=t.get("input_schema") or {})
            )
    return messages, tools


def _blocks(value: Any, where: str) -> list[dict[str, Any]]:
    """``value`` as a list of JSON objects, or an InvalidInputError naming ``where``."""
    if not isinstance(value, list) or not all(isinstance(b, dict) for b in value):
        raise InvalidInputError(f"the request's {where!r} must be a list of JSON objects")
    return value


def _text(block: dict[str, Any]) -> str:
    text = block.get("text", "")
    if not isinstance(text, str):
        raise InvalidInputError("a text block's 'text' must be a string")
    return text


def _anthropic_blocks(role: str, blocks: list[dict[str, Any]]) -> list[Message]:
    # lazy: `ctxkit <command>` loads only what that command needs
    from ctxkit.messages import ToolCall

    text = "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
    if role == "assistant":
        calls = [
            ToolCall(id=b["id"], name=b["name"], arguments=json.dumps(b.get("input", {}), sort_keys=True))
            for b in blocks
            if b.get("type") == "tool_use"
        ]
        return [Message.assistant(text, tool_calls=calls)]
    out = [
        Message.tool(
            b["content"] if isinstance(b.get("content"), str) else json.dumps(b.get("content")), b["tool_use_id"]
        )
        for b in blocks
        if b.get("type") == "tool_result"
    ]
    if text:
        out.append(Message.user(text))
    return out


def _app() -> Any:
    typer = require("typer", feature="the ctxkit command line", extra="cli")
    app = typer.Typer(help="ctxkit: budgets, token counts and cache checks for LLM prompts.", no_args_is_help=True)

    @app.command()
    def count(
        paths: list[str] = typer.Argument(None, help="files to count; '-' or nothing reads stdin"),  # noqa: B008
        model: str = typer.Option("gpt-4o", "--model", "-m", help="model name or tokenizer spec"),
    ) -> None:
        """Count the tokens of files or stdin for a model (exact where the tokenizer is public)."""
        # lazy: `ctxkit <command>` loads only what that command needs
        from ctxkit.tokenizers import get_tokenizer

        tok = get_tokenizer(model)
        total = 0
        for p in paths or ["-"]:
            text = sys.stdin.read() if p == "-" else Path(p).read_text(encoding="utf-8", errors="replace")
            n = tok.count(text)
            total += n
            typer.echo(f"{n:>10}  {p}")
        if len(paths or []) > 1:
            typer.echo(f"{total:>10}  total")
        if not tok.exact:
            typer.echo(f"(estimate for {model}: upper bound of ±{tok.error_margin:.0%})")

    @app.command()
    def inspect(
        request: str = typer.Argument(..., help="request JSON file (OpenAI or Anthropic format), '-' for stdin"),
        model: str = typer.Option("gpt-4o", "--model", "-m"),
    ) -> None:
        """Token breakdown of a request: per message, per role, tools and format overhead."""
        # lazy: `ctxkit <command>` loads only what that command needs
        from ctxkit.tokenizers import get_chat_counter

        messages, tools = messages_from_request(_load(request))
        counter = get_chat_counter(model)
        by_role: dict[str, int] = {}
        for i, m in enumerate(messages):
            n = counter.message_tokens(m)
            by_role[m.role] = by_role.get(m.role, 0) + n
            preview = m.content[:60].replace("\n", " ")
            typer.echo(f"{i:>4}  {m.role:<9} {n:>7}  {preview}")
        typer.echo("-" * 40)
        for role, n in by_role.items():
            typer.echo(f"      {role:<9} {n:>7}")
        typer.echo(f"      {'tools':<9} {counter.tools_tokens(tools):>7}")
        typer.echo(f"      {'overhead':<9} {counter.base_tokens:>7}")
        typer.echo(f"      {'total':<9} {counter.count_messages(messages, tools):>7}")
        # lazy: `ctxkit <command>` loads only what that command needs
        from ctxkit.assembly.prompt import AssembledPrompt
        from ctxkit.cache import lint, plan_cache

        prompt = AssembledPrompt.from_messages(model, messages, tools)
        typer.echo("\n== cache lint ==")
        typer.echo(str(lint(prompt)))
        typer.echo("\n== cache plan ==")
        typer.echo(str(plan_cache(prompt)))

    @app.command()
    def diff(
        previous: str = typer.Argument(..., help="the earlier request JSON"),
        current: str = typer.Argument(..., help="the later request JSON"),
        model: str = typer.Option("gpt-4o", "--model", "-m"),
    ) -> None:
        """Explain why CURRENT misses the prompt cache PREVIOUS warmed: first divergence and tokens lost."""
        # lazy: `ctxkit <command>` loads only what that command needs
        from ctxkit.assembly.prompt import AssembledPrompt
        from ctxkit.cache import explain_miss

        a = AssembledPrompt.from_messages(model, *messages_from_request(_load(previous)))
        b = AssembledPrompt.from_messages(model, *messages_from_request(_load(current)))
        typer.echo(str(explain_miss(a, b)))

    @app.command()
    def report(
        ledger: str = typer.Argument(..., help="a ledger JSON-lines file (Ledger.to_jsonl)"),
        baseline: str = typer.Option(None, "--baseline", "-b", help="flagship model to price savings against"),
    ) -> None:
        """Per workflow and model: calls, tokens by bucket, cost, latency, savings vs the baseline."""
        # lazy: `ctxkit <command>` loads only what that command needs
        from ctxkit.telemetry import Ledger

        typer.echo(str(Ledger.from_jsonl(Path(ledger)).report(baseline_model=baseline)))

    @app.command()
    def bench(
        names: list[str] = typer.Argument(None, help="benchmarks to run; none runs them all"),  # noqa: B008
        quick: bool = typer.Option(False, "--quick", help="small sizes, a smoke run"),
    ) -> None:
        """Run the benchmarks in ./benchmarks (a source checkout); each prints a RESULT line."""
        import subprocess

        runner = Path("benchmarks") / "run.py"
        if not runner.is_file():
            raise InvalidInputError("ctxkit bench runs from a ctxkit source checkout (benchmarks/run.py not found)")
        code = subprocess.call([sys.executable, str(runner), *(names or []), *(["--quick"] if quick else [])])
        raise typer.Exit(code)

    @app.command("eval")
    def eval_(
        tasks: str = typer.Argument(..., help="a suite (hotpotqa-heldout, hotpotqa-dev, squad) or a JSONL task file"),
        n: int = typer.Option(20, "--n", help="questions of a suite"),
        pipelines: str = typer.Option(
            "naive,ctxkit-384",
            "--pipelines",
            "-p",
            help="comma-separated: naive, naive-topK, ctxkit-N, langchain, llamaindex",
        ),
        model: str = typer.Option("default", "--model", "-m", help="'default' (SmolLM2), 'qwen', or a .gguf path"),
        weights: str = typer.Option("bf16", "--weights", help="bf16, f16, f32, q8_0, as-is, auto"),
        price_as: str = typer.Option("gpt-4o-mini", "--price-as", help="list-price model the calls are priced as"),
        scorer: str = typer.Option(
            "contains_gold", "--scorer", help="exact_match, token_f1, contains_gold, numeric_match"
        ),
        out: str = typer.Option(None, "--out", "-o", help="JSONL of every call; an existing file resumes the run"),
        max_tokens: int = typer.Option(16, "--max-tokens"),
        threads: int = typer.Option(None, "--threads", help="llama.cpp threads (default: the usable cores, <= 8)"),
        baseline: str = typer.Option("naive", "--baseline", help="pipeline the others are compared with"),
    ) -> None:
        """Run tasks through named pipelines on a local model and print accuracy, tokens, latency and cost."""
        # lazy: `ctxkit <command>` loads only what that command needs
        from ctxkit.dispatch import LlamaCppBackend
        from ctxkit.eval import load_tasks, run_eval, suite
        from ctxkit.eval.pipelines import parse_pipeline

        todo = load_tasks(tasks) if Path(tasks).suffix == ".jsonl" else suite(tasks, n)
        pipes = [parse_pipeline(spec.strip(), price_as=price_as) for spec in pipelines.split(",") if spec.strip()]
        if model == "qwen":
            # lazy: `ctxkit <command>` loads only what that command needs
            from ctxkit.eval.models import qwen25_coder_05b

            path: str | None = str(qwen25_coder_05b())
        else:
            path = None if model == "default" else model
        backend = LlamaCppBackend.from_path(path, weights=weights, n_ctx=4096, n_threads=threads)  # type: ignore[arg-type]
        label = f"{backend.model}[{weights}]"
        run = run_eval(
            todo, pipes, backend, model=label, path=out, scorer=scorer, price_as=price_as, max_tokens=max_tokens
        )
        typer.echo(str(run.report(baseline=baseline)))

    return app


def _load(path: str) -> dict[str, Any]:
    raw = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidInputError(f"{path} must hold a JSON object (a request body)")
    return data


def main() -> None:
    """Entry point of the ``ctxkit`` command."""
    try:
        _app()()
    except CtxkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
