"""The response cache: exact keys, guarded semantic hits, provenance, TTL, tags, size limits, three backends."""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctxkit import InvalidInputError, Message
from ctxkit.dispatch import Dispatcher, FunctionBackend
from ctxkit.dispatch.backends.base import Request
from ctxkit.dispatch.result import Result
from ctxkit.messages import ToolCall, ToolSpec
from ctxkit.responses import (
    CacheBackend,
    ExactKey,
    MemoryBackend,
    RedisBackend,
    ResponseCache,
    SemanticGuard,
    SQLiteBackend,
    canonical_request,
)
from ctxkit.retrieval.embeddings import BaseEmbedder
from ctxkit.telemetry import Ledger
from ctxkit.usage import Usage

SYSTEM = Message.system("Answer briefly.")


class BagOfWords(BaseEmbedder):
    """A deterministic stand-in embedder: hashed bag of lower-cased words (same words -> cosine 1)."""

    def __init__(self) -> None:
        super().__init__("test:bow", 256)

    def _embed_batch(self, texts: list[str]) -> Any:
        out = np.zeros((len(texts), 256), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"\w+", t.lower()):
                out[i, int(hashlib.md5(w.encode()).hexdigest()[:6], 16) % 256] += 1.0
        return out + 1e-6


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    from ctxkit import testing

    with testing.redis_server() as url:
        yield url


def _make_backend(kind: str, tmp_path: Path, request: pytest.FixtureRequest, **limits: Any) -> CacheBackend:
    if kind == "memory":
        return MemoryBackend(**limits)
    if kind == "sqlite":
        return SQLiteBackend(tmp_path / f"rc-{len(list(tmp_path.iterdir()))}.db", **limits)
    url = request.getfixturevalue("redis_url")
    prefix = f"t{hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:8]}-{len(limits)}:"
    backend = RedisBackend(url, prefix=prefix, **limits)
    backend.clear()
    return backend


BACKENDS = ["memory", "sqlite", pytest.param("redis", marks=pytest.mark.server)]


@pytest.fixture(params=BACKENDS)
def backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _req(q: str, *, system: Message = SYSTEM, **kw: Any) -> Request:
    return Request(messages=(system, Message.user(q)), **kw)


def _result(text: str, cost: str = "0.0042") -> Result:
    return Result(
        text=text,
        finish_reason="stop",
        model="gpt-4o-mini",
        backend="function:gpt-4o-mini",
        usage=Usage(input_tokens=100, output_tokens=10),
        cost=Decimal(cost),
        latency_s=0.5,
    )


def _cache(kind: str, tmp_path: Path, request: pytest.FixtureRequest, **kw: Any) -> ResponseCache:
    limits = {k: kw.pop(k) for k in ("max_entries", "max_bytes") if k in kw}
    return ResponseCache(_make_backend(kind, tmp_path, request, **limits), embedder=BagOfWords(), **kw)


# ---------------------------------------------------------------- contract, every backend
def test_exact_hit_is_free_and_carries_the_saved_cost_and_provenance(
    backend_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    cache = _cache(backend_kind, tmp_path, request)
    assert cache.lookup(_req("What is the capital of France?")) is None
    entry = cache.store(_req("What is the capital of France?"), _result("Paris"), request_id="req-1")
    assert entry is not None and entry.provenance.request_id == "req-1"
    hit = cache.lookup(_req("What is the capital of France?"))
    assert hit is not None and hit.kind == "exact" and hit.similarity == 1.0
    r = hit.result
    assert (r.text, r.cached, r.cost, r.saved_cost, r.cache_source) == ("Paris", "exact", 0, Decimal("0.0042"), "req-1")
    assert r.usage == Usage()
    p = hit.entry.provenance
    assert (p.model, p.cost, p.usage.input_tokens) == ("gpt-4o-mini", Decimal("0.0042"), 100)
    assert len(cache) == 1


def test_semantic_hits_need_the_same_context_and_pass_the_guards(
    backend_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    cache = _cache(backend_kind, tmp_path, request, threshold=0.9)  # the negated question scores 0.93 here
    cache.store(_req("What is the capital of France?"), _result("Paris"))
    hit = cache.lookup(_req("what is the capital of france"))  # same words: cosine 1 under the test embedder
    assert hit is not None and hit.kind == "semantic" and hit.result.text == "Paris"
    assert cache.lookup(_req("What is not the capital of France?")) is None  # negation vetoed
    assert cache.lookup(_req("What is the capital of France?", system=Message.system("Answer in French."))) is None
    assert cache.lookup(_req("what is the capital of france", temperature=0.7)) is None  # other sampling
    assert cache.stats.vetoes.get("negations") == 1


def test_tool_results_must_match_exactly_for_a_semantic_hit(
    backend_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    cache = _cache(backend_kind, tmp_path, request, threshold=0.95)
    call = ToolCall(id="c1", name="weather", arguments='{"city": "Paris"}')

    def req(tool_result: str, q: str) -> Request:
        msgs = (
            SYSTEM,
            Message.user("Weather in Paris?"),
            Message.assistant("", tool_calls=(call,)),
            Message.tool(tool_result, tool_call_id="c1"),
            Message.user(q),
        )
        return Request(messages=msgs, tools=(ToolSpec(name="weather"),))

    cache.store(req("18 C, sunny", "Should I take an umbrella?"), _result("No"))
    assert cache.lookup(req("18 C, sunny", "should I take an umbrella")) is not None
    assert cache.lookup(req("12 C, heavy rain", "should I take an umbrella")) is None
    assert cache.lookup(req("12 C, heavy rain", "Should I take an umbrella?")) is None


def test_ttl_expires_entries(backend_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    clock = Clock()
    cache = _cache(backend_kind, tmp_path, request, ttl_s=60, clock=clock)
    cache.store(_req("q one"), _result("a"))
    cache.store(_req("q two"), _result("b"), ttl_s=600)
    clock.t += 59
    assert cache.lookup(_req("q one")) is not None
    clock.t += 2
    assert cache.lookup(_req("q one")) is None
    hit = cache.lookup(_req("q two"))
    assert hit is not None and hit.result.text == "b"


def test_invalidation_by_tag(backend_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    cache = _cache(backend_kind, tmp_path, request)
    cache.store(_req("prices of plan A"), _result("10"), tags=["pricing"])
    cache.store(_req("prices of plan B"), _result("20"), tags=["pricing", "plans"])
    cache.store(_req("office address"), _result("Main St"))
    cache.store(_req("holiday dates", tags={"calendar"}), _result("May 1"))
    assert cache.invalidate("pricing") == 2
    assert cache.lookup(_req("prices of plan A")) is None and cache.lookup(_req("prices of plan B")) is None
    assert cache.lookup(_req("office address")) is not None
    assert cache.invalidate("calendar") == 1 and len(cache) == 1
    with pytest.raises(InvalidInputError):
        cache.invalidate("")


def test_max_entries_evicts_the_least_recently_used(
    backend_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    cache = _cache(backend_kind, tmp_path, request, max_entries=2, semantic=False)
    cache.store(_req("first question"), _result("1"))
    cache.store(_req("second question"), _result("2"))
    assert cache.lookup(_req("first question")) is not None  # first is now the most recent
    cache.store(_req("third question"), _result("3"))
    assert len(cache) == 2
    assert cache.lookup(_req("second question")) is None
    assert cache.lookup(_req("first question")) is not None and cache.lookup(_req("third question")) is not None


def test_max_bytes_holds_and_refuses_an_oversize_entry(
    backend_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    one = len(_cache("memory", tmp_path, request).store(_req("q 0"), _result("x" * 200)).to_bytes())  # type: ignore[union-attr]
    cache = _cache(backend_kind, tmp_path, request, max_bytes=int(one * 2.5), max_entries=None)
    for i in range(6):
        cache.store(_req(f"q {i}"), _result("x" * 200))
        assert cache.backend.nbytes() <= int(one * 2.5)
    assert len(cache) == 2
    assert cache.lookup(_req("q 5")) is not None and cache.lookup(_req("q 0")) is None
    with pytest.raises(InvalidInputError, match="max_bytes"):
        cache.store(_req("big"), _result("x" * (one * 3)))


def test_failed_answers_and_hits_are_not_stored(
    backend_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    cache = _cache(backend_kind, tmp_path, request)
    assert cache.store(_req("q"), _result("oops").model_copy(update={"finish_reason": "error"})) is None
    assert cache.store(_req("q"), _result("no").model_copy(update={"finish_reason": "content_filter"})) is None
    cache.store(_req("q"), _result("yes"))
    hit = cache.lookup(_req("q"))
    assert hit is not None
    assert cache.store(_req("q2"), hit.result) is None
    assert len(cache) == 1 and cache.stats.skipped == 3


def test_concurrent_threads_see_their_own_answers(
    backend_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    cache = _cache(backend_kind, tmp_path, request, semantic=False)
    errors: list[BaseException] = []

    def worker(w: int) -> None:
        try:
            for i in range(15):
                q = f"worker {w} question {i}"
                cache.store(_req(q), _result(f"{w}-{i}"))
                hit = cache.lookup(_req(q))
                assert hit is not None and hit.result.text == f"{w}-{i}"
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:1]
    assert len(cache) == 90 and cache.stats.exact_hits == 90 and cache.stats.stores == 90


def test_async_faces_run_concurrently(backend_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    cache = _cache(backend_kind, tmp_path, request)

    async def go() -> list[str | None]:
        await asyncio.gather(*(cache.astore(_req(f"async question {i}"), _result(str(i))) for i in range(20)))
        hits = await asyncio.gather(*(cache.alookup(_req(f"async question {i}")) for i in range(20)))
        return [None if h is None else h.result.text for h in hits]

    assert asyncio.run(go()) == [str(i) for i in range(20)]


# ---------------------------------------------------------------- keys
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(min_size=1, max_size=6), c, max_size=3),
    max_leaves=8,
)


@given(st.dictionaries(st.text(min_size=1, max_size=8), _json, max_size=5), st.randoms(use_true_random=False))
def test_key_ignores_dict_order_of_tools_and_extra(params: dict[str, Any], rnd: Any) -> None:
    items = list(params.items())
    rnd.shuffle(items)
    shuffled = dict(items)
    a = _req("q", tools=(ToolSpec(name="t", parameters={"type": "object", "properties": params}),), extra=params)
    b = _req("q", tools=(ToolSpec(name="t", parameters={"type": "object", "properties": shuffled}),), extra=shuffled)
    assert ExactKey.of(a) == ExactKey.of(b)


@given(st.text(min_size=1), st.text(min_size=1))
def test_any_change_of_the_question_changes_the_exact_key_but_not_the_partition(a: str, b: str) -> None:
    ka, kb = ExactKey.of(_req(a)), ExactKey.of(_req(b))
    assert (ka.exact == kb.exact) == (a == b)  # byte-exact: whitespace and case count
    assert ka.partition == kb.partition


@given(st.text(min_size=8, max_size=40, alphabet=st.characters(min_codepoint=48, max_codepoint=122)))
def test_api_keys_never_enter_keys_or_reprs(tail: str) -> None:
    secret = f"sk-{tail}"
    a = _req("q", extra={"api_key": secret, "headers": {"Authorization": f"Bearer {secret}"}, "user": "u1"})
    b = _req("q", extra={"api_key": "other-key", "headers": {"Authorization": "Bearer zzz"}, "user": "u1"})
    assert ExactKey.of(a) == ExactKey.of(b)
    assert secret not in canonical_request(a)
    assert "q" not in repr(ExactKey.of(a)).split("exact=")[0]


def test_tags_order_is_irrelevant_and_namespaces_separate() -> None:
    assert ExactKey.of(_req("q", tags=frozenset({"a", "b"}))) == ExactKey.of(_req("q", tags=frozenset({"b", "a"})))
    assert ExactKey.of(_req("q"), namespace="x") != ExactKey.of(_req("q"), namespace="y")
    assert ExactKey.of(_req("q", max_tokens=10)) != ExactKey.of(_req("q", max_tokens=11))


# ---------------------------------------------------------------- guards
_TEMPLATES = [
    "How many people lived in Lyon in {}?",
    "What was the price of the ticket, {} dollars or more?",
    "Which team scored {} goals in the final?",
]


@given(st.integers(0, 10**7), st.integers(0, 10**7), st.sampled_from(_TEMPLATES))
def test_guard_vetoes_when_numbers_differ(a: int, b: int, template: str) -> None:
    verdict = SemanticGuard().veto(template.format(a), "Can you tell me " + template.format(b).lower())
    assert verdict == (None if a == b else "numbers")


@pytest.mark.parametrize(
    ("a", "b", "why"),
    [
        ("Which city is the capital of France?", "Which city is not the capital of France?", "negations"),
        ("Is the Seine longer than the Loire?", "Isn't the Seine longer than the Loire?", "negations"),
        ("Who directed Titanic in 1997?", "Who directed Titanic in 1998?", "numbers"),
        ("What happened on 4 July?", "What happened on 4 August?", "dates"),
        ("How far is Lyon from Paris in miles?", "How far is Lyon from Paris in kilometres?", "units"),
        ("Who is the oldest member of Metallica?", "Who is the youngest member of Metallica?", "polarity"),
        ("Who founded Tesla?", "Who founded Apple?", "entities"),
        ("Who founded Tesla?", "Tesla was founded by whom?", None),
        ("What is the capital of France?", "can you tell me what's the capital of france", None),
        ("How many moons does Mars have?", "How many moons does Mars have? Thanks.", None),
        ("Is it three miles?", "Is it 3 miles?", None),
    ],
)
def test_guard_on_named_cases(a: str, b: str, why: str | None) -> None:
    assert SemanticGuard().veto(a, b) == why
    assert SemanticGuard().veto(b, a) == why


def test_guard_mask_is_vectorized_over_candidates() -> None:
    g = SemanticGuard()
    q = g.features("Who won the race in 2010?")
    cands = [g.features(t) for t in ("Who won the race in 2010?", "Who won the race in 2011?", "Who won the race?")]
    assert g.allowed(q, cands).tolist() == [True, False, False]


# ---------------------------------------------------------------- dispatcher and ledger
def test_dispatcher_answers_repeats_from_the_cache_and_the_ledger_books_the_saving(tmp_path: Path) -> None:
    backend = FunctionBackend(lambda m: f"answer to {m[-1].content}", model="gpt-4o-mini")
    cache = ResponseCache(SQLiteBackend(tmp_path / "rc.db"), embedder=BagOfWords(), threshold=0.95)
    d = Dispatcher({"api": backend}, response_cache=cache)
    ledger = Ledger()
    first = d.run([SYSTEM, Message.user("What is the capital of France?")])
    again = d.run([SYSTEM, Message.user("What is the capital of France?")])
    para = d.run([SYSTEM, Message.user("what is the capital of france")])
    other = d.run([SYSTEM, Message.user("What is not the capital of France?")])
    assert len(backend.calls) == 2
    assert first.cached is None and first.cost is not None and first.cost > 0
    assert again.cached == "exact" and para.cached == "semantic" and other.cached is None
    assert again.text == para.text == first.text and again.saved_cost == first.cost and again.cost == 0
    assert again.decision is not None and again.decision.route == "response_cache"
    events = list(d.stream([SYSTEM, Message.user("What is the capital of France?")]))
    assert [e.kind for e in events] == ["text", "done"] and events[-1].result is not None
    assert events[-1].result.cached == "exact" and len(backend.calls) == 2
    hit_async = asyncio.run(d.arun([SYSTEM, Message.user("What is the capital of France?")]))
    assert hit_async.cached == "exact" and len(backend.calls) == 2
    for r in (first, again, para, other):
        ledger.record_result(r)
    recs = ledger.records
    assert [r.response_cache for r in recs] == [None, "exact", "semantic", None]
    assert recs[1].saved_cost == first.cost and recs[1].cost == 0 and recs[1].usage.input_tokens == 0
    report = ledger.report()
    assert first.cost is not None and other.cost is not None
    assert report.savings.response_cache == 2 * first.cost
    assert report.savings.actual == first.cost + other.cost
    assert report.savings.total is not None and report.savings.total >= 2 * first.cost
    assert "response cache" in str(report)


def test_dispatcher_without_a_cache_is_unchanged_and_rejects_bad_caches() -> None:
    backend = FunctionBackend(lambda m: "x", model="gpt-4o-mini")
    d = Dispatcher({"api": backend})
    d.run("hi")
    d.run("hi")
    assert len(backend.calls) == 2
    with pytest.raises(InvalidInputError):
        Dispatcher({"api": backend}, response_cache="redis://localhost")  # type: ignore[arg-type]


def test_bad_configuration_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError):
        ResponseCache(backend="memory")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        ResponseCache(threshold=2.0)
    with pytest.raises(InvalidInputError):
        ResponseCache(ttl_s=0)
    with pytest.raises(InvalidInputError):
        MemoryBackend(max_entries=0)
    with pytest.raises(InvalidInputError):
        RedisBackend()


def test_reprs_hold_no_question_text_or_secret() -> None:
    cache = ResponseCache(embedder=BagOfWords())
    secret = "sk-proj-abcdefghijklmnopqrstuvwxyz012345"
    entry = cache.store(_req("my private question", extra={"api_key": secret}), _result("private answer"))
    assert entry is not None
    hit = cache.lookup(_req("my private question", extra={"api_key": "another"}))
    assert hit is not None  # the key does not depend on the credential
    for text in (repr(cache), repr(entry), repr(hit), repr(cache.stats)):
        assert "private" not in text and secret not in text


@pytest.mark.model
def test_real_minilm_paraphrase_hits_and_negation_misses() -> None:
    cache = ResponseCache()
    cache.store(_req("Which river flows through Paris?"), _result("The Seine"))
    hit = cache.lookup(_req("Can you tell me which river flows through Paris?"))
    assert hit is not None and hit.kind == "semantic" and hit.result.text == "The Seine"
    assert cache.lookup(_req("Which river does not flow through Paris?")) is None
    assert cache.lookup(_req("Which river flows through Berlin?")) is None


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("redis", marks=pytest.mark.server)])
def test_shared_backends_serve_another_cache_object(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if kind == "sqlite":
        path = tmp_path / "shared.db"
        a, b = SQLiteBackend(path), SQLiteBackend(path)
    else:
        url = request.getfixturevalue("redis_url")
        a, b = RedisBackend(url, prefix="shared-test:"), RedisBackend(url, prefix="shared-test:")
        a.clear()
    writer = ResponseCache(a, embedder=BagOfWords(), threshold=0.95)
    reader = ResponseCache(b, embedder=BagOfWords(), threshold=0.95)
    writer.store(_req("Who wrote Hamlet?"), _result("Shakespeare"), request_id="w-1")
    exact, semantic = reader.lookup(_req("Who wrote Hamlet?")), reader.lookup(_req("who wrote hamlet"))
    assert exact is not None and exact.kind == "exact" and exact.entry.provenance.request_id == "w-1"
    assert semantic is not None and semantic.kind == "semantic" and semantic.result.text == "Shakespeare"
    a.close()
    b.close()
