"""Run ctxkit benchmarks: ``python benchmarks/run.py [--quick] [name ...]``.

Each benchmark is a module ``benchmarks/<name>.py`` exposing
``main(argv: list[str]) -> dict[str, object]``. With no name, every module in this folder
whose name does not start with ``_`` (and is not ``run``) is run, in alphabetical order.
Options (``--quick`` for a small-size run, or any other ``--flag``) are passed through
to each ``main``.

The last line printed is ``RESULT `` followed by one JSON object: the benchmark's result
when one name is given, else ``{name: result, ...}`` for all of them (a benchmark that
raised appears as ``{"error": "..."}`` and makes the exit status 1).

A full-size run (no ``--quick``) also saves ``benchmarks/results/<name>.json`` (the result
with its arguments, date, duration and the machine it ran on) and regenerates
``benchmarks/RESULTS.md`` from every saved result, so one table shows ctxkit against each
peer, each figure with the date and machine it was measured on.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
RESULTS_MD = HERE / "RESULTS.md"


def machine() -> dict[str, object]:
    """What the figures were measured on: CPU, cores, Python, and how busy the machine was."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "load_avg_1m_at_start": round(load, 2) if load is not None else None,
    }


def save(name: str, argv: list[str], result: dict[str, object], seconds: float, host: dict[str, object]) -> None:
    RESULTS_DIR.mkdir(exist_ok=True)
    record = {
        "name": name,
        "args": argv,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "seconds": round(seconds, 1),
        "machine": host,
        "result": result,
    }
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")


#: benchmark -> (figure path, compared with, target) shown in the headline table of RESULTS.md
HEADLINE: dict[str, list[tuple[str, str, str]]] = {
    "tokens": [
        ("ratio_vs_tiktoken", "tiktoken (ctxkit time / tiktoken time)", "≤ 1.2"),
        ("cached_speedup", "tiktoken, repeat counts", "≥ 10"),
        ("mismatches", "tiktoken, cl100k + o200k", "0"),
        ("import_ms", "—", "< 150"),
        ("first_count_ms", "—", "≤ 50"),
    ],
    "assembly": [
        ("ratio_vs_langchain", "LangChain (peer time / ctxkit time)", "≥ 10"),
        ("ratio_vs_llamaindex", "LlamaIndex (peer time / ctxkit time)", "≥ 10"),
        ("ratio_vs_langchain_cached", "LangChain with an lru_cache counter", "—"),
        ("value_packed_vs_peers", "best peer (score packed)", "≥ 1.0"),
        ("violations.ctxkit", "—", "0"),
    ],
    "retrieval": [
        ("overhead_vs_faiss.exact.single", "raw FAISS, single query", "≤ 1.2"),
        ("overhead_vs_faiss.exact.batched", "raw FAISS, batched", "≤ 1.2"),
        ("recall_at_budget.ctxkit.256", "LangChain FAISS top-4: see recall_at_budget", "≥ LangChain"),
        ("approx_recall_at_10", "exact search", "≥ 0.95"),
        ("reembed_on_reingest", "—", "0"),
        ("embed_speedup_vs_torch", "sentence-transformers on torch (chunks/s ratio, cosine ≥ 0.999)", "≥ 3"),
        ("embed_chunks_per_s.static", "torch: embed_chunks_per_s.torch (recall cost: embed_backends)", "—"),
        ("ray_ingest_scaling.workers_2", "1 worker: ray_ingest_scaling.workers_1", "—"),
        ("million.ivfpq_memory_ratio_vs_flat", "flat float32 (1536 B/vector)", "≤ 0.125"),
        ("million.ivfpq_recall_at_10", "exact search at 1M", "≥ 0.95"),
        ("million.ivfpq_rerank16_recall_at_10", "exact search at 1M", "≥ 0.95"),
    ],
    "pruning": [
        ("speedup_vs_llmlingua", "llmlingua (its time / ctxkit time)", "≥ 5"),
        ("rate_error", "requested rate", "≤ 0.10"),
        ("number_retention_ctxkit", "llmlingua: number_retention_llmlingua", "≥ 0.95"),
        ("answer_span_retention_ctxkit", "llmlingua: answer_span_retention_llmlingua", "≥ llmlingua"),
    ],
    "compression": [
        ("answer_kept_050", "llmlingua / sentences / random: see table", "≥ 0.97"),
        ("answer_kept_033", "random words: table.random@0.33", "≥ 0.95"),
        ("answer_kept_020", "whole sentences: table.sentences@0.2", "≥ 0.90"),
        ("support_kept_033", "whole sentences: table.sentences@0.33", "≥ 0.90"),
        ("rate_error_max", "asked rate (never over: over_rate)", "≤ 0.02"),
        ("vs_llmlingua_answer_kept_033", "LLMLingua, same SmolLM2 (ctxkit minus it)", "≥ +0.3"),
        ("speed_vs_llmlingua", "LLMLingua cold (its time / ctxkit time)", "≥ 3"),
        ("accuracy_compressed_minus_full", "full context, Qwen2.5-Coder-0.5B; CI: _ci", "≥ −0.01"),
        ("net_latency_gain", "answer time alone / (compress + answer)", "> 1"),
        ("planted_fact_recall_033", "— (ShareGPT chats, no question)", "≥ 0.95"),
    ],
    "cache": [
        ("reuse_ctxkit", "naive layout: reuse_naive", "≥ 0.90"),
        ("speedup_vs_naive", "naive layout (its time / ctxkit time)", "≥ 3"),
        ("simulated_cost_ratio_anthropic", "naive layout on Anthropic", "—"),
        ("simulated_cost_ratio_openai", "naive layout on OpenAI", "—"),
    ],
    "llama_bufts": [
        ("f16.off_over_on", "llama.cpp extra buffer types on (prefill tokens/s off / on)", "—"),
        ("bf16.off_over_on", "llama.cpp extra buffer types on (prefill tokens/s off / on)", "—"),
        ("q4_k_m.off_over_on", "llama.cpp extra buffer types on, where they run", "—"),
    ],
    "evidence": [
        ("hotpotqa_heldout_sf_all_evidence_256", "top-k whole passages: hotpotqa_heldout_sf_all_peer_256", "≥ 0.85"),
        ("hotpotqa_heldout_sf_all_evidence_512", "top-k whole passages (table in the section)", "≥ 0.93"),
        ("squad_v2_dev_answer_evidence_256", "top-k whole passages: squad_v2_dev_answer_peer_256", "≥ 0.85"),
        ("squad_v2_dev_answer_evidence_512", "top-k whole passages (table in the section)", "≥ 0.93"),
        ("overhead_evidence_vs_chunks.cold", "chunk packing (time ratio, first query over new text)", "—"),
    ],
    "outcome": [
        ("accuracy_ctxkit_minus_naive", "naive (all 10 paragraphs), same model; CI: see _ci", "≥ −0.01"),
        ("input_tokens_ratio", "naive (ctxkit / naive input tokens)", "≤ 0.35"),
        ("cost_per_success_ratio", "naive at list prices", "≤ 0.4"),
        ("answer_in_context_256", "— (supporting facts inside the packed context)", "≥ 0.85"),
        ("answer_in_context_512", "—", "≥ 0.93"),
        ("net_latency_gain", "answering the unpruned prompt (LLMLingua: ≤ 18% per arXiv 2604.02985)", "> 0"),
    ],
    "shared": [
        ("budget_overshoot_calls", "— (8 processes x 1,000 calls, SQLite and Redis, also with a SIGKILL)", "≤ 1"),
        ("lost_records", "— (kill -9 during ledger bursts, SQLite and PostgreSQL)", "0"),
        ("reserve_settle_us.sqlite", "in-process store: reserve_settle_us_inprocess", "—"),
        ("reserve_settle_us.redis", "in-process store: reserve_settle_us_inprocess", "—"),
        ("semantic_hit_rate", "— (paraphrases of held-out HotpotQA questions; from shared_cache)", "≥ 0.6"),
        ("semantic_false_hit_rate", "plain threshold cache: plain_false_hit_rate_at_same_hit_rate", "≤ 0.01"),
    ],
    "shared_cache": [
        ("semantic_hit_rate", "— (paraphrases of held-out HotpotQA questions)", "≥ 0.6"),
        ("semantic_false_hit_rate", "hard negatives (negation, numbers, entities, polarity, units)", "≤ 0.01"),
        ("plain_false_hit_rate_at_same_hit_rate", "plain cosine-threshold cache at the same hit rate", "—"),
    ],
    "routing": [
        ("cost_reduction_at_95", "always-strong (RouteLLM reports 0.45)", "—"),
        ("apgr", "random routing: see apgr_random", "> random"),
        ("router_latency_us", "—", "—"),
    ],
}


def _get(result: dict[str, object], path: str) -> object:
    value: object = result
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return json.dumps(value) if isinstance(value, dict | list) else str(value)


def write_results_md() -> None:
    """One table per saved benchmark: every figure, with min–max where repetitions were taken."""
    lines = [
        "# Benchmark results",
        "",
        "Regenerated by `nox -s bench` (or `python benchmarks/run.py <name>`) from `benchmarks/results/*.json`.",
        "ctxkit and each peer run in one process, interleaved, over several repetitions; ratios are medians",
        "with min–max. Figures from a busy machine (see the load average) swing widely: compare ratios, not times.",
        "",
        "## Headline: ctxkit against each peer",
        "",
        "| benchmark | figure | against | median | min – max | target | measured |",
        "|---|---|---|---|---|---|---|",
    ]
    records = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(RESULTS_DIR.glob("*.json"))]
    for rec in records:
        result = rec.get("result", {})
        for path, peer, target in HEADLINE.get(rec["name"], []):
            value = _get(result, path)
            if isinstance(value, dict) and "median" in value:
                rng, value = value, value["median"]
            else:
                rng = _get(result, f"{path}_range")
            span = f"{_fmt(rng['min'])} – {_fmt(rng['max'])}" if isinstance(rng, dict) and "min" in rng else ""
            args = " ".join(rec.get("args") or [])
            when = f"{rec['date'][:10]}{' ' + args if args else ''}"
            lines.append(f"| {rec['name']} | `{path}` | {peer} | {_fmt(value)} | {span} | {target} | {when} |")
    lines += ["", "Every figure of every run follows.", ""]
    for rec in records:
        host = rec.get("machine", {})
        args = " ".join(rec.get("args") or []) or "(defaults)"
        lines += [
            f"## {rec['name']}",
            "",
            f"{rec['date']} · {host.get('cpu')} · {host.get('cores')} cores · Python {host.get('python')} · "
            f"load {host.get('load_avg_1m_at_start')} · args {args} · {rec.get('seconds')} s",
            "",
            "| figure | median | min – max |",
            "|---|---|---|",
        ]
        result = rec.get("result", {})
        for key, value in result.items():
            if key.endswith("_range") or key == "markdown":
                continue
            rng = result.get(f"{key}_range")
            span = f"{_fmt(rng['min'])} – {_fmt(rng['max'])}" if isinstance(rng, dict) and "min" in rng else ""
            lines.append(f"| `{key}` | {_fmt(value)} | {span} |")
        lines.append("")
        if isinstance(result.get("markdown"), str):  # a benchmark's own tables, shown as they are
            lines += [result["markdown"], ""]
        extra = RESULTS_DIR / f"{rec['name']}.md"  # a benchmark's own tables and notes, when it writes them
        if extra.is_file():
            lines += [extra.read_text(encoding="utf-8").rstrip(), ""]
    RESULTS_MD.write_text("\n".join(lines), encoding="utf-8")


def available() -> list[str]:
    """Names of the benchmark modules present in this folder."""
    return sorted(p.stem for p in HERE.glob("*.py") if not p.stem.startswith("_") and p.stem != "run")


def run_one(name: str, argv: list[str]) -> dict[str, object]:
    """Import ``benchmarks/<name>.py`` and return ``main(argv)``."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    module = importlib.import_module(name)
    result = module.main(list(argv))
    if not isinstance(result, dict):
        raise TypeError(f"benchmarks/{name}.py main() returned {type(result).__name__}, not a dict")
    return result


def main(args: list[str]) -> int:
    names = [a for a in args if not a.startswith("-")]
    passthrough = [a for a in args if a.startswith("-")]
    known = available()
    unknown = [n for n in names if n not in known]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; available: {known}", file=sys.stderr)
        return 2
    selected = names or known
    results: dict[str, object] = {}
    status = 0
    # quick (smoke-size) runs are not saved unless --save asks; the args show in RESULTS.md
    save_it = "--quick" not in passthrough or "--save" in passthrough
    passthrough = [a for a in passthrough if a != "--save"]
    for name in selected:
        print(f"== {name} {' '.join(passthrough)}".rstrip(), flush=True)
        host = machine()
        start = time.perf_counter()
        try:
            results[name] = run_one(name, passthrough)
        except Exception as exc:  # report and go on with the other benchmarks
            traceback.print_exc()
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            status = 1
        seconds = time.perf_counter() - start
        print(f"== {name} done in {seconds:.1f} s", flush=True)
        if save_it and "error" not in results[name]:
            save(name, passthrough, results[name], seconds, host)
            write_results_md()
        if len(selected) > 1:
            print(f"{name}: {json.dumps(results[name])}", flush=True)
    final = results[selected[0]] if len(selected) == 1 else results
    print("RESULT " + json.dumps(final), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
