"""The retrieved-context part of the final user message: how chunks are rendered, and what that costs.

The assembler lays retrieved chunks out in the final user message as::

    {context_header}\\n\\n{block}{block}...\\n{query}

where each block is ``<document id="..." title="...">\\n{text}\\n</document>\\n``. These
functions are the one source of that rendering and of its token costs: the
:class:`~ctxkit.assembly.Assembler` charges with them, and the retriever and the evidence
packer ask them (or the assembler's methods built on them) instead of recounting by
their own formula.
"""

from __future__ import annotations

from ctxkit.messages import Chunk
from ctxkit.tokenizers.base import Tokenizer

__all__ = ["SEPARATOR_TOKENS", "block_cost", "context_overhead", "document_block", "render_document", "wrapper_cost"]

#: The line break between the last block and the query. It is charged as one token: with
#: cl100k/o200k it joins the last block's closing ``>\n`` (so it costs at most one token, often
#: none), and for other tokenizers the assembler's exact verification sheds a chunk if it ever costs more.
SEPARATOR_TOKENS = 1


def render_document(ident: str, title: str, text: str) -> str:
    """One ``<document>`` block from its parts; a double quote in ``title`` becomes ``'`` so it cannot end the
    attribute."""
    attr = f' title="{title.replace(chr(34), chr(39))}"' if title else ""
    return f'<document id="{ident}"{attr}>\n{text}\n</document>\n'


def document_block(chunk: Chunk, index: int = 0) -> str:
    """The ``<document>`` block a retrieved chunk becomes in the final user message (``index``: its position,
    used for the id only when the chunk has neither ``id`` nor ``doc_id``)."""
    if chunk.id:
        ident = chunk.id
    elif chunk.doc_id:
        ident = f"{chunk.doc_id}#{chunk.position}"
    else:
        ident = f"chunk-{index}"
    return render_document(ident, chunk.title, chunk.text)


def block_cost(tokenizer: Tokenizer, chunk: Chunk, index: int = 0) -> int:
    """Tokens of ``chunk``'s block, counted whole (``metadata["tokens"]`` is never read)."""
    return tokenizer.count(document_block(chunk, index))


def wrapper_cost(tokenizer: Tokenizer, chunk: Chunk) -> int:
    """Tokens of ``chunk``'s block around an empty text: what the block costs besides its text."""
    return tokenizer.count(document_block(chunk.model_copy(update={"text": ""})))


def context_overhead(tokenizer: Tokenizer, header: str) -> int:
    """Tokens the context part adds besides its blocks: ``header`` and the blank line after it, and the line
    break before the query (:data:`SEPARATOR_TOKENS`)."""
    return tokenizer.count(header + "\n\n") + SEPARATOR_TOKENS
