"""Write examples/ctxkit_tour.ipynb from the cells below (run after editing them)."""

from __future__ import annotations

from pathlib import Path

import nbformat

CELLS: list[tuple[str, str]] = [
    (
        "md",
        "# A tour of ctxkit\n\nBudgeted prompts, cache-friendly layout, routing and honest cost telemetry — "
        "on embedded defaults: no API key, no internet. Objects render as HTML in a notebook.",
    ),
    (
        "code",
        "%matplotlib inline\nfrom ctxkit import Assembler, Budget, Chunk, Ledger, Message\n"
        "from ctxkit.datasets import chat_histories, essay_paragraphs, lexical_scores",
    ),
    (
        "md",
        "## A prompt under a budget\n\nReal essay paragraphs as retrieved chunks, a real 40-message chat as "
        "history. The prompt renders as a bar per section, with the audit trail of what was dropped.",
    ),
    (
        "code",
        "query = 'How should founders think about fundraising?'\n"
        "paras = essay_paragraphs()\n"
        "scores = lexical_scores(query, [p.text for p in paras])\n"
        "top = sorted(range(len(paras)), key=lambda i: -scores[i])[:50]\n"
        "chunks = [Chunk(text=paras[i].text, score=scores[i], id=f'{paras[i].doc_id}#{paras[i].position}',\n"
        "              doc_id=paras[i].doc_id, position=paras[i].position) for i in top]\n"
        "history = list(chat_histories(40, 1)[0])\n"
        "asm = Assembler('gpt-4o', Budget.for_model('gpt-4o', max_input_tokens=4_000), chunk_order='edges')\n"
        "prompt = asm.assemble(system='Answer from the essays.', history=history, chunks=chunks, query=query)\n"
        "prompt",
    ),
    ("code", "from ctxkit.telemetry.plots import plot_tokens_by_section\nplot_tokens_by_section(prompt);"),
    (
        "md",
        "## Will it cache?\n\nThe same session laid out by ctxkit and with a timestamp in the system prompt, "
        "replayed under Anthropic's caching rules and prices.",
    ),
    (
        "code",
        "from ctxkit.cache import compare\n"
        "asm = Assembler('claude-sonnet-4-5', Budget.for_model('claude-sonnet-4-5', max_input_tokens=30_000))\n"
        "system = 'You answer questions about essays. ' + ' '.join(p.text for p in paras[:40])\n"
        "turns = [m for i in range(6) for m in (Message.user(f'question {i}?'), Message.assistant(f'answer {i}.'))]\n"
        "good = [asm.assemble(system=system, history=turns[: 2 * i], query=f'question {i}?') for i in range(6)]\n"
        "bad = [asm.assemble(system=f'Now: 10:{i:02d}:00. ' + system, history=turns[: 2 * i], query=f'question {i}?')\n"
        "       for i in range(6)]\n"
        "comparison = compare(good, bad, names=('ctxkit layout', 'timestamped system'), gaps_s=30.0)\n"
        "comparison",
    ),
    (
        "md",
        "## Route, answer, account\n\n`FunctionBackend` stands in for models here; swap in "
        "`LlamaCppBackend.from_path()` for the real local model or `get_backend('openai:gpt-4o-mini')`.",
    ),
    (
        "code",
        "from ctxkit.dispatch import Dispatcher, FunctionBackend, Rule, RulesRouter\n"
        "dispatcher = Dispatcher(\n"
        "    {'local': FunctionBackend(lambda m: 'short local answer', model='smollm2-135m-instruct', local=True),\n"
        "     'flagship': FunctionBackend(lambda m: 'a longer careful answer from the flagship', model='gpt-4o')},\n"
        "    router=RulesRouter([Rule(route='flagship', min_tokens=1_000, name='long prompts')], default='local'),\n"
        ")\n"
        "ledger = Ledger()\n"
        "for p in [prompt, *good]:\n"
        "    result = dispatcher.run(p, max_tokens=64)\n"
        "    ledger.record_result(result, workflow='tour', prompt=p, success=True)\n"
        "report = ledger.report(baseline_model='gpt-4o')\n"
        "report",
    ),
    ("code", "from ctxkit.telemetry.plots import plot_cost_over_time\nplot_cost_over_time(ledger.records);"),
]


def build() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for kind, src in CELLS:
        nb.cells.append(nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src))
    return nb


if __name__ == "__main__":
    out = Path(__file__).resolve().parents[1] / "examples" / "ctxkit_tour.ipynb"
    nbformat.write(build(), out)
    print(f"wrote {out}")
