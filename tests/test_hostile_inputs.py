"""The error contract: hostile input to any public entry point raises a ``CtxkitError`` subclass, nothing else.

Hypothesis generates wrong types, ``None``, negative/NaN/infinite numbers, huge and empty
strings, strings where lists are expected, self-referencing and deeply nested containers,
bogus roles and enums, and malformed provider payloads, for every entry point that is
cheap to reach (tokenizer-based, no model loads). Each call must either succeed or raise
a :class:`ctxkit.errors.CtxkitError`. Every case is counted, and every escaped exception
kind is tallied; the last test asserts the tally is empty and prints the counts.
"""

from __future__ import annotations

import io
import math
import warnings
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctxkit import Budget, Chunk, Message, SectionBudget, ToolCall, ToolSpec, Usage
from ctxkit.assembly import Assembler
from ctxkit.cache import plan_cache
from ctxkit.cli import messages_from_request
from ctxkit.compress import (
    ExtractiveSummarizer,
    KeepLastTurns,
    SentenceFilter,
    TokenPruner,
    TokenWindow,
    TrimPipeline,
    TruncateToolOutputs,
)
from ctxkit.compress.history import CompressOlderTurns
from ctxkit.dispatch import CircuitBreaker, Dispatcher, RetryPolicy
from ctxkit.dispatch.backends.base import Request
from ctxkit.dispatch.backends.function import FunctionBackend
from ctxkit.errors import CtxkitError
from ctxkit.pricing import PriceBook, cost, get_price
from ctxkit.telemetry import Ledger, WorkflowBudget
from ctxkit.telemetry.report import percentile
from ctxkit.tokenizers.registry import count_tokens

CASES: Counter[str] = Counter()
ESCAPED: Counter[str] = Counter()  # "entry: ExceptionType" -> times
EXAMPLES: dict[str, str] = {}  # first input that escaped, per kind


def contract(entry: str, fn: Callable[[], object]) -> None:
    """Call ``fn``; only success or a CtxkitError may come out."""
    CASES[entry] += 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # warnings are allowed answers to odd input; errors are what is checked
        try:
            fn()
        except CtxkitError as exc:
            if not str(exc):
                raise AssertionError(f"{entry}: a CtxkitError with an empty message") from exc
        except Exception as exc:
            kind = f"{entry}: {type(exc).__name__}"
            ESCAPED[kind] += 1
            EXAMPLES.setdefault(kind, f"{exc!s}"[:300])
            raise AssertionError(f"{kind} escaped the error contract: {exc!s}"[:2000]) from exc


# ---------------------------------------------------------------------- hostile values
def _cyclic_dict() -> dict[str, Any]:
    d: dict[str, Any] = {"a": 1}
    d["self"] = d
    return d


def _cyclic_list() -> list[Any]:
    xs: list[Any] = [1]
    xs.append(xs)
    return xs


def _deep(depth: int = 300) -> Any:
    v: Any = "leaf"
    for _ in range(depth):
        v = {"k": v}
    return v


class _Weird:
    def __repr__(self) -> str:
        return "<weird>"


_specials = (
    st.sampled_from(
        [
            float("nan"),
            float("inf"),
            float("-inf"),
            -1,
            0,
            -(10**30),
            10**30,
            "",
            " ",
            "\x00",
            "x" * 100_000,
            "{bogus}",
            "🙂" * 50,
            b"bytes",
            Decimal("NaN"),
            Decimal("-5"),
            True,
            object(),
            _Weird(),
            (),
            [],
            {},
            set(),
        ]
    )
    | st.builds(_cyclic_dict)
    | st.builds(_cyclic_list)
    | st.builds(_deep)
)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(),
    st.text(max_size=40),
    st.binary(max_size=8),
    _specials,
)
hostile = st.recursive(
    _scalars,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4) | st.tuples(c, c),
    max_leaves=8,
)


def maybe(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly valid values, often hostile ones."""
    return st.one_of(valid, valid, hostile)


models = st.sampled_from(
    ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "tiktoken:o200k_base", "estimate:claude", "bogus-model", "estimate:x"]
)
roles = st.sampled_from(["system", "developer", "user", "assistant", "tool", "bogus", "USER", ""])
small_int = st.integers(min_value=-5, max_value=5000)
number = st.one_of(small_int, st.floats(allow_nan=True, allow_infinity=True))


def kwargs_of(
    fields: dict[str, st.SearchStrategy[Any]], *, required: tuple[str, ...] = (), open_options: bool = False
) -> st.SearchStrategy[dict[str, Any]]:
    """Any subset of ``fields`` (always ``required``), each valid-ish or hostile.

    ``open_options``: the entry point takes ``**options``, so an unknown keyword is also tried (for a
    fixed signature, Python itself rejects it with a TypeError before ctxkit runs).
    """
    base = st.fixed_dictionaries(
        {k: maybe(fields[k]) for k in required},
        optional={k: maybe(v) for k, v in fields.items() if k not in required},
    )
    if not open_options:
        return base
    return st.one_of(base, st.builds(lambda d, v: {**d, "bogus_option": v}, base, hostile))


messages = st.builds(
    lambda role, content: Message(role=role, content=content),
    st.sampled_from(["system", "user", "assistant"]),
    st.text(max_size=60),
)
message_lists = st.lists(messages, max_size=5)


# ---------------------------------------------------------------------- tokens, messages, chunks
@given(text=maybe(st.text(max_size=200)), model=maybe(models))
def test_count_tokens(text: Any, model: Any) -> None:
    contract("count_tokens", lambda: count_tokens(text, model))


@given(
    kw=kwargs_of(
        {
            "role": roles,
            "content": st.text(max_size=50),
            "name": st.text(max_size=10),
            "tool_calls": st.lists(
                st.builds(ToolCall, id=st.text(min_size=1, max_size=5), name=st.just("f")), max_size=2
            ),
            "tool_call_id": st.text(max_size=5),
            "pinned": st.booleans(),
        }
    )
)
def test_message_constructor(kw: dict[str, Any]) -> None:
    contract("Message", lambda: Message(**kw))


_tool_call_payloads = st.fixed_dictionaries(
    {},
    optional={
        "id": maybe(st.text(max_size=5)),
        "type": maybe(st.just("function")),
        "function": maybe(
            st.fixed_dictionaries(
                {}, optional={"name": maybe(st.text(max_size=5)), "arguments": maybe(st.text(max_size=10))}
            )
        ),
    },
)
openai_messages = st.fixed_dictionaries(
    {},
    optional={
        "role": maybe(roles),
        "content": maybe(
            st.one_of(st.text(max_size=30), st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": hostile})))
        ),
        "tool_calls": maybe(st.lists(maybe(_tool_call_payloads), max_size=3)),
        "tool_call_id": maybe(st.text(max_size=5)),
        "name": maybe(st.text(max_size=5)),
    },
)


@given(payload=maybe(openai_messages))
def test_message_from_openai(payload: Any) -> None:
    contract("Message.from_openai", lambda: Message.from_openai(payload))


@given(
    kw=kwargs_of(
        {
            "text": st.text(max_size=30),
            "score": number,
            "id": st.text(max_size=5),
            "position": small_int,
            "metadata": st.dictionaries(st.text(max_size=5), hostile, max_size=3),
        }
    )
)
def test_chunk_and_tool_constructors(kw: dict[str, Any]) -> None:
    contract("Chunk", lambda: Chunk(**kw))
    contract("ToolCall", lambda: ToolCall(**{k: v for k, v in kw.items() if k in ("id", "text")}))
    contract("ToolSpec", lambda: ToolSpec(name=kw.get("text", "f"), parameters=kw.get("metadata", {})))


# ---------------------------------------------------------------------- usage
_counts = st.one_of(st.integers(min_value=-3, max_value=10**6), st.sampled_from(["n/a", "12", 1.5, 2.0, None]))
usage_payloads = st.dictionaries(
    st.sampled_from(
        [
            "prompt_tokens",
            "completion_tokens",
            "input_tokens",
            "output_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
            "prompt_tokens_details",
            "completion_tokens_details",
            "input_tokens_details",
            "output_tokens_details",
            "cache_creation",
            "input_token_details",
            "output_token_details",
        ]
    ),
    maybe(st.one_of(_counts, st.dictionaries(st.sampled_from(["cached_tokens", "reasoning_tokens"]), _counts))),
    max_size=6,
)


@given(payload=maybe(usage_payloads))
def test_usage_parsers(payload: Any) -> None:
    contract("Usage.from_openai", lambda: Usage.from_openai(payload))
    contract("Usage.from_anthropic", lambda: Usage.from_anthropic(payload))
    contract("Usage.from_langchain", lambda: Usage.from_langchain(payload))
    contract("Usage", lambda: Usage(**payload) if isinstance(payload, dict) else Usage.model_validate(payload))


# ---------------------------------------------------------------------- budgets and assembly
@given(
    model=maybe(models),
    kw=kwargs_of(
        {
            "output_reserve": small_int,
            "max_input_tokens": small_int,
            "sections": st.dictionaries(
                st.sampled_from(["system", "history", "bogus"]),
                maybe(st.fixed_dictionaries({}, optional={"min_tokens": small_int, "share": number})),
                max_size=2,
            ),
        }
    ),
)
def test_budget_for_model(model: Any, kw: dict[str, Any]) -> None:
    contract("Budget.for_model", lambda: Budget.for_model(model, **kw))


@given(
    kw=kwargs_of(
        {
            "context_window": small_int,
            "output_reserve": small_int,
            "max_input_tokens": small_int,
            "priority": small_int,
            "min_tokens": small_int,
            "max_tokens": small_int,
            "share": number,
            "required": st.booleans(),
        }
    )
)
def test_budget_and_section_budget(kw: dict[str, Any]) -> None:
    budget_kw = {k: v for k, v in kw.items() if k in ("context_window", "output_reserve", "max_input_tokens")}
    section_kw = {k: v for k, v in kw.items() if k not in budget_kw}
    contract("Budget", lambda: Budget(**budget_kw))
    contract("SectionBudget", lambda: SectionBudget(**section_kw))


_BUDGET = Budget(context_window=400, output_reserve=50)


@given(
    init=kwargs_of(
        {"chunk_order": st.sampled_from(["score", "source", "edges", "bogus"]), "exact_packing": st.booleans()}
    ),
    model=maybe(st.sampled_from(["gpt-4o", "claude-sonnet-4"])),
    kw=kwargs_of(
        {
            "query": st.text(max_size=80),
            "system": st.text(max_size=80),
            "memory": st.text(max_size=80),
            "history": message_lists,
            "examples": message_lists,
            "chunks": st.lists(st.builds(Chunk, text=st.text(max_size=80), score=st.floats(-5, 5)), max_size=4),
            "tools": st.lists(st.builds(ToolSpec, name=st.sampled_from(["a", "b"])), max_size=2),
            "budget": st.just(_BUDGET),
        },
        required=("query",),
    ),
)
def test_assembler(init: dict[str, Any], model: Any, kw: dict[str, Any]) -> None:
    def run() -> None:
        Assembler(model, _BUDGET, **init).assemble(**kw)

    contract("Assembler.assemble", run)


# ---------------------------------------------------------------------- telemetry
_record_fields = {
    "model": models,
    "workflow": st.text(max_size=10),
    "usage": st.one_of(st.builds(Usage, input_tokens=st.integers(0, 100)), usage_payloads),
    "cost": st.one_of(st.decimals(allow_nan=True, allow_infinity=True), number, st.text(max_size=5)),
    "latency_s": number,
    "ttft_s": number,
    "attempts": small_int,
    "sections": st.dictionaries(st.text(max_size=5), maybe(small_int), max_size=3),
    "retrieved_ids": st.lists(st.text(max_size=3), max_size=3),
    "gold_ids": st.lists(st.text(max_size=3), max_size=3),
    "error": st.one_of(st.text(max_size=20), st.builds(ValueError, st.text(max_size=10))),
    "operation": st.sampled_from(["chat", "embeddings", "bogus"]),
    "metadata": st.dictionaries(st.text(max_size=8), hostile, max_size=4),
    "uncompressed_input_tokens": small_int,
    "task_id": st.text(max_size=5),
}


@given(kw=kwargs_of(_record_fields))
def test_ledger_record_save_load_report(kw: dict[str, Any]) -> None:
    ledger = Ledger(price_book=PriceBook.builtin())

    def roundtrip() -> None:
        rec = ledger.record(**kw)
        buf = io.StringIO()
        ledger.to_jsonl(buf)
        back = Ledger.from_jsonl(io.StringIO(buf.getvalue()))
        (again,) = back.records
        assert again == rec, "a record changed in a JSONL round trip"  # faithful or rejected at record time
        ledger.report()
        ledger.to_dataframe()

    contract("Ledger.record", roundtrip)


@given(
    kw=kwargs_of(
        {
            "path": st.sampled_from(["calls.jsonl", "missing/calls.jsonl", "", "."]),
            "budgets": st.lists(st.builds(WorkflowBudget, workflow=st.just("qa")), max_size=1),
            "hooks": st.lists(st.just(print), max_size=1),
        }
    ),
    source=maybe(st.text(max_size=40)),
    by=maybe(st.sampled_from([("workflow",), ("model",), ("bogus",), "workflow"])),
    baseline=maybe(models),
)
def test_ledger_construction_load_and_report(
    kw: dict[str, Any], source: Any, by: Any, baseline: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("ledger")
    if isinstance(kw.get("path"), str):
        kw["path"] = str(folder / kw["path"]) if kw["path"] not in ("", ".") else kw["path"]
    contract("Ledger()", lambda: Ledger(**kw))
    contract("Ledger.from_jsonl", lambda: Ledger.from_jsonl(io.StringIO(source) if isinstance(source, str) else source))
    contract("Ledger.report", lambda: Ledger().report(by=by, baseline_model=baseline))
    contract("WorkflowBudget", lambda: WorkflowBudget(**{k: v for k, v in kw.items() if k == "budgets"}))


@given(
    values=maybe(st.lists(st.one_of(number, st.decimals(allow_nan=False, allow_infinity=False)), max_size=6)),
    q=maybe(number),
)
def test_percentile(values: Any, q: Any) -> None:
    def run() -> None:
        out = percentile(values, q)
        if out is not None:
            assert math.isfinite(out) and min(values) <= out <= max(values), "a percentile outside the data"

    contract("percentile", run)


_PROMPT = Assembler("claude-sonnet-4", Budget.for_model("claude-sonnet-4")).assemble(
    system="You are terse.", query="hello", history=[Message.user("hi"), Message.assistant("hey")]
)
_OPENAI_PROMPT = Assembler("gpt-4o", Budget.for_model("gpt-4o")).assemble(system="You are terse.", query="hello")


@given(
    which=st.sampled_from([_PROMPT, _OPENAI_PROMPT]),
    prompt=st.one_of(st.just(None), hostile),
    kw=kwargs_of(
        {
            "remaining_calls": small_int,
            "interval_s": st.one_of(number, st.lists(number, max_size=3)),
            "static_interval_s": number,
            "cache_key": st.text(max_size=5),
            "prices": st.none(),
            "rules": st.none(),
            "counter": st.none(),
            "stability": st.none(),
            "may_be_cached": st.booleans(),
        },
        open_options=True,
    ),
)
def test_plan_cache(which: Any, prompt: Any, kw: dict[str, Any]) -> None:
    contract("plan_cache", lambda: plan_cache(which if prompt is None else prompt, **kw))


# ---------------------------------------------------------------------- trimming and compression
class _Upper:
    def compress(self, text: str, *, rate: float = 0.5, question: str | None = None) -> Any:
        from ctxkit.compress.base import CompressionResult

        return CompressionResult(text=text.upper(), original_tokens=1, compressed_tokens=1, method="upper")


@given(
    n=maybe(small_int),
    marker=maybe(st.sampled_from(["[cut {cut}]", "{bogus}", "{", "}", "{0}", "{cut:>5}", "{total!r}"])),
    keep=maybe(st.sampled_from(["head", "head_tail", "tail"])),
    counter=maybe(st.sampled_from(["gpt-4o", "bogus"])),
    history=maybe(message_lists),
    kw=kwargs_of(
        {"rate": number, "keep_last": small_int, "roles": st.lists(roles, max_size=2), "min_chars": small_int}
    ),
)
def test_trimming_policies(n: Any, marker: Any, keep: Any, counter: Any, history: Any, kw: dict[str, Any]) -> None:
    contract("KeepLastTurns", lambda: KeepLastTurns(n).apply(history))
    contract("TokenWindow", lambda: TokenWindow(n, counter=counter).apply(history))
    contract("TruncateToolOutputs", lambda: TruncateToolOutputs(n, marker=marker, keep=keep).apply(history))
    contract("TrimPipeline", lambda: TrimPipeline([KeepLastTurns(2), n]).apply(history))
    contract("CompressOlderTurns", lambda: CompressOlderTurns(_Upper(), **kw).apply(history))
    contract("SentenceFilter()", lambda: SentenceFilter(kw.get("roles"), tokenizer=counter))
    contract(
        "ExtractiveSummarizer()",
        lambda: ExtractiveSummarizer(
            tokenizer=counter, threshold=kw.get("rate", 0.1), damping=kw.get("min_chars", 0.85)
        ),
    )
    contract(
        "TokenPruner()",
        lambda: TokenPruner(
            force=kw.get("roles", ()), tokenizer=counter, question_weight=kw.get("rate", 1.0), strict_rate=keep
        ),
    )


# ---------------------------------------------------------------------- dispatch
_DISPATCHER = Dispatcher({"f": FunctionBackend(lambda msgs: "ok", model="gpt-4o-mini")})


@given(
    prompt=maybe(st.one_of(st.text(max_size=40), message_lists)),
    kw=kwargs_of(
        {
            "max_tokens": small_int,
            "temperature": number,
            "top_p": number,
            "stop": st.one_of(st.text(max_size=3), st.lists(st.text(max_size=3), max_size=2)),
            "tags": st.one_of(st.text(max_size=3), st.lists(st.text(max_size=3), max_size=2)),
            "top_logprobs": small_int,
            "seed": small_int,
            "sensitive": st.booleans(),
            "cache": st.one_of(st.sampled_from(["auto", "none", "bogus"]), st.tuples(small_int)),
            "extra": st.dictionaries(st.text(max_size=5), hostile, max_size=2),
        },
        open_options=True,
    ),
)
def test_dispatcher_run(prompt: Any, kw: dict[str, Any]) -> None:
    contract("Dispatcher.run", lambda: _DISPATCHER.run(prompt, **kw))
    contract("Request", lambda: Request(messages=prompt, **{k: v for k, v in kw.items() if k != "bogus_option"}))


@given(
    backends=maybe(st.just({"f": FunctionBackend(lambda msgs: "ok")})),
    kw=kwargs_of(
        {
            "default": st.sampled_from(["f", "g"]),
            "fallbacks": st.one_of(st.lists(st.sampled_from(["f", "g"]), max_size=2), st.just("f")),
            "retry": st.just(RetryPolicy()),
            "refit": st.booleans(),
        }
    ),
    retry=kwargs_of({"max_attempts": small_int, "base_delay_s": number, "max_delay_s": number, "seed": small_int}),
    breaker=kwargs_of({"failure_threshold": small_int, "reset_s": number}),
)
def test_dispatch_construction(
    backends: Any, kw: dict[str, Any], retry: dict[str, Any], breaker: dict[str, Any]
) -> None:
    contract("Dispatcher()", lambda: Dispatcher(backends, **kw))
    contract("RetryPolicy", lambda: RetryPolicy(**retry))
    contract("CircuitBreaker", lambda: CircuitBreaker(**breaker))


# ---------------------------------------------------------------------- prices and the CLI's parser
@given(
    model=maybe(models),
    usage=maybe(st.builds(Usage, input_tokens=st.integers(0, 10**6), output_tokens=st.integers(0, 10**6))),
    book=maybe(
        st.fixed_dictionaries(
            {
                "models": st.dictionaries(
                    st.text(max_size=5), maybe(st.fixed_dictionaries({"input": number, "output": number})), max_size=2
                )
            },
            optional={"as_of": maybe(st.just("2025-01-01")), "sources": hostile, "local_prefixes": hostile},
        )
    ),
)
def test_prices(model: Any, usage: Any, book: Any) -> None:
    contract("get_price", lambda: get_price(model))
    contract("cost", lambda: cost(usage, model))
    contract("PriceBook.from_dict", lambda: PriceBook.from_dict(book).cost(Usage(input_tokens=5), "x"))


@given(
    data=maybe(
        st.fixed_dictionaries(
            {"messages": maybe(st.lists(maybe(openai_messages), max_size=3))},
            optional={
                "system": maybe(st.one_of(st.text(max_size=5), st.lists(st.fixed_dictionaries({"text": hostile})))),
                "tools": maybe(st.lists(hostile, max_size=2)),
            },
        )
    )
)
def test_cli_request_parser(data: Any) -> None:
    contract("cli.messages_from_request", lambda: messages_from_request(data))


# ---------------------------------------------------------------------- the tally
def test_zz_no_exception_kind_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    """The tally of the tests above: every case counted, no exception kind escaped."""
    if not CASES:
        pytest.fail("this test checks the tally of the tests above it: run tests/test_hostile_inputs.py as a whole")
    total = sum(CASES.values())
    with capsys.disabled():
        print(f"\nhostile inputs: {total} cases over {len(CASES)} entry points, {len(ESCAPED)} escaped kinds")
    assert not ESCAPED, f"escaped: {dict(ESCAPED)}; first inputs: {EXAMPLES}"
