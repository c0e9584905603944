"""One source for the costs of retrieved context: the assembly package's rendering.

The retriever (``chunk_cost``, its packing, :meth:`Retriever.assemble`) and the evidence packer
charge a chunk what the :class:`~ctxkit.assembly.Assembler` lays out for it. These tests take
the rendered chunk section out of real assembled prompts, count it with a tokenizer that shares
no cache with ctxkit, and compare, for generated titles (quotes, ``<``, ``&``, newlines,
unicode) and texts.
"""

from __future__ import annotations

from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from _hash_embedder import HashEmbedder
from ctxkit import Assembler, Budget, Chunk
from ctxkit.assembly.context import SEPARATOR_TOKENS
from ctxkit.retrieval import NumpyIndex, Retriever
from ctxkit.retrieval.evidence import wrapper_cost
from ctxkit.tokenizers import get_tokenizer
from ctxkit.tokenizers._tiktoken import TiktokenTokenizer

_TRICKY = st.sampled_from(['"', "'", "<", ">", "&", "\n", " ", "=", "é", "中", "😀", "a", "Z", "0", "/"])
titles = st.one_of(st.text(_TRICKY, max_size=12), st.text(max_size=16))
texts = st.one_of(st.text(_TRICKY, min_size=1, max_size=40), st.text(min_size=1, max_size=80)).filter(
    lambda t: bool(t.strip())
)
parts_st = st.lists(st.tuples(titles, texts), min_size=1, max_size=4)
queries = st.text(st.sampled_from(["a", "b", " ", "?", "é"]), min_size=1, max_size=12)

# One tokenizer for both sides (gpt-4o counts with o200k); FRESH shares no count cache with ctxkit.
MODEL = "gpt-4o"
ASM = Assembler(MODEL, Budget(context_window=200_000))
RETRIEVER = Retriever(HashEmbedder(), NumpyIndex(64), tokenizer=MODEL, hybrid=False)
FRESH = TiktokenTokenizer("o200k_base")
QUOTED_TITLES = ['""', 'a"b', 'Say "hi"', '"Quoted" <b> & co\n']


def _chunks(parts: list[tuple[str, str]]) -> list[Chunk]:
    return [
        Chunk(id=f"c{i}", doc_id=f"d{i}", title=title, text=text, score=1.0 - i / 100)
        for i, (title, text) in enumerate(parts)
    ]


def _rendered_blocks(asm: Assembler, chunks: list[Chunk], query: str) -> tuple[str, list[str]]:
    """The rendered chunk section of a real assembled prompt (header to the line before the query), and each
    chunk's block cut out of it, in the order of ``chunks`` (every chunk is kept: the budget is ample)."""
    prompt = asm.assemble(query=query, chunks=chunks)
    assert prompt.sections["retrieved"].items_kept == len(chunks)
    content = prompt.messages[-1].content
    assert content.endswith(query)
    section = content[: len(content) - len(query)]
    intro = f"{asm.context_header}\n\n"
    assert section.startswith(intro) and section.endswith("\n")
    body = section[len(intro) : -1]
    laid_out = sorted(chunks, key=lambda c: -c.score)  # the assembler's chunk_order="score"
    starts = [body.index(f'<document id="{c.id}"') for c in laid_out]
    assert starts[0] == 0 and starts == sorted(starts)
    ends = [*starts[1:], len(body)]
    cut = {c.id: body[a:b] for c, a, b in zip(laid_out, starts, ends, strict=True)}
    for c in chunks:
        assert cut[c.id].endswith(f"\n{c.text}\n</document>\n")
    return section, [cut[c.id] for c in chunks]


def _usable(parts: list[tuple[str, str]]) -> bool:
    """Distinct texts (the assembler drops exact duplicates) that do not contain another chunk's block start."""
    pieces = [p for pair in parts for p in pair]
    return len({t for _, t in parts}) == len(parts) and not any('<document id="c' in p for p in pieces)


@given(parts=parts_st, query=queries)
@example(parts=[(t, "Refunds take five days.") for t in QUOTED_TITLES], query="refund?")
def test_retriever_costs_are_what_the_assembled_prompt_spends(parts: list[tuple[str, str]], query: str) -> None:
    assume(_usable(parts))
    chunks = _chunks(parts)
    section, blocks = _rendered_blocks(ASM, chunks, query)
    for c, block in zip(chunks, blocks, strict=True):
        # per chunk: the retriever's cost is the count of the block the assembler laid out, and the assembler's own
        assert RETRIEVER.chunk_cost(c) == FRESH.count(block) == ASM.chunk_cost(c)
    charged = ASM.context_cost() + sum(RETRIEVER.chunk_cost(c) for c in chunks)
    prompt = ASM.assemble(query=query, chunks=chunks)
    assert prompt.sections["retrieved"].used == charged
    # the whole section: header, blocks and the break before the query never cost more than charged, and the
    # separator is the only slack (it joins the last block's closing ">\n" with o200k)
    assert charged - SEPARATOR_TOKENS <= FRESH.count(section) <= charged


@given(parts=parts_st, query=queries)
@example(parts=[(t, "Refunds take five days.") for t in QUOTED_TITLES], query="refund?")
def test_evidence_charges_the_wrapper_the_assembler_renders(parts: list[tuple[str, str]], query: str) -> None:
    """The evidence packer's per-passage wrapper charge is the assembler's wrapper, plus its stated one-token margin.

    Uses only what existed before the costs had one source (``document_block`` rendering via the assembler and
    ``evidence.wrapper_cost``): the old ``wrapper_cost`` counted the title unescaped, so it charged 13 tokens for
    a title ``""`` whose wrapper costs 14 (undercharged), and 16 for ``a"b`` whose wrapper costs 15.
    """
    assume(_usable(parts))
    chunks = _chunks(parts)
    _, blocks = _rendered_blocks(ASM, chunks, query)
    tok = get_tokenizer(MODEL)
    for c, block in zip(chunks, blocks, strict=True):
        wrapper = block[: len(block) - len(f"{c.text}\n</document>\n")] + "\n</document>\n"
        assert wrapper_cost(tok, c.id, c.title) == FRESH.count(wrapper) + 1


words = st.lists(
    st.sampled_from(["refund", "budget", "token", "cache", "river", "born", "Paris", "the", "a"]), min_size=1
)
sentences = st.lists(words.map(lambda w: " ".join(w).capitalize() + "."), min_size=1, max_size=4).map(" ".join)


@settings(max_examples=max(1, settings().max_examples // 5))  # each example builds a retriever and two prompts
@given(
    parts=st.lists(st.tuples(titles, sentences), min_size=1, max_size=5),
    budget=st.integers(0, 300),
    packing=st.sampled_from(["evidence", "chunks"]),
)
@example(parts=[(t, "Refund budget token. The river cache.") for t in QUOTED_TITLES], budget=40, packing="evidence")
def test_budget_holds_and_prompt_keeps_what_the_retriever_chose(
    parts: list[tuple[str, str]], budget: int, packing: str
) -> None:
    """The retriever's own tokenizer (cl100k) differs from the prompt's model (gpt-4o, o200k): ``prompt`` packs
    with the assembler's costs, so the assembler keeps every chunk the retriever chose, and nothing is over."""
    assume(_usable(parts))
    r = Retriever(HashEmbedder(), NumpyIndex(64), tokenizer="tiktoken:cl100k_base", hybrid=False, packing=packing)  # type: ignore[arg-type]
    r.add_chunks(_chunks(parts), progress=False)
    query = "refund budget river"
    got = r.retrieve(query, budget)
    cl100k = TiktokenTokenizer("cl100k_base")
    if got:  # passages of different documents can come out with the same text: the assembler shows it once
        shown = list({c.text: c for c in reversed(got)}.values())[::-1]
        _, blocks = _rendered_blocks(Assembler("gpt-4", Budget(context_window=200_000)), shown, query)
        assert sum(cl100k.count(b) for b in blocks) <= budget
        assert sum(r.chunk_cost(c) for c in got) <= budget
    bud = Budget(context_window=40 + budget)
    prompt = r.assemble(query, model=MODEL, budget=bud)
    assert prompt.total_tokens <= prompt.input_limit
    assert FRESH.count(prompt.messages[-1].content) <= prompt.total_tokens
    dropped = [a for a in prompt.audit if a.section == "retrieved" and "exact duplicate" not in a.reason]
    assert dropped == []
