"""One word per operation (docs/concepts/glossary.md): the verb is *assemble*; a prompt's budget is ``Budget | int``.

The old spellings (``Retriever.prompt``, ``Pipeline.build``) still work, warn with a
``DeprecationWarning`` that names the new method, and give exactly what the new name gives.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import ctxkit
from _hash_embedder import HashEmbedder
from ctxkit.assembly import Assembler
from ctxkit.budget import Budget, as_budget
from ctxkit.errors import InvalidInputError
from ctxkit.eval import BuiltPrompt, EvalDocument, NaivePipeline, Task, run_eval
from ctxkit.eval.pipelines import assemble_task
from ctxkit.messages import Chunk, Message
from ctxkit.retrieval import Chunker, Document, NumpyIndex, Retriever
from ctxkit.tokenizers import get_tokenizer

MODEL = "gpt-4o"
TOK = get_tokenizer("tiktoken:cl100k_base")
ROOM = Budget.for_model(MODEL).context_window - Budget.for_model(MODEL).output_reserve


def _retriever() -> Retriever:
    r = Retriever(HashEmbedder(), NumpyIndex(64), tokenizer=TOK, chunker=Chunker(24, 8, tokenizer=TOK))
    r.add_documents(
        [
            Document(id="a", title="Rivers", text="The alpha river is born in the hills. It runs north to the sea."),
            Document(id="b", title="Towns", text="The town by the alpha river has a bridge. Its market opens at dawn."),
        ],
        progress=False,
    )
    return r


def _task() -> Task:
    return Task(
        id="t0",
        question="What is the code of item 3?",
        answers=("code 3",),
        documents=(EvalDocument(id="d0", title="Items", text="Item 3 has code 3. It is blue."),),
        evidence=("Item 3 has code 3.",),
    )


# --------------------------------------------------------------------------- Retriever.prompt -> assemble
def test_retriever_prompt_warns_and_gives_what_assemble_gives() -> None:
    r = _retriever()
    bud = Budget.for_model(MODEL, max_input_tokens=200)
    new = r.assemble("where is the alpha river born?", model=MODEL, budget=bud, system="Be brief.")
    with pytest.warns(DeprecationWarning, match=r"Retriever\.assemble\(\)") as caught:
        old = r.prompt("where is the alpha river born?", model=MODEL, budget=bud, system="Be brief.")
    assert old == new
    assert "<document" in new.messages[-1].content  # something was retrieved, so the two paths are compared
    # stacklevel=2: the warning points at the caller, not at the retriever module
    assert caught[0].filename == __file__


def test_retriever_assemble_takes_an_int_budget_as_the_input_limit() -> None:
    r = _retriever()
    by_int = r.assemble("alpha river", model=MODEL, budget=150)
    by_budget = r.assemble("alpha river", model=MODEL, budget=Budget.for_model(MODEL, max_input_tokens=150))
    assert by_int == by_budget
    assert by_int.input_limit == 150


# --------------------------------------------------------------------------- Pipeline.build -> assemble
def test_pipeline_build_warns_and_gives_what_assemble_gives() -> None:
    pipe = NaivePipeline(timestamp=False)
    new = pipe.assemble(_task())
    with pytest.warns(DeprecationWarning, match=r"NaivePipeline\.build\(task\) is deprecated.*assemble") as caught:
        old = pipe.build(_task())
    assert (old.messages, old.context, old.meta) == (new.messages, new.context, new.meta)
    assert caught[0].filename == __file__


class _OldStylePipeline:
    """A user's pipeline written before the rename: it defines only ``build``."""

    name = "old-style"
    backend = None

    def build(self, task: Task) -> BuiltPrompt:
        return NaivePipeline(timestamp=False).assemble(task)


class _NewStylePipeline(_OldStylePipeline):
    name = "new-style"

    def assemble(self, task: Task) -> BuiltPrompt:
        return NaivePipeline(timestamp=False).assemble(task)


def _echo() -> Any:
    from ctxkit.dispatch import FunctionBackend

    return FunctionBackend(lambda messages: "code 3", model="gpt-4o-mini", local=True)


def test_the_harness_runs_an_old_build_only_pipeline_with_a_warning() -> None:
    with pytest.warns(DeprecationWarning, match=r"_OldStylePipeline\.build\(task\).*rename the method to assemble"):
        built = assemble_task(_OldStylePipeline(), _task())
    assert built.messages == NaivePipeline(timestamp=False).assemble(_task()).messages
    with pytest.warns(DeprecationWarning, match="rename the method to assemble"):
        old = run_eval([_task()], [_OldStylePipeline()], _echo(), model="echo", progress=False)
    new = run_eval([_task()], [_NewStylePipeline()], _echo(), model="echo", progress=False)  # no warning
    (o,), (n,) = old.records, new.records
    assert (o.success, o.score, o.input_tokens, o.evidence_in_context) == (
        n.success,
        n.score,
        n.input_tokens,
        n.evidence_in_context,
    )
    assert o.success


def test_the_harness_refuses_an_object_that_is_not_a_pipeline() -> None:
    with pytest.raises(InvalidInputError, match=r"needs a name and an assemble\(task\) method"):
        assemble_task(object(), _task())


# --------------------------------------------------------------------------- Budget | int, one coercion
@given(n=st.integers(1, ROOM))
def test_an_int_budget_is_exactly_the_input_limit(n: int) -> None:
    assert as_budget(n, MODEL).input_limit == n
    assert Assembler(MODEL, n).budget.input_limit == n


@given(n=st.one_of(st.integers(max_value=0), st.integers(min_value=ROOM + 1)))
def test_an_impossible_int_budget_is_refused_with_the_range(n: int) -> None:
    with pytest.raises(InvalidInputError, match=rf"pass an int from 1 to {ROOM}"):
        as_budget(n, MODEL)
    with pytest.raises(InvalidInputError, match=rf"pass an int from 1 to {ROOM}"):
        Assembler(MODEL, n)


@pytest.mark.parametrize("bad", ["600", 600.0, True, [600], {"max_input_tokens": 600}])
def test_a_budget_of_another_type_is_refused_saying_what_to_pass(bad: object) -> None:
    msg = r"budget must be a ctxkit\.Budget \(Budget\.for_model\(model\) or Budget\(\.\.\.\)\) or an int"
    with pytest.raises(InvalidInputError, match=msg):
        as_budget(bad, MODEL)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=msg):
        Assembler(MODEL, bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=msg):
        Assembler(MODEL).assemble(query="q", budget=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=msg):
        ctxkit.assemble(MODEL, bad, query="q")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=msg):
        _retriever().assemble("q", budget=bad)  # type: ignore[arg-type]


def test_none_and_a_budget_pass_through() -> None:
    b = Budget.for_model(MODEL, max_input_tokens=300)
    assert as_budget(b, MODEL) is b
    assert as_budget(None, MODEL) == Budget.for_model(MODEL)
    assert as_budget(None, MODEL, base=b) is b
    assert as_budget(None, MODEL, output_reserve=64) == Budget.for_model(MODEL, output_reserve=64)
    # an int keeps the base's sections and reserve, and only sets the input limit
    based = as_budget(120, MODEL, base=b)
    assert (based.input_limit, based.sections, based.output_reserve) == (120, b.sections, b.output_reserve)


@given(n=st.integers(40, 400))
def test_every_entry_reads_an_int_budget_the_same_way(n: int) -> None:
    history = [Message.user("tell me about rivers " * 5), Message.assistant("rivers run to the sea " * 5)]
    chunks = [Chunk(text=f"fact {i}: the alpha river is long. " * 3, score=1.0 / (i + 1)) for i in range(6)]
    inputs: dict[str, Any] = {"query": "how long is it?", "history": history, "chunks": chunks}
    want = Assembler(MODEL, Budget.for_model(MODEL, max_input_tokens=n)).assemble(**inputs)
    asm = Assembler(MODEL)
    assert Assembler(MODEL, n).assemble(**inputs) == want
    assert asm.assemble(**inputs, budget=n) == want
    assert asm.assemble(**inputs, budget=n) == want  # the memoized path coerces the int the same way
    assert ctxkit.assemble(MODEL, n, **inputs) == want
    assert want.total_tokens <= want.input_limit == n
