"""Pipelines: named ways of turning a task into a prompt (and, optionally, a model of their own).

* :class:`CtxkitPipeline` — ctxkit's parts: the retriever's public ``retrieve`` path for a token
  budget, optional question-aware pruning (:class:`~ctxkit.compress.TokenPruner`), and the
  :class:`~ctxkit.assembly.Assembler` layout (history trimmed to the budget, stable first);
* :class:`NaivePipeline` — the baseline: whole documents (or a fixed top-k), the full history,
  and a timestamped header;
* :class:`LangChainStylePipeline` — LangChain's vector-store retriever (top 4) and
  ``trim_messages`` on the history;
* :class:`LlamaIndexStylePipeline` — LlamaIndex's ``VectorStoreIndex`` (``SentenceSplitter``
  chunks, top 2) as a retriever.

Every pipeline renders documents the same way (``<document id title>`` blocks after one
context header), so pipelines differ only in *what* they put in the prompt. A pipeline may
carry its own ``backend`` (a routing configuration such as a :class:`~ctxkit.dispatch.Cascade`);
otherwise the run's model answers.
"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from ctxkit.assembly import Assembler
from ctxkit.budget import Budget
from ctxkit.compress import TokenPruner
from ctxkit.errors import InvalidInputError
from ctxkit.eval.tasks import Task
from ctxkit.messages import Chunk, Message
from ctxkit.paths import user_cache_dir
from ctxkit.retrieval import Document, Retriever, SentenceTransformerEmbedder
from ctxkit.tokenizers import get_tokenizer

__all__ = [
    "DEFAULT_SYSTEM",
    "BuiltPrompt",
    "CompressedPipeline",
    "CtxkitPipeline",
    "LangChainStylePipeline",
    "LlamaIndexStylePipeline",
    "NaivePipeline",
    "Pipeline",
    "assemble_task",
    "parse_pipeline",
    "render_documents",
]

DEFAULT_SYSTEM = (
    "Answer the question using the context documents. Reply with the short answer only: "
    "a name, a number, a date, or a few words; for a yes/no question reply yes or no. No explanation."
)
CONTEXT_HEADER = "Use the following context to answer."


@dataclass(frozen=True)
class BuiltPrompt:
    """What a pipeline sends: the messages, the context text it packed, and the time it took to build."""

    messages: tuple[Message, ...]
    context: str
    prep_s: float
    meta: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Pipeline(Protocol):
    """A named configuration: ``assemble(task)`` makes the prompt; ``backend`` (optional) answers it.

    ``assemble`` was called ``build`` before; a pipeline of your own that still defines only
    ``build`` is run through it by :func:`assemble_task` (and :func:`~ctxkit.eval.run_eval`) with a
    :class:`DeprecationWarning`.
    """

    name: str
    backend: Any

    def assemble(self, task: Task) -> BuiltPrompt: ...


def _build_is_deprecated(owner: str) -> str:
    return f"{owner}.build(task) is deprecated; it is now called assemble(task) (the Pipeline protocol)"


class _DeprecatedBuild:
    """The old spelling ``build(task)`` on ctxkit's pipelines: warns, then calls ``assemble``."""

    def assemble(self, task: Task) -> BuiltPrompt:  # every subclass defines it
        raise NotImplementedError

    def build(self, task: Task) -> BuiltPrompt:
        """Deprecated: use :meth:`assemble`."""
        warnings.warn(_build_is_deprecated(type(self).__name__), DeprecationWarning, stacklevel=2)
        return self.assemble(task)


def assemble_task(pipeline: Any, task: Task) -> BuiltPrompt:
    """``pipeline.assemble(task)``; for a pipeline that defines only the old ``build``, that with a warning.

    Raises :class:`~ctxkit.errors.InvalidInputError` when the object has neither.
    """
    method = getattr(pipeline, "assemble", None)
    if callable(method):
        built: BuiltPrompt = method(task)
        return built
    old = getattr(pipeline, "build", None)
    if callable(old):
        warnings.warn(
            _build_is_deprecated(type(pipeline).__name__) + ": rename the method to assemble",
            DeprecationWarning,
            stacklevel=2,
        )
        built = old(task)
        return built
    raise InvalidInputError(
        f"{type(pipeline).__name__} is not a pipeline: it needs a name and an assemble(task) method "
        "returning a BuiltPrompt (see ctxkit.eval.Pipeline)"
    )


def _block(doc_id: str, title: str, text: str) -> str:
    t = f' title="{title.replace(chr(34), chr(39))}"' if title else ""
    return f'<document id="{doc_id}"{t}>\n{text}\n</document>\n'


def render_documents(blocks: Sequence[tuple[str, str, str]]) -> str:
    """``(id, title, text)`` triples as the context section (the same layout the Assembler uses)."""
    return "".join(_block(i, t, x) for i, t, x in blocks)


def _user_message(context: str, question: str) -> Message:
    if not context:
        return Message.user(question)
    return Message.user(f"{CONTEXT_HEADER}\n\n{context}\n{question}")


# --------------------------------------------------------------------------- ctxkit
class CtxkitPipeline(_DeprecatedBuild):
    """ctxkit: retrieve for ``budget_tokens`` through the retriever's public ``retrieve``, then assemble.

    ``budget_tokens`` is the retrieved section's token budget (what ``retrieve`` packs), not the whole
    prompt's; the prompt is assembled under ``Budget.for_model(model, output_reserve=256)``.

    ``retriever_factory`` builds an empty :class:`~ctxkit.retrieval.Retriever` per task
    (default: MiniLM embeddings with an on-disk cache, token counts in ``model``'s
    tokenizer). ``prune_rate`` (0 < rate < 1) prunes the retrieved context question-aware with
    ``pruner`` (default :class:`~ctxkit.compress.TokenPruner`). ``model`` is the model whose
    tokenizer counts the budget (the priced model).
    """

    def __init__(
        self,
        budget_tokens: int,
        *,
        name: str | None = None,
        model: str = "gpt-4o-mini",
        system: str = DEFAULT_SYSTEM,
        retriever_factory: Callable[[], Any] | None = None,
        prune_rate: float | None = None,
        pruner: Any = None,
        chunk_order: str = "score",
        backend: Any = None,
    ) -> None:
        if not isinstance(budget_tokens, int) or budget_tokens < 1:
            raise InvalidInputError(f"budget_tokens must be a positive int, got {budget_tokens!r}")
        if prune_rate is not None and not 0 < prune_rate < 1:
            raise InvalidInputError(f"prune_rate must be in (0, 1), got {prune_rate}")
        self.budget_tokens = budget_tokens
        self.name = name or f"ctxkit-{budget_tokens}" + (f"-prune{prune_rate:g}" if prune_rate else "")
        self.model = model
        self.system = system
        self._factory = retriever_factory
        self.prune_rate = prune_rate
        self._pruner = pruner
        self.chunk_order = chunk_order
        self.backend = backend
        self._assembler: Any = None

    def __repr__(self) -> str:
        return f"CtxkitPipeline(name={self.name!r}, budget_tokens={self.budget_tokens}, prune_rate={self.prune_rate})"

    def _retriever(self) -> Any:
        if self._factory is not None:
            return self._factory()

        return Retriever(default_embedder(), tokenizer=self.model)

    def _asm(self) -> Any:
        if self._assembler is None:
            self._assembler = Assembler(
                self.model,
                Budget.for_model(self.model, output_reserve=256),
                chunk_order=self.chunk_order,  # type: ignore[arg-type]
                context_header=CONTEXT_HEADER,
            )
        return self._assembler

    def assemble(self, task: Task) -> BuiltPrompt:
        t0 = time.perf_counter()
        chunks: list[Chunk] = []
        if task.documents:
            retriever = self._retriever()
            retriever.add_documents(
                [Document(id=d.id, title=d.title, text=d.text) for d in task.documents], progress=False
            )
            chunks = list(retriever.retrieve(task.question, budget_tokens=self.budget_tokens))
        meta: dict[str, Any] = {"chunks": len(chunks)}
        prune_s = 0.0
        if self.prune_rate is not None and chunks:
            if self._pruner is None:
                self._pruner = TokenPruner()
            t1 = time.perf_counter()
            chunks = self._pruner.compress_chunks(chunks, question=task.question, rate=self.prune_rate)
            prune_s = time.perf_counter() - t1
            meta["prune_s"] = prune_s
        prompt = self._asm().assemble(
            query=task.question, system=self.system, history=list(task.history), chunks=chunks
        )
        context = "".join(c.text + "\n" for c in chunks)
        meta["prompt_tokens_counted"] = prompt.total_tokens
        return BuiltPrompt(tuple(prompt.messages), context, time.perf_counter() - t0, meta)


# --------------------------------------------------------------------------- compression as a stage
class CompressedPipeline(_DeprecatedBuild):
    """Compression as a pipeline stage: the task's documents as one text, compressed, then answered.

    The documents (``title`` line, text; blank line between) are compressed together with the
    question given, so the budget spans documents; ``compressor`` defaults to
    :class:`~ctxkit.compress.TokenPruner` (coarse to fine). Run it beside
    ``NaivePipeline(timestamp=False)`` on the same tasks: full context vs compressed.
    ``meta`` records the compression seconds, the achieved rate and the tokens before and after.
    ``rate=1.0`` sends the same text uncompressed, in the same layout (the full-context baseline).
    """

    def __init__(
        self,
        rate: float,
        *,
        compressor: Any = None,
        name: str | None = None,
        system: str = DEFAULT_SYSTEM,
        question_aware: bool = True,
        backend: Any = None,
    ) -> None:
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= 1:
            raise InvalidInputError(f"rate must be in (0, 1], got {rate!r}")
        if compressor is not None and not callable(getattr(compressor, "compress", None)):
            raise InvalidInputError(f"{compressor!r} is not a compressor (it needs compress(text, rate=, question=))")
        self.rate = float(rate)
        self.name = name or f"compressed-{rate:g}"
        self.system = system
        self.question_aware = question_aware
        self.backend = backend
        self._compressor = compressor

    def __repr__(self) -> str:
        return f"CompressedPipeline(name={self.name!r}, rate={self.rate}, compressor={self._compressor!r})"

    @property
    def compressor(self) -> Any:
        if self._compressor is None:
            self._compressor = TokenPruner()
        return self._compressor

    def assemble(self, task: Task) -> BuiltPrompt:
        t0 = time.perf_counter()
        text = "\n\n".join(f"{d.title}\n{d.text.strip()}" if d.title else d.text.strip() for d in task.documents)
        meta: dict[str, Any] = {"compressed": bool(text.strip())}
        if text.strip() and self.rate >= 1.0:  # the full context in the same layout: the baseline
            context = render_documents([("compressed", "", text)])
        elif text.strip():
            r = self.compressor.compress(text, rate=self.rate, question=task.question if self.question_aware else None)
            meta.update(
                compress_s=time.perf_counter() - t0,
                achieved_rate=r.rate,
                tokens_before=r.original_tokens,
                tokens_after=r.compressed_tokens,
            )
            context = render_documents([("compressed", "", r.text)]) if r.text else ""
        else:
            context = ""
        msgs = (Message.system(self.system), _user_message(context, task.question))
        return BuiltPrompt(msgs, context, time.perf_counter() - t0, meta)


# --------------------------------------------------------------------------- baselines
class NaivePipeline(_DeprecatedBuild):
    """The naive baseline: every document (or the ``top_k`` best by MiniLM), the whole history, a timestamp."""

    def __init__(
        self,
        *,
        name: str | None = None,
        top_k: int | None = None,
        system: str = DEFAULT_SYSTEM,
        timestamp: bool = True,
        backend: Any = None,
    ) -> None:
        if top_k is not None and top_k < 1:
            raise InvalidInputError(f"top_k must be >= 1, got {top_k}")
        self.top_k = top_k
        self.name = name or ("naive" if top_k is None else f"naive-top{top_k}")
        self.system = system
        self.timestamp = timestamp
        self.backend = backend

    def __repr__(self) -> str:
        return f"NaivePipeline(name={self.name!r}, top_k={self.top_k})"

    def assemble(self, task: Task) -> BuiltPrompt:
        t0 = time.perf_counter()
        docs = list(task.documents)
        if self.top_k is not None and len(docs) > self.top_k:
            r = Retriever(default_embedder(), dedupe_threshold=None)
            r.add_documents([Document(id=d.id, title=d.title, text=d.text) for d in docs], progress=False)
            keep = {c.doc_id for c in r.search(task.question, self.top_k)}
            docs = [d for d in docs if d.id in keep]
        context = render_documents([(d.id, d.title, d.text) for d in docs])
        system = self.system
        if self.timestamp:
            system = f"Current time: {datetime.now(UTC).isoformat(timespec='microseconds')}. {system}"
        messages = (Message.system(system), *task.history, _user_message(context, task.question))
        return BuiltPrompt(messages, context, time.perf_counter() - t0, {"documents": len(docs)})


class LangChainStylePipeline(_DeprecatedBuild):
    """LangChain's usual RAG: ``InMemoryVectorStore`` (MiniLM) ``as_retriever(k=4)`` and ``trim_messages``."""

    def __init__(
        self,
        *,
        name: str = "langchain-top4",
        k: int = 4,
        history_tokens: int = 1024,
        system: str = DEFAULT_SYSTEM,
        backend: Any = None,
    ) -> None:
        self.name = name
        self.k = k
        self.history_tokens = history_tokens
        self.system = system
        self.backend = backend

    def assemble(self, task: Task) -> BuiltPrompt:
        from langchain_core.documents import Document as LCDocument
        from langchain_core.messages import trim_messages
        from langchain_core.vectorstores import InMemoryVectorStore

        # lazy: keeps langchain_core optional
        from ctxkit.integrations.langchain import CtxkitEmbeddings, from_ctxkit_messages, to_ctxkit_messages

        t0 = time.perf_counter()
        store = InMemoryVectorStore(CtxkitEmbeddings(default_embedder()))
        if task.documents:
            store.add_documents(
                [LCDocument(page_content=d.text, metadata={"id": d.id, "title": d.title}) for d in task.documents]
            )
        hits = store.as_retriever(search_kwargs={"k": self.k}).invoke(task.question) if task.documents else []
        context = render_documents([(h.metadata["id"], h.metadata["title"], h.page_content) for h in hits])
        history = list(task.history)
        if history:
            tok = get_tokenizer("gpt-4o-mini")
            trimmed = trim_messages(
                from_ctxkit_messages(history),
                max_tokens=self.history_tokens,
                token_counter=lambda ms: sum(tok.count(str(m.content)) + 4 for m in ms),
                strategy="last",
                start_on="human",
            )
            history = to_ctxkit_messages(trimmed)
        messages = (Message.system(self.system), *history, _user_message(context, task.question))
        return BuiltPrompt(messages, context, time.perf_counter() - t0, {"documents": len(hits)})


class LlamaIndexStylePipeline(_DeprecatedBuild):
    """LlamaIndex's usual RAG: ``VectorStoreIndex`` over ``SentenceSplitter`` nodes, ``similarity_top_k=2``."""

    def __init__(
        self, *, name: str = "llamaindex-top2", k: int = 2, system: str = DEFAULT_SYSTEM, backend: Any = None
    ) -> None:
        self.name = name
        self.k = k
        self.system = system
        self.backend = backend

    def assemble(self, task: Task) -> BuiltPrompt:
        from llama_index.core import Document as LIDocument
        from llama_index.core import VectorStoreIndex

        t0 = time.perf_counter()
        hits: list[Any] = []
        if task.documents:
            index = VectorStoreIndex.from_documents(
                [LIDocument(text=d.text, metadata={"id": d.id, "title": d.title}) for d in task.documents],
                embed_model=_llamaindex_embedding(),
            )
            hits = index.as_retriever(similarity_top_k=self.k).retrieve(task.question)
        context = render_documents(
            [(str(h.node.metadata["id"]), str(h.node.metadata["title"]), h.node.get_content()) for h in hits]
        )
        messages = (Message.system(self.system), *task.history, _user_message(context, task.question))
        return BuiltPrompt(messages, context, time.perf_counter() - t0, {"documents": len(hits)})


# --------------------------------------------------------------------------- shared embedder
_EMBEDDER: list[Any] = []


def default_embedder() -> Any:
    """One shared MiniLM embedder with an on-disk embedding cache (every pipeline embeds with it)."""
    if not _EMBEDDER:
        _EMBEDDER.append(SentenceTransformerEmbedder(cache=user_cache_dir() / "eval-embeddings.sqlite"))
    return _EMBEDDER[0]


def _llamaindex_embedding() -> Any:
    from llama_index.core.embeddings import BaseEmbedding

    emb = default_embedder()

    class _MiniLM(BaseEmbedding):
        def _get_query_embedding(self, query: str) -> list[float]:
            return [float(x) for x in emb.embed_query(query)]

        def _get_text_embedding(self, text: str) -> list[float]:
            return [float(x) for x in emb.embed([text])[0]]

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            return [[float(x) for x in v] for v in emb.embed(texts)]

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

    return _MiniLM(model_name=emb.name)


_SPEC = re.compile(
    r"^(?:ctxkit-(?P<budget>\d+)(?:-prune(?P<rate>0?\.\d+))?|naive(?:-top(?P<k>\d+))?|langchain|llamaindex)$"
)


def parse_pipeline(spec: str, *, price_as: str = "gpt-4o-mini") -> Pipeline:
    """A pipeline by name: naive, naive-topK, ctxkit-N, ctxkit-N-pruneR, langchain, llamaindex."""
    m = _SPEC.match(spec)
    if m is None:
        raise InvalidInputError(
            f"unknown pipeline {spec!r}; use naive, naive-top<K>, ctxkit-<budget>, ctxkit-<budget>-prune<rate>, "
            "langchain or llamaindex"
        )
    if spec == "langchain":
        return LangChainStylePipeline()
    if spec == "llamaindex":
        return LlamaIndexStylePipeline()
    if m["budget"]:
        return CtxkitPipeline(
            int(m["budget"]), model=price_as, prune_rate=float(m["rate"]) if m["rate"] else None, name=spec
        )
    return NaivePipeline(top_k=int(m["k"]) if m["k"] else None, name=spec)
