"""Routers and calibration: rules, semantic (real MiniLM + FAISS), kNN quality routing and
threshold calibration on the real RouteLLM weak/strong labels, session stickiness on real prices."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxkit import Message, ToolSpec
from ctxkit.dispatch import (
    KNNQualityRouter,
    Result,
    RetryPolicy,
    Rule,
    RulesRouter,
    SemanticRouter,
    SessionAwareRouter,
    apgr,
    as_request,
    calibrate,
    operating_curve,
)
from ctxkit.dispatch.decision import RouteDecision
from ctxkit.dispatch.errors import BackendHTTPError
from ctxkit.errors import InvalidInputError
from ctxkit.usage import Usage

# The workplace's shared data sit beside the checkout: <project root>/../shared
ROUTING = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "routing"
EXAMPLES = settings().max_examples  # the conftest profile (CTXKIT_HYPOTHESIS_EXAMPLES)


def _labels() -> Path:
    """The routing label folder; the calibration tests need it, so its absence fails them with the reason."""
    if not (ROUTING / "mmlu").is_dir():
        pytest.fail(f"routing labels missing: expected {ROUTING}/mmlu (the shared data beside the checkout)")
    return ROUTING


def _mmlu(subjects: list[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    texts, weak, strong = [], [], []
    for s in subjects:
        with open(_labels() / "mmlu" / f"mmlu_{s}.csv", newline="") as f:
            for row in csv.DictReader(f):
                texts.append(row["prompt"])
                weak.append(row["mistralai/Mixtral-8x7B-Instruct-v0.1"] == "True")
                strong.append(row["gpt-4-1106-preview"] == "True")
    return texts, np.array(weak), np.array(strong)


# ---------------------------------------------------------------- rules
def test_rules_route_by_tags_tokens_sensitivity_and_tools() -> None:
    tool = ToolSpec(name="search")
    router = RulesRouter(
        [
            Rule(route="local", sensitive=True),
            Rule(route="tools-model", has_tools=True),
            Rule(route="big", min_tokens=200),
            Rule(route="cheap", tags_any=frozenset({"faq", "smalltalk"})),
        ],
        default="mid",
    )
    assert router.route(as_request("hi", sensitive=True)).route == "local"
    assert router.route(as_request("hi", tools=(tool,))).route == "tools-model"
    long = router.route(as_request("word " * 400))
    assert long.route == "big" and "tokens >= 200" in long.reason
    assert router.route(as_request("hi", tags={"faq"})).route == "cheap"
    d = router.route(as_request("hi"))
    assert d.route == "mid" and d.abstained
    with pytest.raises(InvalidInputError):
        RulesRouter([], default="")


# ---------------------------------------------------------------- calibration (pure, property-based)
@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.booleans(), st.booleans()), min_size=1, max_size=60))
def test_operating_curve_invariants(rows: list[tuple[float, bool, bool]]) -> None:
    scores = [r[0] for r in rows]
    weak = [r[1] for r in rows]
    strong = [r[2] for r in rows]
    curve = operating_curve(scores, weak, strong, weak_cost=0.1, strong_cost=1.0)
    assert curve[0].strong_share == 0 and curve[-1].strong_share == 1
    assert curve[0].quality == pytest.approx(np.mean(weak)) and curve[-1].quality == pytest.approx(np.mean(strong))
    costs = [p.cost for p in curve]
    assert costs == sorted(costs)  # escalating more never costs less
    s = np.array(scores)
    for p in curve:  # the threshold reproduces the point: strong iff score < threshold
        to_strong = s < p.threshold
        assert to_strong.mean() == pytest.approx(p.strong_share)
        q = np.where(to_strong, strong, weak).mean()
        assert q == pytest.approx(p.quality)
    cal = calibrate(scores, weak, strong, target_quality=float(np.mean(strong)), weak_cost=0.1, strong_cost=1.0)
    assert cal.met and cal.point.quality >= np.mean(strong) - 1e-9
    assert all(p.cost >= cal.point.cost - 1e-12 for p in curve if p.quality >= np.mean(strong) - 1e-12)


def test_calibrate_needs_one_target_and_apgr_of_random_is_half() -> None:
    with pytest.raises(InvalidInputError):
        calibrate([0.1], [True], [True])
    rng = np.random.default_rng(0)
    weak = rng.random(20000) < 0.6
    strong = rng.random(20000) < 0.8
    curve = operating_curve(rng.random(20000), weak, strong)
    assert apgr(curve, weak.mean(), strong.mean()) == pytest.approx(0.5, abs=0.03)


def test_calibration_on_real_labels_hits_its_target_on_held_out_prompts() -> None:
    # oracle-free score: per-subject weak accuracy measured on the calibration half
    texts, weak, strong = _mmlu(["high_school_mathematics", "marketing", "college_physics", "sociology"])
    subject = np.array([t.split("\n", 1)[0][:0] for t in texts])  # placeholder keeps shapes explicit
    n = len(texts)
    idx = np.random.default_rng(7).permutation(n)
    cal, test = idx[: n // 2], idx[n // 2 :]
    groups = np.repeat(
        np.arange(4),
        [
            sum(1 for _ in _mmlu([s])[0])
            for s in ["high_school_mathematics", "marketing", "college_physics", "sociology"]
        ],
    )
    del subject
    score = np.zeros(n)
    for g in range(4):
        m = groups[cal] == g
        score[groups == g] = weak[cal][m].mean()
    target = 0.95 * strong[cal].mean()
    c = calibrate(score[cal], weak[cal], strong[cal], target_quality=target, weak_cost=0.05, strong_cost=1.0)
    assert c.met and c.point.quality >= target
    assert c.point.strong_share < 1.0  # some prompts stay on the weak model
    held = np.where(score[test] < c.threshold, strong[test], weak[test]).mean()
    assert held >= 0.9 * strong[test].mean()  # the fitted threshold transfers to unseen prompts
    by_cost = calibrate(score[cal], weak[cal], strong[cal], target_cost_ratio=0.5, weak_cost=0.05, strong_cost=1.0)
    assert by_cost.point.cost_ratio <= 0.5


# ---------------------------------------------------------------- real embeddings
@pytest.fixture(scope="module")
def embedder():  # type: ignore[no-untyped-def]
    from ctxkit.dispatch.routing import default_embedder

    return default_embedder()


@pytest.mark.model
def test_semantic_router_routes_and_abstains(embedder) -> None:  # type: ignore[no-untyped-def]
    router = SemanticRouter(
        {
            "billing": ["I was charged twice on my card", "how do I get a refund", "update my payment method"],
            "code": [
                "my python script throws a KeyError",
                "how to reverse a list in javascript",
                "fix this segmentation fault in C",
            ],
        },
        default="general",
        thresholds={"billing": 0.45, "code": 0.45},
        k=4,
        embedder=embedder,
    )
    d = router.route(as_request("Why did you bill my credit card two times?"))
    assert d.route == "billing" and d.score is not None and d.score >= 0.45 and not d.abstained
    crash = as_request("TypeError: 'NoneType' object is not subscriptable in my Python code")
    assert router.route(crash).route == "code"
    off = router.route(as_request("What a lovely sunset over the mountains today."))
    assert off.route == "general" and off.abstained and "abstained" in off.reason
    with pytest.raises(InvalidInputError):
        SemanticRouter({"a": []}, default="x", embedder=embedder)


@pytest.mark.model
def test_knn_quality_router_mechanics_on_real_labels(embedder) -> None:  # type: ignore[no-untyped-def]
    subjects = sorted(p.name[5:-4] for p in (_labels() / "mmlu").glob("mmlu_*.csv"))
    texts, weak, strong = _mmlu(subjects)
    rng = np.random.default_rng(3)
    pick = rng.choice(len(texts), 240, replace=False)
    texts, weak, strong = [texts[i][:400] for i in pick], weak[pick], strong[pick]
    idx = rng.permutation(len(texts))
    train, test = idx[: len(idx) * 2 // 3], idx[len(idx) * 2 // 3 :]
    emb = embedder.embed(texts)
    router = KNNQualityRouter(
        None, weak[train], strong[train], weak="weak", strong="strong", k=15, embeddings=emb[train]
    )
    scores = router.scores(embeddings=emb[test])
    assert scores.shape == (len(test),) and ((scores >= 0) & (scores <= 1)).all()
    # on its own labelled prompts (each its own nearest neighbour) the labels must be recovered well above
    # random: this fails if embeddings, neighbours and labels are misaligned. Held-out quality is measured by
    # benchmarks/routing.py (it is close to random routing on MMLU at small training sizes).
    own = router.scores(embeddings=emb[train])
    curve = operating_curve(own, weak[train], strong[train])
    assert apgr(curve, weak[train].mean(), strong[train].mean()) > 0.6
    d = router.route(as_request(texts[test[0]]))
    assert d.route in ("weak", "strong") and d.threshold == 0.5


# ---------------------------------------------------------------- session stickiness
class _Fixed:
    name = "fixed"

    def __init__(self, route: str) -> None:
        self.next = route

    def route(self, request):  # type: ignore[no-untyped-def]
        return RouteDecision(route=self.next, reason="fixed", router="fixed")

    def observe(self, request, result) -> None:  # type: ignore[no-untyped-def]
        pass


def test_session_router_prices_the_warm_cache() -> None:
    inner = _Fixed("sonnet")
    router = SessionAwareRouter(
        inner, {"sonnet": "claude-sonnet-4-5", "haiku": "claude-haiku-4-5"}, expected_output_tokens=100
    )
    req = as_request([Message.system("rules " * 3000), Message.user("next question")], session_id="s1")
    first = router.route(req)
    assert first.route == "sonnet"
    router.observe(req, Result(text="ok", usage=Usage(input_tokens=3000, output_tokens=50), decision=first))
    inner.next = "haiku"  # the inner router now prefers the cheaper model
    d = router.route(req)
    # 3000+ cached tokens on sonnet at the cache-read price vs all uncached on haiku: prices decide
    from ctxkit.pricing import cost

    n = router._tokens(req)
    stay = cost(Usage(input_tokens=n, cache_read_tokens=min(3050, n), output_tokens=100), "claude-sonnet-4-5")
    switch = cost(Usage(input_tokens=n, output_tokens=100), "claude-haiku-4-5")
    assert stay is not None and switch is not None
    assert (d.route == "sonnet") == (stay <= switch)
    assert d.trail and d.trail[0].route == "haiku"
    # no session id: no stickiness
    assert router.route(as_request("hi")).route == "haiku"


def test_retry_policy_backoff_is_bounded_and_honours_retry_after() -> None:
    import random

    p = RetryPolicy(max_attempts=4, base_delay_s=1.0, max_delay_s=5.0, max_retry_after_s=30)
    rng = random.Random(0)
    err = BackendHTTPError("busy", status_code=503)
    for attempt in range(3):
        d = p.delay(attempt, err, rng)
        assert d is not None and 0 <= d <= min(5.0, 2**attempt)
    assert p.delay(3, err, rng) is None  # attempts exhausted
    assert p.delay(0, BackendHTTPError("bad", status_code=400), rng) is None
    assert p.delay(0, BackendHTTPError("slow", status_code=429, retry_after=12), rng) == 12
    assert p.delay(0, BackendHTTPError("slow", status_code=429, retry_after=120), rng) is None  # fall back now


def test_importing_dispatch_stays_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, ctxkit.dispatch as d; d.Dispatcher; d.RulesRouter; d.Cascade; d.calibrate; d.get_backend;"
        "heavy = [m for m in ('openai', 'anthropic', 'llama_cpp', 'faiss', 'sentence_transformers', 'torch')"
        " if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_knn_leave_one_out_removes_self_matches() -> None:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(80, 16)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    weak = rng.random(80) < 0.5
    router = KNNQualityRouter(None, weak, np.ones(80, bool), weak="w", strong="s", k=1, embeddings=emb)
    assert (router.scores(embeddings=emb) == weak).all()  # each prompt is its own nearest neighbour
    loo = router.scores(embeddings=emb, leave_one_out=True)
    assert 0.2 < (loo == weak).mean() < 0.8  # random labels: no longer recoverable
    with pytest.raises(InvalidInputError):
        router.scores(embeddings=emb[:5], leave_one_out=True)
